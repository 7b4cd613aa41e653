"""What can go wrong when appending to the event store."""


class ConcurrencyError(Exception):
    """The stream moved on since the command was decided (DESIGN.md guarantee 1)."""

    def __init__(self, stream_id: str, expected_version: int | None, current_version: int):
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.current_version = current_version
        super().__init__(
            f"{stream_id} is at version {current_version}, not the expected {expected_version}"
        )


class IdempotencyKeyReusedError(Exception):
    """An Idempotency-Key that was accepted before came back with a different request."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request")
