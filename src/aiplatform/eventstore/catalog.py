"""The event catalog: one JSON Schema per event type and schema version, generated from code.

`events/<EventType>.v<N>.json` holds the schema msgspec derives from the event class, and under
`examples` one stored-JSON sample of that version. The file of an event's current version is
regenerated from the code; files of older versions are never rewritten: they are the record of
what the log may still hold, and their samples must keep decoding through the upcasters.
"""

from __future__ import annotations

import datetime
import importlib
import json
import pkgutil
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from aiplatform.eventstore.codec import EVENT_TYPES, Event

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_FILE_NAME = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.json$")
_SAMPLE_TIME = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
_SAMPLE_UUID = uuid.UUID("00000000-0000-4000-8000-000000000001")


@dataclass(frozen=True)
class CatalogEntry:
    event_type: str
    schema_version: int
    path: Path


def event_classes() -> dict[str, type[Event]]:
    """Every event class of the platform: importing the domain modules registers them."""
    import aiplatform.domain

    for module in pkgutil.iter_modules(aiplatform.domain.__path__):
        importlib.import_module(f"aiplatform.domain.{module.name}")
    # The registry also holds events that code outside the platform declared (tests do).
    return {
        name: cls
        for name, cls in sorted(EVENT_TYPES.items())
        if cls.__module__.startswith("aiplatform.")
    }


def file_name(event_type: str, schema_version: int) -> str:
    return f"{event_type}.v{schema_version}.json"


def entries(directory: Path) -> list[CatalogEntry]:
    """The catalog's files, by event type and version."""
    found = []
    for path in sorted(directory.glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match is not None:
            found.append(CatalogEntry(match["type"], int(match["version"]), path))
    return found


def sample(cls: type[Event]) -> dict[str, Any]:
    """A stored-JSON sample of `cls` with every field set, made from its type alone so that it
    is the same on every run."""
    document = _value(msgspec.inspect.type_info(cls))
    # Round-trip through the class: the sample is exactly what an append would store.
    return msgspec.json.decode(msgspec.json.encode(msgspec.convert(document, cls)))  # type: ignore[no-any-return]


def schema_document(cls: type[Event]) -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": cls.__name__,
        "x-event-type": cls.__name__,
        "x-schema-version": cls.schema_version,
        **msgspec.json.schema(cls),
        "examples": [sample(cls)],
    }


def render(cls: type[Event]) -> str:
    return json.dumps(schema_document(cls), indent=2, sort_keys=True) + "\n"


def generate(directory: Path) -> list[Path]:
    """Writes the current version of every event type; returns the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, cls in event_classes().items():
        path = directory / file_name(name, cls.schema_version)
        text = render(cls)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def check(directory: Path) -> list[str]:
    """What differs between the code and the catalog; empty when they agree."""
    classes = event_classes()
    problems = []
    for name, cls in classes.items():
        path = directory / file_name(name, cls.schema_version)
        if not path.exists():
            problems.append(f"{path.name} is missing: run `aiplatform events-catalog`")
        elif path.read_text() != render(cls):
            problems.append(
                f"{path.name} differs from {name} in the code: a changed event needs a new "
                "schema_version and an upcaster (docs/event-store.md, 'Changing an event'); "
                "then run `aiplatform events-catalog`"
            )
    for entry in entries(directory):
        current = classes.get(entry.event_type)
        if current is None:
            problems.append(
                f"{entry.path.name}: no event class {entry.event_type} in the code; stored "
                "events of a type can never go away, so neither can its class"
            )
        elif entry.schema_version > current.schema_version:
            problems.append(
                f"{entry.path.name} is newer than {entry.event_type} in the code "
                f"(v{current.schema_version})"
            )
    return problems


def _value(info: msgspec.inspect.Type) -> Any:
    """A valid value of a msgspec type, preferring the most informative member of a union."""
    match info:
        case msgspec.inspect.StructType():
            document = {field.encode_name: _value(field.type) for field in info.fields}
            if info.tag_field is not None:
                document[info.tag_field] = info.tag
            return document
        case msgspec.inspect.UnionType():
            # msgspec leaves UNSET out of a union's members: only None needs skipping.
            members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            return _value(members[0]) if members else None
        case msgspec.inspect.LiteralType():
            return info.values[0]
        case msgspec.inspect.StrType():
            return "x" * max(info.min_length or 0, 1) if info.pattern is None else "a"
        case msgspec.inspect.IntType():
            return max(info.ge or 0, (info.gt or 0) + 1, 1)
        case msgspec.inspect.FloatType():
            return 0.5
        case msgspec.inspect.BoolType():
            return True
        case (
            msgspec.inspect.ListType()
            | msgspec.inspect.SetType()
            | msgspec.inspect.FrozenSetType()
            | msgspec.inspect.VarTupleType()
        ):
            return [_value(info.item_type)]
        case msgspec.inspect.TupleType():
            return [_value(item) for item in info.item_types]
        case msgspec.inspect.DictType():
            return {"key": _value(info.value_type)}
        case msgspec.inspect.DateTimeType():
            return _SAMPLE_TIME.isoformat()
        case msgspec.inspect.UUIDType():
            return str(_SAMPLE_UUID)
        case msgspec.inspect.AnyType():
            return "any"
        case msgspec.inspect.NoneType():
            return None
    raise TypeError(f"the catalog cannot make a sample of {info!r}; teach catalog._value it")


def run_command(directory: Path, check_only: bool) -> int:
    """`aiplatform events-catalog [--check]`: exit status 1 when the catalog is out of date."""
    if check_only:
        problems = check(directory)
        for problem in problems:
            print(problem)
        if not problems:
            print(f"the event catalog in {directory} matches the code")
        return 1 if problems else 0
    written = generate(directory)
    for path in written:
        print(f"wrote {path}")
    problems = check(directory)
    for problem in problems:
        print(problem)
    if not written and not problems:
        print(f"the event catalog in {directory} is up to date")
    return 1 if problems else 0
