"""The one writer of review pack and run state: every state change is a compare-and-set.

Nothing else in the project inserts, updates or deletes review packs or their runs
(tests/storage/test_state_owner.py checks the source tree for it). The statuses each
WHERE clause moves from come from the transition tables in domain/states.py.

The database is the lock. A claim succeeds for exactly one caller because it is
an UPDATE whose WHERE clause names the state it leaves; a caller whose UPDATE
touched no row lost the race and does nothing. Attempts count claims, and every
later write of an attempt names its number, so a worker that lost its claim
(its heartbeat went stale and another worker took over) cannot overwrite the
newer attempt's work.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, Row, bindparam, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.reasons import USER_MESSAGES, ReasonCode
from domain.states import (
    ACTIVE_PACK_STATUSES,
    RUN_TYPE_GENERATE,
    PackStatus,
    RunOutcome,
    RunStatus,
    check_pack_transition,
    check_run_transition,
    run_sources_for,
    sources_for,
)
from storage.artifacts import ArtifactStore, ArtifactStoreError
from storage.driver import DriverStatement
from storage.models import AuditLog, Notification, OperationRun, ReviewPack, Tenant


@dataclass(frozen=True)
class Claim:
    pack_id: int
    run_id: int
    attempt: int
    workspace_id: int
    tenant_id: int
    tenant_review_id: int | None
    initiator_id: int | None
    fingerprint: str | None
    options: dict
    file_key: str
    kind: str = "tenant"
    tenant_label: str = ""  # how notifications name the tenant


class ClaimState(StrEnum):
    CLAIMED = "claimed"
    BUSY = "busy"  # another attempt holds a live heartbeat
    DONE = "done"  # the pack is already in a final state, or unknown


def new_file_key() -> str:
    # Random, not derived from tenant names or ids, so keys cannot be guessed or enumerated.
    return f"packs/{secrets.token_hex(16)}.zip"


def claim(
    session: Session, pack_id: int, *, now: dt.datetime, lease: dt.timedelta, disk: str | None = None
) -> tuple[ClaimState, Claim | None]:
    """Start an attempt: a queued run, or a running one whose heartbeat is older than the lease.

    ``disk`` names the artifact store the attempt will upload to. It is recorded on the pack
    before anything is uploaded, so that an object left behind by an attempt that failed or
    died is always findable (``file_disk`` set) and swept by :func:`delete_leftover_objects`.
    """
    conn = session.connection()
    pack = conn.execute(_CLAIM_READ, {"pack_id": pack_id}).one_or_none()
    if pack is None or pack.operation_run_id is None or pack.status not in _INTO_GENERATING:
        return ClaimState.DONE, None
    attempt = conn.execute(
        _CLAIM_RUN, {"run_id": pack.operation_run_id, "now": now, "stale_before": now - lease}
    ).scalar_one_or_none()
    if attempt is None:
        session.rollback()
        return ClaimState.BUSY, None
    moved = conn.execute(
        _CLAIM_PACK if disk is None else _CLAIM_PACK_ON_DISK, {"pack_id": pack_id, "now": now, "disk": disk}
    ).rowcount
    if moved != 1:
        session.rollback()
        return ClaimState.DONE, None
    session.commit()
    return ClaimState.CLAIMED, Claim(
        pack_id=pack.id,
        run_id=pack.operation_run_id,
        attempt=attempt,
        workspace_id=pack.workspace_id,
        tenant_id=pack.tenant_id,
        tenant_review_id=pack.tenant_review_id,
        initiator_id=pack.initiated_by_user_id,
        fingerprint=pack.fingerprint,
        options=dict(pack.options),
        file_key=pack.file_path,
        kind=pack.kind,
        tenant_label=_tenant_label(pack.tenant_name, pack.tenant_id),
    )


# The statements every pack runs, built once: building them anew costs each small pack more Python
# time than running them. Core statements on the session's connection, as nothing reads them back
# through the ORM. Each WHERE names the states it leaves (domain/states.py).
_PACKS, _RUNS = ReviewPack.__table__, OperationRun.__table__
_INTO_GENERATING = sources_for(PackStatus.GENERATING)
_NOW = bindparam("now", type_=_RUNS.c.heartbeat_at.type)
_CLAIM_READ = select(
    _PACKS.c.id, _PACKS.c.status, _PACKS.c.operation_run_id, _PACKS.c.workspace_id, _PACKS.c.tenant_id,
    _PACKS.c.tenant_review_id, _PACKS.c.initiated_by_user_id, _PACKS.c.fingerprint, _PACKS.c.options,
    _PACKS.c.file_path, _PACKS.c.kind, Tenant.__table__.c.name.label("tenant_name"),
).outerjoin(Tenant.__table__, Tenant.__table__.c.id == _PACKS.c.tenant_id).where(_PACKS.c.id == bindparam("pack_id"))
_CLAIM_RUN = (
    update(_RUNS)
    .where(
        _RUNS.c.id == bindparam("run_id"),
        _RUNS.c.status.in_(run_sources_for(RunStatus.RUNNING)),
        # Taking over a running run (running -> running) is allowed only once its lease ran out.
        or_(_RUNS.c.status != RunStatus.RUNNING, _RUNS.c.heartbeat_at < bindparam("stale_before", type_=_RUNS.c.heartbeat_at.type)),
    )
    .values(status=RunStatus.RUNNING, attempts=_RUNS.c.attempts + 1, started_at=_NOW, heartbeat_at=_NOW)
    .returning(_RUNS.c.attempts)
)
_CLAIM_PACK = (
    update(_PACKS)
    .where(_PACKS.c.id == bindparam("pack_id"), _PACKS.c.status.in_(_INTO_GENERATING))
    .values(status=PackStatus.GENERATING, rows_written=0, bytes_written=0, updated_at=_NOW)
)
_CLAIM_PACK_ON_DISK = _CLAIM_PACK.values(file_disk=bindparam("disk"))


# The run is still this attempt's: its number and the running state (parameters: _owner(claim)).
_OWNED = (
    _RUNS.c.id == bindparam("run_id"),
    _RUNS.c.attempts == bindparam("attempt"),
    _RUNS.c.status == RunStatus.RUNNING,
)
_HEARTBEAT = update(_RUNS).where(*_OWNED).values(heartbeat_at=_NOW)


def _owner(claim: Claim, now: dt.datetime) -> dict:
    return {"run_id": claim.run_id, "attempt": claim.attempt, "now": now}


def heartbeat(session: Session, claim: Claim, *, now: dt.datetime, rows: int, nbytes: int) -> bool:
    """Record progress and extend the lease; False when this attempt no longer owns the run."""
    owned = session.connection().execute(_HEARTBEAT, _owner(claim, now)).rowcount == 1
    if owned:
        session.execute(
            update(ReviewPack)
            .where(ReviewPack.id == claim.pack_id, ReviewPack.status == PackStatus.GENERATING)
            .values(rows_written=rows, bytes_written=nbytes, updated_at=now)
        )
    session.commit()
    return owned


def set_fingerprint(session: Session, claim: Claim, fingerprint: str) -> None:
    """Record the fingerprint of the data actually read; raises IntegrityError if a live pack has it."""
    session.execute(update(ReviewPack).where(ReviewPack.id == claim.pack_id).values(fingerprint=fingerprint))
    session.commit()


def mark_ready(
    session: Session,
    claim: Claim,
    *,
    now: dt.datetime,
    retention: dt.timedelta,
    sha256: str,
    size: int,
    disk: str,
    summary: dict,
    rows: int,
    generated_at: dt.datetime | None = None,
) -> bool:
    """``generated_at`` is the time the pack's metadata states; it defaults to ``now``."""
    generated_at = generated_at or now
    conn = session.connection()
    run_done = conn.execute(_RUN_COMPLETED, _owner(claim, now)).rowcount
    pack_done = conn.execute(
        _PACK_READY,
        {
            "pack_id": claim.pack_id,
            "sha256": sha256,
            "size": size,
            "disk": disk,
            "summary": summary,
            "rows": rows,
            "generated_at": generated_at,
            "expires_at": generated_at + retention,
            "now": now,
        },
    ).rowcount
    if run_done != 1 or pack_done != 1:
        session.rollback()
        return False
    if claim.initiator_id is not None:
        add_notification(
            session,
            user_id=claim.initiator_id,
            kind="review_pack.ready",
            title="Review pack ready",
            body=f"Review pack #{claim.pack_id} for {claim.tenant_label} is ready to download.",
            data={"pack_id": claim.pack_id, "operation_run_id": claim.run_id, "tenant_id": claim.tenant_id},
        )
    session.commit()
    return True


