"""Retention: expire packs past their deadline, and hard-delete expired ones after the grace period.

Safe to run twice at once (two beats, or beat and the CLI): every batch is claimed
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers), and
each claim is an UPDATE or DELETE that names the state it leaves, so a pack is
expired, and counted, exactly once. Work goes in batches, so a million expired
packs never load at once. Objects are deleted after the rows commit; a missing
object is not an error, and one that could not be deleted is retried next time
(its row keeps ``file_disk`` until the object is gone).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from domain.states import PackStatus
from reviewpacks.logs import event
from reviewpacks.runtime import session_factory
from reviewpacks.settings import Settings
from storage import packs
from storage.artifacts import ArtifactStore, ArtifactStoreError
from storage.models import ReviewPack

log = logging.getLogger("reviewpacks.retention")


@dataclass(frozen=True)
class PruneResult:
    expired: int = 0
    hard_deleted: int = 0
    objects_deleted: int = 0

    def __str__(self) -> str:
        return f"{self.expired} packs expired, {self.hard_deleted} packs hard-deleted"


def _claim_batch(session: Session, where, limit: int) -> list[int]:
    return list(
        session.execute(
            select(ReviewPack.id).where(*where).order_by(ReviewPack.id).limit(limit).with_for_update(skip_locked=True)
        ).scalars()
    )


def _delete_objects(session: Session, store: ArtifactStore, rows: list[tuple[int, str | None]]) -> int:
    """Delete stored objects; clear file_disk on rows whose object is gone. Returns objects handled."""
    gone = []
    for pack_id, key in rows:
        if not key:
            continue
        try:
            store.delete(key)
        except ArtifactStoreError as exc:
            event(log, "pack.object_delete_failed", level=logging.WARNING, pack_id=pack_id, error=type(exc).__name__)
            continue
        gone.append(pack_id)
    if gone:
        session.execute(update(ReviewPack).where(ReviewPack.id.in_(gone)).values(file_disk=None))
        session.commit()
    return len(gone)


def expire_due(session: Session, store: ArtifactStore, *, now: dt.datetime, batch_size: int) -> tuple[int, int]:
    expired = objects = 0
    while True:
        ids = _claim_batch(
            session, (ReviewPack.status == PackStatus.READY, ReviewPack.expires_at < now), batch_size
        )
        if not ids:
            return expired, objects
        rows = session.execute(
            update(ReviewPack)
            .where(ReviewPack.id.in_(ids), ReviewPack.status == PackStatus.READY)
            .values(status=PackStatus.EXPIRED, expired_at=now, updated_at=now)
            .returning(ReviewPack.id, ReviewPack.workspace_id, ReviewPack.tenant_id, ReviewPack.file_path)
        ).all()
        for pack_id, workspace_id, tenant_id, _key in rows:
            packs.add_audit(
                session,
                workspace_id=workspace_id,
                tenant_id=tenant_id,
                actor_id=None,
                action="review_pack.expired",
                pack_id=pack_id,
                details={"by": "retention"},
            )
        session.commit()
        expired += len(rows)
        objects += _delete_objects(session, store, [(r[0], r[3]) for r in rows])
        event(log, "packs.expired", count=len(rows))


def delete_leftover_objects(session: Session, store: ArtifactStore, *, batch_size: int) -> int:
    """Objects of expired packs that an earlier prune or expire could not delete."""
    objects = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(ReviewPack.id, ReviewPack.file_path)
            .where(ReviewPack.status == PackStatus.EXPIRED, ReviewPack.file_disk.is_not(None), ReviewPack.id > last_id)
            .order_by(ReviewPack.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return objects
        last_id = rows[-1][0]
        objects += _delete_objects(session, store, [tuple(r) for r in rows])


def hard_delete_due(session: Session, store: ArtifactStore, *, now: dt.datetime, grace: dt.timedelta, batch_size: int) -> int:
    deleted = 0
    while True:
        ids = _claim_batch(
            session,
            (ReviewPack.status == PackStatus.EXPIRED, ReviewPack.expired_at < now - grace),
            batch_size,
        )
        if not ids:
            return deleted
        rows = session.execute(
            delete(ReviewPack)
            .where(ReviewPack.id.in_(ids), ReviewPack.status == PackStatus.EXPIRED)
            .returning(ReviewPack.id, ReviewPack.file_path, ReviewPack.file_disk)
        ).all()
        session.commit()
        for pack_id, key, disk in rows:
            if key and disk:
                try:
                    store.delete(key)
                except ArtifactStoreError as exc:
                    # The row is gone; the object is orphaned and logged for an operator.
                    event(log, "pack.object_delete_failed", level=logging.WARNING, pack_id=pack_id, error=type(exc).__name__)
        deleted += len(rows)
        event(log, "packs.hard_deleted", count=len(rows))


def prune(settings: Settings, store: ArtifactStore, *, now: dt.datetime, hard_delete: bool | None = None) -> PruneResult:
    hard_delete = settings.prune_hard_delete if hard_delete is None else hard_delete
    with session_factory(settings.database_url)() as session:
        expired, objects = expire_due(session, store, now=now, batch_size=settings.prune_batch_size)
        objects += delete_leftover_objects(session, store, batch_size=settings.prune_batch_size)
        deleted = 0
        if hard_delete:
            deleted = hard_delete_due(
                session,
                store,
                now=now,
                grace=dt.timedelta(days=settings.hard_delete_grace_days),
                batch_size=settings.prune_batch_size,
            )
    result = PruneResult(expired=expired, hard_deleted=deleted, objects_deleted=objects)
    event(log, "prune.done", expired=result.expired, hard_deleted=result.hard_deleted, objects_deleted=objects)
    return result
