"""Structured log lines: an event name followed by key=value fields (logfmt), one per state change.

Only ids, counts, durations and reason codes are logged; never URLs, credentials or row content.
"""

from __future__ import annotations

import logging


def _value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, " ".join([name, *(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)]))