_RUN_COMPLETED = (
    update(_RUNS)
    .where(*_OWNED, _RUNS.c.status.in_(run_sources_for(RunStatus.COMPLETED)))
    .values(status=RunStatus.COMPLETED, outcome=RunOutcome.SUCCEEDED, completed_at=_NOW, heartbeat_at=_NOW)
)
_PACK_READY = (
    update(_PACKS)
    .where(_PACKS.c.id == bindparam("pack_id"), _PACKS.c.status.in_(sources_for(PackStatus.READY)))
    .values(
        status=PackStatus.READY,
        sha256=bindparam("sha256"),
        file_size=bindparam("size"),
        file_disk=bindparam("disk"),
        summary=bindparam("summary", type_=_PACKS.c.summary.type),
        rows_written=bindparam("rows"),
        bytes_written=bindparam("size"),
        generated_at=bindparam("generated_at", type_=_PACKS.c.generated_at.type),
        expires_at=bindparam("expires_at", type_=_PACKS.c.expires_at.type),
        updated_at=_NOW,
    )
)


def release(session: Session, claim: Claim, *, now: dt.datetime) -> bool:
    """Hand an attempt back so that a retry can claim the run again."""
    run = session.connection().execute(
        update(_RUNS)
        .where(*_OWNED, _RUNS.c.status.in_(run_sources_for(RunStatus.QUEUED)))
        .values(status=RunStatus.QUEUED, heartbeat_at=_NOW),
        _owner(claim, now),
    ).rowcount
    if run == 1:
        _pack_back_to_queued(session, claim.pack_id, now=now)
    session.commit()
    return run == 1


