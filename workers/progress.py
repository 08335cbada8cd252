"""Progress of one attempt: throttled heartbeats that keep the claim, and figures for Flower and the client."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from reviewpacks.settings import Settings
from storage import packs
from storage.models import utcnow

Progress = Callable[[dict], None]


class LostClaim(Exception):
    """Another attempt took the run over (this worker's heartbeat went stale)."""


class Reporter:
    """Throttled progress: extends the claim's heartbeat and tells Flower and the client."""

    def __init__(
        self, claim: packs.Claim, sessions: sessionmaker[Session], settings: Settings, on_progress: Progress | None
    ):
        self._claim = claim
        self._sessions = sessions
        self._on_progress = on_progress
        self.interval_s = min(settings.progress_interval_seconds, settings.heartbeat_seconds)
        # The claim has just written the heartbeat; small packs finish before they need another.
        self._next = time.monotonic() + self.interval_s
        self._told = False

    def __call__(self, rows: int, nbytes: int) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        with self._sessions() as session:
            owned = packs.heartbeat(session, self._claim, now=utcnow(), rows=rows, nbytes=nbytes)
        if not owned:
            raise LostClaim()
        self._tell(rows, nbytes)

    def done(self, rows: int, nbytes: int) -> None:
        """The last figures, for a pack whose progress was shown; the database gets them with the ready state.

        A pack built before its first report needs none: the task's success follows at once
        and replaces any progress Flower would show.
        """
        if self._told:
            self._tell(rows, nbytes)

    def _tell(self, rows: int, nbytes: int) -> None:
        self._told = True
        if self._on_progress is not None:
            self._on_progress({"pack_id": self._claim.pack_id, "rows": rows, "bytes": nbytes})
