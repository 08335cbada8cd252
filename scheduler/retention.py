"""Retention: expire packs past their deadline, sweep leftover objects, hard-delete old rows.

Safe to run twice at once (two beats, or beat and the CLI): every batch is claimed
with ``FOR UPDATE SKIP LOCKED``, and each claim is an UPDATE or DELETE that names
the state it leaves, so a pack is expired, and counted, exactly once. Work goes in
batches, so a million expired packs never load at once. The state changes
themselves live in storage/packs.py; this module only drives the batches and logs.

Objects are deleted after the rows commit; a missing object is not an error, and
one that could not be deleted is retried next time (its row keeps ``file_disk``
until the object is gone). The same sweep deletes objects that a failed or killed
generation attempt left behind.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from reviewpacks.logs import event
from reviewpacks.runtime import session_factory
from reviewpacks.settings import Settings
from storage import packs
from storage.artifacts import ArtifactStore

log = logging.getLogger("reviewpacks.retention")


@dataclass(frozen=True)
class PruneResult:
    expired: int = 0
    hard_deleted: int = 0
    objects_deleted: int = 0

    def __str__(self) -> str:
        return f"{self.expired} packs expired, {self.hard_deleted} packs hard-deleted"


def hard_delete_allowed(settings: Settings, requested: bool | None) -> bool:
    """Whether a prune deletes rows: only when the setting allows it.

    A prune message carrying ``hard_delete=True`` is not enough on its own: anyone who can
    write to the broker could send one, and rows are the audit trail of what was handed out.
    A request can still turn hard deletes off for one run.
    """
    if not settings.prune_hard_delete:
        return False
    return requested is not False


def _log_failed_deletes(sweep: packs.ObjectSweep) -> None:
    for pack_id, error in sweep.failed:
        event(log, "pack.object_delete_failed", level=logging.WARNING, pack_id=pack_id, error=error)


def prune(settings: Settings, store: ArtifactStore, *, now: dt.datetime, hard_delete: bool | None = None) -> PruneResult:
    """One retention pass. ``hard_delete`` None follows the setting; True or False overrides it.

    This is the operator's entry point (the CLI's ``--hard-delete``). The beat's task goes
    through :func:`hard_delete_allowed` first.
    """
    hard_delete = settings.prune_hard_delete if hard_delete is None else hard_delete
    batch = settings.prune_batch_size
    expired = objects = deleted = 0
    with session_factory(settings.database_url)() as session:
        while True:
            expiry = packs.expire_due(session, store, now=now, limit=batch)
            if not expiry.expired:
                break
            expired += len(expiry.expired)
            objects += expiry.objects.deleted
            _log_failed_deletes(expiry.objects)
            event(log, "packs.expired", count=len(expiry.expired))

        after_id: int | None = 0
        while after_id is not None:
            after_id, sweep = packs.delete_leftover_objects(session, store, after_id=after_id, limit=batch)
            objects += sweep.deleted
            _log_failed_deletes(sweep)

        while hard_delete:
            count, sweep = packs.hard_delete_due(
                session, store, now=now, grace=dt.timedelta(days=settings.hard_delete_grace_days), limit=batch
            )
            if not count:
                break
            deleted += count
            # The rows are gone: an object that could not be deleted is orphaned and logged for an operator.
            _log_failed_deletes(sweep)
            event(log, "packs.hard_deleted", count=count)
    result = PruneResult(expired=expired, hard_deleted=deleted, objects_deleted=objects)
    event(log, "prune.done", expired=result.expired, hard_deleted=result.hard_deleted, objects_deleted=objects)
    return result
