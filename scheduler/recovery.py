"""Nothing stuck, nothing lost: the database, not the broker, says what must still be done.

Two sweeps, both safe to run anywhere and at any time:

- A *running* run whose heartbeat is older than the lease lost its worker (SIGKILL,
  OOM, a host gone). It is handed back to ``queued`` and re-published, or, once it
  has used up its attempts, failed with ``worker_lost``.
- A *queued* run whose message was published long ago and never claimed lost its
  message (a broker restarted without persistence). It is re-published.

A re-published message for a run that is meanwhile claimed or finished does
nothing: the task's claim is a compare-and-set on the run row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update

from domain.reasons import ReasonCode
from domain.states import RUN_TYPE_GENERATE, PackStatus, RunStatus
from reviewpacks.logs import event
from reviewpacks.runtime import session_factory
from reviewpacks.settings import Settings
from storage import packs
from storage.models import OperationRun, ReviewPack

log = logging.getLogger("reviewpacks.recovery")


@dataclass(frozen=True)
class ReapResult:
    requeued: int = 0
    failed: int = 0
    republished: int = 0

    def __str__(self) -> str:
        return f"{self.requeued} stale runs requeued, {self.failed} failed as worker_lost, {self.republished} queued runs re-published"


def reap(settings: Settings, publish: Callable[[int], None], *, now: dt.datetime, batch_size: int = 500) -> ReapResult:
    lease = settings.lease
    Session = session_factory(settings.database_url)
    requeued = failed = republished = 0

    with Session() as session:
        stale = session.execute(
            select(OperationRun.id, OperationRun.attempts, OperationRun.heartbeat_at, ReviewPack.id)
            .join(ReviewPack, ReviewPack.operation_run_id == OperationRun.id)
            .where(
                OperationRun.type == RUN_TYPE_GENERATE,
                OperationRun.status == RunStatus.RUNNING,
                OperationRun.heartbeat_at < now - lease,
            )
            .order_by(OperationRun.id)
            .limit(batch_size)
        ).all()
    for run_id, attempts, heartbeat, pack_id in stale:
        with Session() as session:
            if attempts >= settings.max_attempts:
                if packs.mark_failed(session, pack_id, ReasonCode.WORKER_LOST, now=now, attempt=attempts):
                    failed += 1
                    event(log, "run.worker_lost", level=logging.ERROR, pack_id=pack_id, run_id=run_id, attempts=attempts)
                continue
            # The same heartbeat in the WHERE clause: a worker that came back to life in between keeps its run.
            moved = session.execute(
                update(OperationRun)
                .where(
                    OperationRun.id == run_id,
                    OperationRun.status == RunStatus.RUNNING,
                    OperationRun.attempts == attempts,
                    OperationRun.heartbeat_at == heartbeat,
                )
                .values(status=RunStatus.QUEUED, published_at=now)
            ).rowcount
            if moved != 1:
                session.rollback()
                continue
            session.execute(
                update(ReviewPack)
                .where(ReviewPack.id == pack_id, ReviewPack.status == PackStatus.GENERATING)
                .values(status=PackStatus.QUEUED, updated_at=now)
            )
            session.commit()
        publish(pack_id)
        requeued += 1
        event(log, "run.requeued", pack_id=pack_id, run_id=run_id, attempts=attempts)

    with Session() as session:
        overdue = (
            OperationRun.type == RUN_TYPE_GENERATE,
            OperationRun.status == RunStatus.QUEUED,
            func.coalesce(OperationRun.published_at, OperationRun.created_at)
            < now - dt.timedelta(seconds=settings.queued_republish_seconds),
        )
        batch = select(OperationRun.id).where(*overdue).order_by(OperationRun.id).limit(batch_size)
        forgotten = session.execute(
            update(OperationRun)
            .where(OperationRun.id.in_(batch.scalar_subquery()), *overdue)
            .values(published_at=now)
            .returning(OperationRun.id)
        ).scalars().all()
        pack_ids = (
            session.execute(select(ReviewPack.id).where(ReviewPack.operation_run_id.in_(forgotten))).scalars().all()
            if forgotten
            else []
        )
        session.commit()
    for pack_id in pack_ids:
        publish(pack_id)
        republished += 1
        event(log, "run.republished", pack_id=pack_id)

    return ReapResult(requeued=requeued, failed=failed, republished=republished)
