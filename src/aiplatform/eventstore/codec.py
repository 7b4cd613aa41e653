"""Events as msgspec Structs, their registry, and upcasting of stored JSON to current structs.

Every event class declares its type name (the struct tag) and schema version. Stored JSON of
an older schema version passes through the upcasters keyed by `(event_type, schema_version)`,
one version step at a time, before it is decoded: history is never rewritten (DESIGN.md
guarantee 5).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    """A fact in the past tense. Subclasses are registered by their class name."""

    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        existing = EVENT_TYPES.get(cls.__name__)
        if existing is not None and existing is not cls:
            raise TypeError(f"two event classes are named {cls.__name__}")
        EVENT_TYPES[cls.__name__] = cls


class EventMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who did it, from where, and why: this metadata is the audit log."""

    actor: str
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    imported: bool = False
    # Events imported from another system: which one, and when the fact happened there (the
    # event's recorded_at is the time of the import).
    imported_from: str | None = None
    occurred_at: datetime | None = None


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    stream_version: int
    global_position: int
    event_id: str
    event_type: str
    schema_version: int
    event: Event
    metadata: EventMetadata
    recorded_at: datetime


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

EVENT_TYPES: dict[str, type[Event]] = {}
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownEventTypeError(LookupError):
    pass


class EventSchemaError(ValueError):
    """Stored JSON that no upcaster chain turns into the current struct."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Registers a function that turns `event_type` JSON of `from_version` into `from_version+1`."""

    def register(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in UPCASTERS:
            raise TypeError(f"two upcasters for {event_type} v{from_version}")
        UPCASTERS[key] = function
        return function

    return register


_encoder = msgspec.json.Encoder()
_metadata_decoder = msgspec.json.Decoder(EventMetadata)
_decoders: dict[type[Event], msgspec.json.Decoder[Any]] = {}


def encode(value: Event | EventMetadata) -> str:
    return _encoder.encode(value).decode()


def event_class(event_type: str) -> type[Event]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise UnknownEventTypeError(f"no event class is registered for {event_type!r}") from None


def decode_event(event_type: str, schema_version: int, data: str | bytes) -> Event:
    cls = event_class(event_type)
    if schema_version == cls.schema_version:
        decoder = _decoders.get(cls)
        if decoder is None:
            decoder = _decoders[cls] = msgspec.json.Decoder(cls)
        return decoder.decode(data)  # type: ignore[no-any-return]
    if schema_version > cls.schema_version:
        raise EventSchemaError(
            f"{event_type} v{schema_version} is newer than this code (v{cls.schema_version}); "
            "upgrade the platform"
        )
    document: dict[str, Any] = msgspec.json.decode(data)
    for version in range(schema_version, cls.schema_version):
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise EventSchemaError(f"no upcaster turns {event_type} v{version} into v{version + 1}")
        document = step(document)
    try:
        return msgspec.convert(document, cls)
    except msgspec.ValidationError as error:
        raise EventSchemaError(f"{event_type} v{schema_version} upcast badly: {error}") from None


def decode_metadata(data: str | bytes) -> EventMetadata:
    return _metadata_decoder.decode(data)
