"""Log lines as JSON objects, one per line, carrying the request and correlation ids of the
HTTP request they were written for: the same ids its events' metadata carries, so a log line
and the events it explains can be joined.

`AIPLATFORM_LOG_FORMAT=json` turns it on (the container images set it); `text`, the default,
keeps plain lines for a terminal.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from aiplatform.config import SettingsError

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


@contextmanager
def request_ids(request: str | None, correlation: str | None) -> Iterator[None]:
    """Every line logged inside carries these ids (contextvars follow the request's task)."""
    request_token = request_id.set(request)
    correlation_token = correlation_id.set(correlation)
    try:
        yield
    finally:
        correlation_id.reset(correlation_token)
        request_id.reset(request_token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
            "correlation_id": correlation_id.get(),
            "process": record.process,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_format(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    chosen = env.get("AIPLATFORM_LOG_FORMAT") or "text"
    if chosen not in LOG_FORMATS:
        raise SettingsError(f"AIPLATFORM_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    return chosen


def formatter(chosen: str) -> logging.Formatter:
    return JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(chosen: str) -> None:
    """The root logger writes to stderr in the chosen format; everything propagates to it."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(chosen))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    # Library warnings become log lines too, rather than bare text between them.
    logging.captureWarnings(True)
