"""Structured logs: one line per event, every logger under ``reviewpacks.*``.

Code logs an event name with fields through a structlog logger from
:func:`get_logger`::

    log = get_logger("pipeline")
    log.info("pack.ready", rows=120, bytes=4096)

Context that holds for a whole unit of work (the pack, its run, tenant and
attempt) is bound once with :func:`bind` inside :func:`task_context`, and every
line logged in that context carries it without being told.

The line is rendered as logfmt (``pack.ready pack_id=7 run_id=9 rows=120 …``,
the event first) or as one JSON object, chosen by REVIEWPACKS_LOG_FORMAT.
Rendering happens in the logger, so a host application that embeds the client
gets finished lines through its own logging handlers; structlog's global
configuration is never touched.  Worker and beat processes call
:func:`configure`, which gives the ``reviewpacks`` logger its own handler on
stderr so that a JSON line is not wrapped in another format.

Only ids, counts, durations and reason codes are logged.  As a second line of
defence, anything shaped like a URL in a field or a message is replaced before
the line is written, because URLs may carry credentials, endpoints or presigned
signatures.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars

ROOT = "reviewpacks"
# The fields that identify the unit of work come first on every line, in this order.
CONTEXT_KEYS = ("pack_id", "run_id", "tenant_id", "attempt")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+")
_NEEDS_QUOTES = re.compile(r'[\s="\\]|[\x00-\x1f\x7f]')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

_format = "logfmt"


def get_logger(name: str) -> Any:
    """A structured logger named ``reviewpacks.<name>`` (a name already under ``reviewpacks`` is kept)."""
    full = name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}"
    return structlog.wrap_logger(
        logging.getLogger(full),
        processors=[structlog.stdlib.filter_by_level, merge_contextvars, _to_stdlib],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def bind(**fields: object) -> None:
    """Add fields to every later line of the current unit of work."""
    bind_contextvars(**{key: value for key, value in fields.items() if value is not None})


@contextmanager
def task_context(**fields: object) -> Iterator[None]:
    """A unit of work (one task run): starts with only ``fields`` bound and leaves nothing behind."""
    clear_contextvars()
    bind(**fields)
    try:
        yield
    finally:
        clear_contextvars()


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Adapter for call sites written before structured logging; new code calls a :func:`get_logger` logger."""
    get_logger(logger.name).log(level, name, **fields)


def configure(*, log_format: str, level: str) -> None:
    """For worker and beat processes: our own handler on stderr, at ``level``, rendering as ``log_format``."""
    global _format
    _format = log_format
    logger = logging.getLogger(ROOT)
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if isinstance(handler, _Handler):
            logger.removeHandler(handler)
    # The original stderr: Celery redirects sys.stderr into its own logger inside workers.
    handler = _Handler(sys.__stderr__)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.propagate = False


def render(event_dict: dict[str, Any]) -> str:
    """One line for an event dict holding ``event``, ``level``, ``logger`` and fields."""
    event_dict = {key: _scrub(value) for key, value in event_dict.items() if value is not None}
    event = str(event_dict.pop("event", ""))
    meta = {key: event_dict.pop(key) for key in ("level", "logger", "ts") if key in event_dict}
    ordered = {key: event_dict.pop(key) for key in CONTEXT_KEYS if key in event_dict}
    ordered.update(event_dict)
    if _format == "json":
        return json.dumps({"event": event, **ordered, **meta}, default=str, ensure_ascii=False)
    return " ".join([_logfmt_value(event), *(f"{key}={_logfmt_value(value)}" for key, value in {**ordered, **meta}.items())])


class _Handler(logging.StreamHandler):
    """The handler :func:`configure` installs; a type of its own so that configuring twice replaces it."""


class _Formatter(logging.Formatter):
    """Lines from our structlog loggers are finished already; plain stdlib records under ``reviewpacks`` get the same shape."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "reviewpacks_rendered", False):
            return record.getMessage()
        event_dict = merge_contextvars(None, "", {"event": record.getMessage()})
        event_dict.update(_meta(record.levelname.lower(), record.name, record.created))
        if record.exc_info:
            event_dict["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return render(event_dict)


def _to_stdlib(logger: logging.Logger, method_name: str, event_dict: dict[str, Any]) -> tuple[tuple, dict]:
    """The last processor: render the line and hand it to the stdlib logger, marked as finished."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        info = sys.exc_info() if exc_info is True else exc_info
        if isinstance(info, BaseException):
            info = (type(info), info, info.__traceback__)
        if info[0] is not None:
            event_dict["exception"] = "".join(traceback.format_exception(*info)).rstrip()
    level = "warning" if method_name == "warn" else ("error" if method_name == "exception" else method_name)
    event_dict.update(_meta(level, logger.name, None))
    # The traceback is part of the line already; exc_info=False stops Logger.exception from adding it again.
    return (render(event_dict),), {"extra": {"reviewpacks_rendered": True}, "exc_info": False}


def _meta(level: str, name: str, created: float | None) -> dict[str, str]:
    moment = dt.datetime.now(dt.timezone.utc) if created is None else dt.datetime.fromtimestamp(created, dt.timezone.utc)
    return {"level": level, "logger": name, "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")}


def _scrub(value: object) -> object:
    if isinstance(value, str) and "://" in value:
        return _URL.sub("<url>", value)
    return value


def _logfmt_value(value: object) -> str:
    text = "true" if value is True else "false" if value is False else str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        escaped = "".join(_ESCAPES.get(char, f"\\x{ord(char):02x}" if ord(char) < 0x20 or char == "\x7f" else char) for char in text)
        return f'"{escaped}"'
    return text
