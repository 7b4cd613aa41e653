"""Domain errors: a command that the current state of its aggregate refuses."""


class DomainError(Exception):
    """Base of the errors `decide` raises; the API maps each kind to its status code."""


class NotFoundError(DomainError):
    pass


class AlreadyExistsError(DomainError):
    pass


class InvalidStateError(DomainError):
    """The command does not apply to the aggregate in its current state (409)."""


class StaleVersionError(DomainError):
    """The caller decided on a version (If-Match) that is no longer current (409)."""

    def __init__(self, expected: int, current: int):
        self.expected = expected
        self.current = current
        super().__init__(f"version {expected} is stale; the current version is {current}")
