"""Importing history from other systems into the event log."""