def _pack_back_to_queued(session: Session, pack_id: int, *, now: dt.datetime) -> None:
    session.execute(
        update(ReviewPack)
        .where(ReviewPack.id == pack_id, ReviewPack.status.in_(sources_for(PackStatus.QUEUED)))
        .values(status=PackStatus.QUEUED, updated_at=now)
    )


def mark_failed(
    session: Session,
    pack_id: int,
    reason: ReasonCode,
    *,
    now: dt.datetime,
    attempt: int | None = None,
    detail: str | None = None,
    object_gone: bool = False,
) -> bool:
    """Fail a queued or generating pack and complete its run; False when it was already final.

    ``attempt``, when given, fences the write to that attempt of the run. ``object_gone`` says
    the caller deleted whatever an attempt uploaded under the pack's key, so ``file_disk`` is
    cleared; otherwise it stays and the next prune deletes the object.
    """
    pack = session.execute(
        select(ReviewPack).where(ReviewPack.id == pack_id).with_for_update()
    ).scalar_one_or_none()
    if pack is None or pack.status not in sources_for(PackStatus.FAILED):
        session.rollback()
        return False
    run_filter = [
        OperationRun.id == pack.operation_run_id,
        OperationRun.status.in_(run_sources_for(RunStatus.COMPLETED)),
    ]
    if attempt is not None:
        run_filter.append(OperationRun.attempts == attempt)
    run = session.execute(select(OperationRun).where(*run_filter).with_for_update()).scalar_one_or_none()
    if run is None:
        session.rollback()
        return False
    context = dict(run.context or {})
    context["reason_code"] = reason.value
    if detail:
        context["detail"] = detail[:500]
    run.status = check_run_transition(run.status, RunStatus.COMPLETED)
    run.outcome = RunOutcome.FAILED
    run.completed_at = now
    run.context = context
    pack.status = check_pack_transition(pack.status, PackStatus.FAILED)
    pack.updated_at = now
    if object_gone:
        pack.file_disk = None
    if pack.initiated_by_user_id is not None:
        add_notification(
            session,
            user_id=pack.initiated_by_user_id,
            kind="review_pack.failed",
            title="Review pack failed",
            body=f"Review pack #{pack.id} for {tenant_name(session, pack.tenant_id)} failed: {USER_MESSAGES[reason]}",
            data={"pack_id": pack.id, "operation_run_id": run.id, "tenant_id": pack.tenant_id, "reason_code": reason.value},
        )
    session.commit()
    return True


