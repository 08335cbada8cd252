"""Nothing stuck, nothing lost: the database, not the broker, says what must still be done.

Three sweeps, all safe to run anywhere and at any time:

- A *running* run whose heartbeat is older than the lease lost its worker (SIGKILL,
  OOM, a host gone). It is handed back to ``queued`` and re-published, or, once it
  has used up its attempts, failed with ``worker_lost``.
- A *queued* run whose message was published long ago and never claimed lost its
  message (a broker restarted without persistence). It is re-published.
- Temp files on this host older than the lease belong to no live attempt (a killed
  worker left them behind) and are deleted.

A re-published message for a run that is meanwhile claimed or finished does
nothing: the task's claim is a compare-and-set on the run row. The state changes
themselves live in storage/packs.py.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from domain.reasons import ReasonCode
from reviewpacks.logs import event
from reviewpacks.runtime import session_factory
from reviewpacks.settings import Settings
from storage import packs, scratch

log = logging.getLogger("reviewpacks.recovery")


@dataclass(frozen=True)
class ReapResult:
    requeued: int = 0
    failed: int = 0
    republished: int = 0
    temp_files_removed: int = 0

    def __str__(self) -> str:
        return (
            f"{self.requeued} stale runs requeued, {self.failed} failed as worker_lost, "
            f"{self.republished} queued runs re-published"
        )


def reap(settings: Settings, publish: Callable[[int], None], *, now: dt.datetime, batch_size: int = 500) -> ReapResult:
    Session = session_factory(settings.database_url)
    lease = settings.lease
    requeued = failed = republished = 0

    with Session() as session:
        stale = packs.stale_runs(session, now=now, lease=lease, limit=batch_size)
    for run in stale:
        with Session() as session:
            if run.attempts >= settings.max_attempts:
                # An object a dead attempt uploaded keeps the pack's file_disk, so prune deletes it.
                if packs.mark_failed(session, run.pack_id, ReasonCode.WORKER_LOST, now=now, attempt=run.attempts):
                    failed += 1
                    fields = dict(pack_id=run.pack_id, run_id=run.run_id, attempts=run.attempts)
                    event(log, "run.worker_lost", level=logging.ERROR, **fields)
                continue
            if not packs.requeue_stale(session, run, now=now):
                continue
        publish(run.pack_id)
        requeued += 1
        event(log, "run.requeued", pack_id=run.pack_id, run_id=run.run_id, attempts=run.attempts)

    with Session() as session:
        pack_ids = packs.mark_republished(
            session, now=now, older_than=dt.timedelta(seconds=settings.queued_republish_seconds), limit=batch_size
        )
    for pack_id in pack_ids:
        publish(pack_id)
        republished += 1
        event(log, "run.republished", pack_id=pack_id)

    removed = scratch.sweep(older_than=lease)
    return ReapResult(requeued=requeued, failed=failed, republished=republished, temp_files_removed=removed)
