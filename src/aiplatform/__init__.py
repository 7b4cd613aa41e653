"""AI Platform v2: an event-sourced ML platform."""

__version__ = "2.0.0.dev0"