_TENANT_NAME = select(Tenant.__table__.c.name).where(Tenant.__table__.c.id == bindparam("tenant_id"))


def tenant_name(session: Session, tenant_id: int) -> str:
    """How notifications name a tenant."""
    return _tenant_label(session.connection().execute(_TENANT_NAME, {"tenant_id": tenant_id}).scalar_one_or_none(), tenant_id)


def _tenant_label(name: str | None, tenant_id: int) -> str:
    return name if name is not None else f"tenant {tenant_id}"


def add_notification(session: Session, *, user_id: int, kind: str, title: str, body: str, data: dict) -> None:
    _insert_rows(session, Notification, [{"user_id": user_id, "kind": kind, "title": title, "body": body, "data": data}])


def add_audit(
    session: Session,
    *,
    workspace_id: int,
    tenant_id: int | None,
    actor_id: int | None,
    action: str,
    pack_id: int | None,
    details: dict,
) -> None:
    _insert_audits(session, [_audit_row(workspace_id, tenant_id, actor_id, action, pack_id, details)])


AUDIT_RESOURCE = "review_pack"  # the resource type of every audit row this project writes


def _audit_row(
    workspace_id: int, tenant_id: int | None, actor_id: int | None, action: str, pack_id: int | None, details: dict
) -> dict:
    # Keyed by column, not attribute: the rows go to the table itself (details is stored as "metadata").
    return {
        "workspace_id": workspace_id,
        "tenant_id": tenant_id,
        "actor_user_id": actor_id,
        "action": action,
        "resource_type": AUDIT_RESOURCE,
        "resource_id": pack_id,
        "metadata": details,
    }


def _insert_audits(session: Session, rows: list[dict]) -> None:
    _insert_rows(session, AuditLog, rows)


def _insert_rows(session: Session, model: type[AuditLog] | type[Notification], rows: list[dict]) -> None:
    # A plain INSERT on the session's connection, sent at once: audit rows and notifications are
    # never read back by their writer, so they need neither the unit of work nor the ORM's bulk
    # path nor a RETURNING of their ids, which a request would otherwise pay for on every call.
    # Pending objects are flushed first, so rows keep the order in which they were added.
    if rows:
        session.flush()
        session.connection().execute(insert(model.__table__), rows)


# -- requests ------------------------------------------------------------------------------------

# The audit action of every request, whatever its outcome.
REQUESTED = "review_pack.requested"


