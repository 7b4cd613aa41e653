"""Dramatiq on Redis: the broker, the actors and the processes that run them."""
