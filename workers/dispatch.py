"""Publishing the generate task again when the broker did not take it: the dispatch outbox.

A request commits its pack before it publishes the task. When the broker cannot take
the message (down, unreachable, a wrong URL), the client marks the pack pending and
raises ``DispatchFailed``; nothing is lost, because the row is the record of the work.
Every worker runs the sweep below in a background thread, every
``REVIEWPACKS_DISPATCH_RETRY_SECONDS`` (5), and publishes each pending pack as soon as
the broker answers again. It runs in workers rather than only in beat because the
embedded default has no beat, and because a worker is the process that reconnects to
the broker first.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.orm import Session, sessionmaker

from storage import packs
from workers.logs import event

log = logging.getLogger("reviewpacks.dispatch")


def broker_label(url: str) -> str:
    """Scheme, host and port of a broker URL: enough to name it, never its credentials or path."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "the configured broker"
    if not parts.scheme:
        return "the configured broker"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def redispatch_pending(
    sessions: sessionmaker[Session], publish: Callable[[int], None], *, now: dt.datetime, batch_size: int = 200
) -> int:
    """Publish every pack awaiting dispatch; returns how many the broker took. A publish error propagates."""
    total = 0
    while True:
        with sessions() as session:
            pack_ids = packs.claim_pending_dispatches(session, limit=batch_size)
            taken: list[int] = []
            try:
                for pack_id in pack_ids:
                    publish(pack_id)
                    taken.append(pack_id)
            finally:
                packs.dispatched(session, taken, now=now)
                session.commit()
        for pack_id in taken:
            event(log, "pack.dispatched", pack_id=pack_id)
        total += len(taken)
        if len(pack_ids) < batch_size:
            return total


class DispatchSweeper:
    """A daemon thread that runs redispatch_pending now and then every ``interval`` seconds."""

    def __init__(self, sessions: sessionmaker[Session], publish: Callable[[int], None], *, interval: float, broker: str):
        self._sessions = sessions
        self._publish = publish
        self._interval = interval
        self._broker = broker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reviewpacks-dispatch", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def sweep_once(self) -> None:
        try:
            redispatch_pending(self._sessions, self._publish, now=dt.datetime.now(dt.timezone.utc))
        except Exception as exc:  # noqa: BLE001 - a sweep must survive a broker or database outage and try again
            if not self._failing:
                event(log, "dispatch.sweep_failed", level=logging.WARNING, broker=self._broker, error=type(exc).__name__)
            self._failing = True
        else:
            self._failing = False

    def _run(self) -> None:
        while True:
            self.sweep_once()
            if self._stop.wait(self._interval):
                return


_sweeper: DispatchSweeper | None = None


@worker_ready.connect
def _start_sweeper(sender: Any = None, **_kwargs: Any) -> None:
    global _sweeper
    from reviewpacks import runtime
    from workers.client import GENERATE_QUEUE, GENERATE_TASK

    config = runtime.current().settings
    app = sender.app

    def publish(pack_id: int) -> None:
        app.send_task(GENERATE_TASK, args=[pack_id], queue=GENERATE_QUEUE)

    _sweeper = DispatchSweeper(
        runtime.session_factory(config.database_url),
        publish,
        interval=config.dispatch_retry_seconds,
        broker=broker_label(config.broker_url),
    )
    _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_kwargs: Any) -> None:
    global _sweeper
    if _sweeper is not None:
        _sweeper.stop()
        _sweeper = None