def create_request(
    session: Session,
    *,
    workspace_id: int,
    tenant_id: int,
    review_id: int | None,
    actor_id: int,
    fingerprint: str,
    previous_fingerprint: str | None,
    options: dict,
    now: dt.datetime,
    kind: str,
    audit_details: dict,
    tenant_label: str,
) -> ReviewPack | None:
    """Insert the run, the pack, the request's audit row and the queued notification in one transaction.

    ``tenant_label`` is how the notification names the tenant (the request has just read it).

    Returns None when a concurrent request inserted a live pack first (a partial unique index
    refused this one: the same fingerprint, or another active pack of the tenant); the caller
    looks again and reuses it or refuses the request.
    """
    run = OperationRun(
        workspace_id=workspace_id,
        tenant_id=tenant_id,
        type=RUN_TYPE_GENERATE,
        status=RunStatus.QUEUED,
        context={"review_id": review_id} if review_id else {},
        initiator_user_id=actor_id,
        created_at=now,
    )
    session.add(run)
    session.flush()
    pack = ReviewPack(
        workspace_id=workspace_id,
        tenant_id=tenant_id,
        tenant_review_id=review_id,
        kind=kind,
        operation_run_id=run.id,
        initiated_by_user_id=actor_id,
        status=PackStatus.QUEUED,
        fingerprint=fingerprint,
        previous_fingerprint=previous_fingerprint if previous_fingerprint != fingerprint else None,
        options=options,
        file_path=new_file_key(),
        created_at=now,
        updated_at=now,
    )
    session.add(pack)
    try:
        session.flush()
        add_audit(
            session,
            workspace_id=workspace_id,
            tenant_id=tenant_id,
            actor_id=actor_id,
            action=REQUESTED,
            pack_id=pack.id,
            details=audit_details,
        )
        add_notification(
            session,
            user_id=actor_id,
            kind="review_pack.queued",
            title="Review pack queued",
            body=f"Review pack #{pack.id} for {tenant_label} is queued for generation.",
            data={"pack_id": pack.id, "operation_run_id": run.id, "tenant_id": tenant_id},
        )
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return pack


# The packs a request shares instead of starting a new one: an active generation, or a ready pack.
LIVE_STATUSES = (*sorted(ACTIVE_PACK_STATUSES), PackStatus.READY)
_AUDITS = AuditLog.__table__
_AUDIT_DETAILS = _AUDITS.c.metadata.type


# The pack a request with these inputs shares, if any (uq_reviewpacks_packs_active_fingerprint makes it at most one).
# Built once, because every request runs it and building it anew costs Python time on each call.
_LIVE = select(_PACKS).where(
    _PACKS.c.workspace_id == bindparam("workspace_id"),
    _PACKS.c.tenant_id == bindparam("tenant_id"),
    _PACKS.c.fingerprint == bindparam("fingerprint"),
    # One bind per status, not an expanding IN: the statement is compiled once (storage/driver.py).
    _PACKS.c.status.in_([literal(status, _PACKS.c.status.type) for status in LIVE_STATUSES]),
)


def _reuse_statement():
    """The live pack for a fingerprint, and the request's audit row written by the same statement.

    The row is written only when the pack is handed out: an active one, or a ready one still
    inside its retention (a ready pack past it is expired by the general path, which writes
    the request's audit itself). Its details are the caller's, picked by the pack's status.
    """
    live = _LIVE.cte("live")
    handed_out = or_(live.c.status != PackStatus.READY, live.c.expires_at > _NOW)
    details = case(
        (live.c.status == PackStatus.READY, bindparam("ready_details", type_=_AUDIT_DETAILS)),
        else_=bindparam("active_details", type_=_AUDIT_DETAILS),
    )
    audit = insert(_AUDITS).from_select(
        ["workspace_id", "tenant_id", "actor_user_id", "action", "resource_type", "resource_id", "metadata", "created_at"],
        select(
            live.c.workspace_id, live.c.tenant_id, bindparam("actor_id", type_=_AUDITS.c.actor_user_id.type),
            literal(REQUESTED, _AUDITS.c.action.type), literal(AUDIT_RESOURCE, _AUDITS.c.resource_type.type),
            live.c.id, details, _NOW,
        ).where(handed_out),
    )
    return DriverStatement(select(live).add_cte(audit.cte("audit")))


_REUSE = _reuse_statement()


def live_pack(conn: Connection, *, workspace_id: int, tenant_id: int, fingerprint: str) -> Row | None:
    """The live pack with this fingerprint, if any, as a row of its table."""
    params = {"workspace_id": workspace_id, "tenant_id": tenant_id, "fingerprint": fingerprint}
    return conn.execute(_LIVE, params).one_or_none()


