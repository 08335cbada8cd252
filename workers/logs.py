"""The adapter for call sites written before structured logging: ``event(logger, name, **fields)``.

It forwards to the structlog logger of the same name (reviewpacks/logs.py), so
these lines carry the bound context and use the configured renderer like every
other line. New code binds its context once and calls a logger from
``reviewpacks.logs.get_logger`` directly.
"""

from reviewpacks.logs import event

__all__ = ["event"]
