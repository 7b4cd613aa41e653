"""The event store: append, read, catch up, encode and upcast events (DESIGN.md)."""