def past_retention(pack, now: dt.datetime) -> bool:
    """A ready pack past retention but not yet pruned: it must not be handed out, nor block a new pack."""
    return bool(pack.status == PackStatus.READY and (pack.expires_at is None or pack.expires_at <= now))


def reuse_live(
    conn: Connection,
    *,
    workspace_id: int,
    tenant_id: int,
    fingerprint: str,
    actor_id: int,
    now: dt.datetime,
    ready_details: dict,
    active_details: dict,
) -> Row | None:
    """The live pack with this fingerprint, if any; when it may be handed out, the request is audited too.

    One round trip on PostgreSQL (a data-modifying WITH); elsewhere the read, then the insert.
    A ready pack past retention comes back unaudited (:func:`past_retention`): the caller
    expires it on the general path.
    """
    if conn.dialect.name == "postgresql":
        params = {"workspace_id": workspace_id, "tenant_id": tenant_id, "fingerprint": fingerprint, "actor_id": actor_id,
                  "now": now, "ready_details": ready_details, "active_details": active_details}
        return _REUSE.first(conn, params)
    live = live_pack(conn, workspace_id=workspace_id, tenant_id=tenant_id, fingerprint=fingerprint)
    if live is not None and not past_retention(live, now):
        details = ready_details if live.status == PackStatus.READY else active_details
        conn.execute(insert(_AUDITS), [_audit_row(workspace_id, tenant_id, actor_id, REQUESTED, live.id, details)])
    return live


# -- retention: expiry, object deletion, hard deletes ----------------------------------------------

# Packs whose stored object has no further use: it is deleted, and file_disk cleared once it is gone.
_DISCARDED = (PackStatus.EXPIRED, PackStatus.FAILED)


@dataclass(frozen=True)
class ObjectSweep:
    """Objects deleted, and the packs whose object could not be (pack id, error type)."""

    deleted: int = 0
    failed: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Expiry:
    expired: tuple[int, ...] = ()
    objects: ObjectSweep = ObjectSweep()


def expire(
    session: Session,
    store: ArtifactStore,
    pack_ids: list[int],
    *,
    now: dt.datetime,
    by: str,
    actor_id: int | None = None,
) -> Expiry:
    """READY -> EXPIRED for the given packs: the one way a pack expires.

    Every expiry (an actor's, retention's, and the one a request performs on a pack past its
    deadline) writes the same audit row, then deletes the object. The rows commit first; an
    object that cannot be deleted now keeps its row's file_disk, and the next prune deletes it,
    so storage being down never turns an expiry into an error after the row has moved.
    """
    if not pack_ids:
        return Expiry()
    rows = session.execute(
        update(ReviewPack)
        .where(ReviewPack.id.in_(pack_ids), ReviewPack.status.in_(sources_for(PackStatus.EXPIRED)))
        .values(status=PackStatus.EXPIRED, expired_at=now, updated_at=now)
        .returning(ReviewPack.id, ReviewPack.workspace_id, ReviewPack.tenant_id, ReviewPack.file_path)
    ).all()
    _insert_audits(
        session,
        [
            _audit_row(workspace_id, tenant_id, actor_id, "review_pack.expired", pack_id, {"by": by})
            for pack_id, workspace_id, tenant_id, _key in rows
        ],
    )
    session.commit()
    return Expiry(
        expired=tuple(r[0] for r in rows),
        objects=_delete_objects(session, store, [(r[0], r[3]) for r in rows]),
    )


def expire_due(session: Session, store: ArtifactStore, *, now: dt.datetime, limit: int) -> Expiry:
    """Expire one batch of ready packs past their deadline; an empty result means none are left.

    The batch is locked with SKIP LOCKED, so two prunes running at once take different packs.
    """
    ids = _lock_batch(session, (ReviewPack.status == PackStatus.READY, ReviewPack.expires_at < now), limit)
    return expire(session, store, ids, now=now, by="retention")


def delete_leftover_objects(
    session: Session, store: ArtifactStore, *, after_id: int, limit: int
) -> tuple[int | None, ObjectSweep]:
    """One batch of expired or failed packs that still have an object, by id after ``after_id``.

    These are objects an earlier expiry could not delete, and objects a failed or killed attempt
    uploaded. Returns the last id looked at (None when there are no more) and what was deleted.
    """
    rows = session.execute(
        select(ReviewPack.id, ReviewPack.file_path)
        .where(ReviewPack.status.in_(_DISCARDED), ReviewPack.file_disk.is_not(None), ReviewPack.id > after_id)
        .order_by(ReviewPack.id)
        .limit(limit)
    ).all()
    session.rollback()
    if not rows:
        return None, ObjectSweep()
    return rows[-1][0], _delete_objects(session, store, [(r[0], r[1]) for r in rows])


def hard_delete_due(
    session: Session, store: ArtifactStore, *, now: dt.datetime, grace: dt.timedelta, limit: int
) -> tuple[int, ObjectSweep]:
    """Delete one batch of rows of packs expired longer than ``grace`` ago, then their objects."""
    ids = _lock_batch(session, (ReviewPack.status == PackStatus.EXPIRED, ReviewPack.expired_at < now - grace), limit)
    if not ids:
        return 0, ObjectSweep()
    rows = session.execute(
        delete(ReviewPack)
        .where(ReviewPack.id.in_(ids), ReviewPack.status == PackStatus.EXPIRED)
        .returning(ReviewPack.id, ReviewPack.file_path, ReviewPack.file_disk)
    ).all()
    session.commit()
    # The rows are gone, so an object that cannot be deleted now is reported, not retried.
    return len(rows), _delete_objects(session, store, [(r[0], r[1]) for r in rows if r[2]], clear=False)


def _lock_batch(session: Session, where, limit: int) -> list[int]:
    return list(
        session.execute(
            select(ReviewPack.id).where(*where).order_by(ReviewPack.id).limit(limit).with_for_update(skip_locked=True)
        ).scalars()
    )


def _delete_objects(
    session: Session, store: ArtifactStore, rows: list[tuple[int, str | None]], *, clear: bool = True
) -> ObjectSweep:
    """Delete stored objects (one already gone is not an error); clear file_disk of those gone."""
    gone: list[int] = []
    failed: list[tuple[int, str]] = []
    for pack_id, key in rows:
        if not key:
            continue
        try:
            store.delete(key)
        except ArtifactStoreError as exc:
            failed.append((pack_id, type(exc).__name__))
            continue
        gone.append(pack_id)
    if gone and clear:
        session.execute(
            update(ReviewPack).where(ReviewPack.id.in_(gone), ReviewPack.status.in_(_DISCARDED)).values(file_disk=None)
        )
        session.commit()
    return ObjectSweep(deleted=len(gone), failed=tuple(failed))


# -- recovery: stale runs and lost messages --------------------------------------------------------


@dataclass(frozen=True)
class StaleRun:
    run_id: int
    attempts: int
    heartbeat_at: dt.datetime
    pack_id: int


def stale_runs(session: Session, *, now: dt.datetime, lease: dt.timedelta, limit: int) -> list[StaleRun]:
    """Running generation runs whose heartbeat is older than the lease: their worker is gone."""
    rows = session.execute(
        select(OperationRun.id, OperationRun.attempts, OperationRun.heartbeat_at, ReviewPack.id)
        .join(ReviewPack, ReviewPack.operation_run_id == OperationRun.id)
        .where(
            OperationRun.type == RUN_TYPE_GENERATE,
            OperationRun.status == RunStatus.RUNNING,
            OperationRun.heartbeat_at < now - lease,
        )
        .order_by(OperationRun.id)
        .limit(limit)
    ).all()
    session.rollback()
    return [StaleRun(*row) for row in rows]


def requeue_stale(session: Session, stale: StaleRun, *, now: dt.datetime) -> bool:
    """Hand a stale run back to the queue; False when its worker came back or another sweep won."""
    # The same heartbeat in the WHERE clause: a worker that came back to life in between keeps its run.
    moved = session.execute(
        update(OperationRun)
        .where(
            OperationRun.id == stale.run_id,
            OperationRun.status.in_(run_sources_for(RunStatus.QUEUED)),
            OperationRun.attempts == stale.attempts,
            OperationRun.heartbeat_at == stale.heartbeat_at,
        )
        .values(status=RunStatus.QUEUED, published_at=now)
    ).rowcount
    if moved != 1:
        session.rollback()
        return False
    _pack_back_to_queued(session, stale.pack_id, now=now)
    session.commit()
    return True


def mark_republished(session: Session, *, now: dt.datetime, older_than: dt.timedelta, limit: int) -> list[int]:
    """Queued runs published (or created) longer ago than ``older_than``: stamp them, return their packs.

    Their message was lost (a broker restarted without persistence). Stamping ``published_at``
    in the same statement that picks them means each is re-published once per window.
    """
    overdue = (
        OperationRun.type == RUN_TYPE_GENERATE,
        OperationRun.status == RunStatus.QUEUED,
        func.coalesce(OperationRun.published_at, OperationRun.created_at) < now - older_than,
    )
    batch = select(OperationRun.id).where(*overdue).order_by(OperationRun.id).limit(limit)
    forgotten = session.execute(
        update(OperationRun)
        .where(OperationRun.id.in_(batch.scalar_subquery()), *overdue)
        .values(published_at=now)
        .returning(OperationRun.id)
    ).scalars().all()
    pack_ids = (
        list(session.execute(select(ReviewPack.id).where(ReviewPack.operation_run_id.in_(forgotten))).scalars())
        if forgotten
        else []
    )
    session.commit()
    return pack_ids


# -- dispatch outbox: packs whose generate task the broker did not take ---------------------------


def mark_dispatch_pending(session: Session, pack_id: int, *, now: dt.datetime) -> None:
    """Record that the pack's task could not be published; the dispatch sweep publishes it later."""
    session.execute(
        update(ReviewPack)
        .where(ReviewPack.id == pack_id, ReviewPack.status == PackStatus.QUEUED, ReviewPack.dispatch_pending_since.is_(None))
        .values(dispatch_pending_since=now)
    )
    session.commit()


def claim_pending_dispatches(session: Session, *, limit: int) -> list[int]:
    """Lock a batch of queued packs awaiting dispatch, oldest first; the caller publishes, then calls dispatched().

    A pack that left ``queued`` meanwhile (the lost-message sweep republished it and a worker
    took it) only loses its mark. The row locks (PostgreSQL) keep two sweepers from publishing
    one pack at the same moment; a second publish would be harmless anyway, since the claim
    is a compare-and-set. With nothing pending, the sweep reads one index and writes nothing.
    """
    rows = session.execute(
        select(ReviewPack.id, ReviewPack.status)
        .where(ReviewPack.dispatch_pending_since.is_not(None))
        .order_by(ReviewPack.dispatch_pending_since, ReviewPack.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    moved_on = [pack_id for pack_id, status in rows if status != PackStatus.QUEUED]
    if moved_on:
        session.execute(update(ReviewPack).where(ReviewPack.id.in_(moved_on)).values(dispatch_pending_since=None))
    return [pack_id for pack_id, status in rows if status == PackStatus.QUEUED]


def dispatched(session: Session, pack_ids: list[int], *, now: dt.datetime) -> None:
    """Clear the pending mark of packs whose task the broker took, and stamp their runs as published (the caller commits)."""
    if not pack_ids:
        return
    session.execute(update(ReviewPack).where(ReviewPack.id.in_(pack_ids)).values(dispatch_pending_since=None))
    session.execute(
        update(OperationRun)
        .where(OperationRun.id.in_(select(ReviewPack.operation_run_id).where(ReviewPack.id.in_(pack_ids))))
        .values(published_at=now)
    )
