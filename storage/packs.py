"""Write-side operations on packs and runs: every state change is a compare-and-set.

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

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from domain.reasons import USER_MESSAGES, ReasonCode
from domain.states import PackStatus, RunOutcome, RunStatus, sources_for
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


class ClaimState(StrEnum):
    CLAIMED = "claimed"
    BUSY = "busy"  # another attempt holds a live heartbeat
    DONE = "done"  # the pack is already in a final state, or unknown


def new_file_key() -> str:
    # Random, not derived from tenant names or ids, so keys cannot be guessed or enumerated.
    return f"packs/{secrets.token_hex(16)}.zip"


def claim(session: Session, pack_id: int, *, now: dt.datetime, lease: dt.timedelta) -> tuple[ClaimState, Claim | None]:
    pack = session.execute(select(ReviewPack).where(ReviewPack.id == pack_id)).scalar_one_or_none()
    if pack is None or pack.operation_run_id is None or pack.status not in (PackStatus.QUEUED, PackStatus.GENERATING):
        return ClaimState.DONE, None
    attempt = session.execute(
        update(OperationRun)
        .where(
            OperationRun.id == pack.operation_run_id,
            or_(
                OperationRun.status == RunStatus.QUEUED,
                and_(OperationRun.status == RunStatus.RUNNING, OperationRun.heartbeat_at < now - lease),
            ),
        )
        .values(
            status=RunStatus.RUNNING,
            attempts=OperationRun.attempts + 1,
            started_at=now,
            heartbeat_at=now,
        )
        .returning(OperationRun.attempts)
    ).scalar_one_or_none()
    if attempt is None:
        session.rollback()
        return ClaimState.BUSY, None
    moved = session.execute(
        update(ReviewPack)
        .where(ReviewPack.id == pack_id, ReviewPack.status.in_((PackStatus.QUEUED, PackStatus.GENERATING)))
        .values(status=PackStatus.GENERATING, rows_written=0, bytes_written=0, updated_at=now)
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
    )


def _owns(claim: Claim):
    return (
        OperationRun.id == claim.run_id,
        OperationRun.attempts == claim.attempt,
        OperationRun.status == RunStatus.RUNNING,
    )


def heartbeat(session: Session, claim: Claim, *, now: dt.datetime, rows: int, nbytes: int) -> bool:
    """Record progress and extend the lease; False when this attempt no longer owns the run."""
    owned = session.execute(update(OperationRun).where(*_owns(claim)).values(heartbeat_at=now)).rowcount == 1
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
    run_done = session.execute(
        update(OperationRun)
        .where(*_owns(claim))
        .values(status=RunStatus.COMPLETED, outcome=RunOutcome.SUCCEEDED, completed_at=now, heartbeat_at=now)
    ).rowcount
    pack_done = session.execute(
        update(ReviewPack)
        .where(ReviewPack.id == claim.pack_id, ReviewPack.status.in_(sources_for(PackStatus.READY)))
        .values(
            status=PackStatus.READY,
            sha256=sha256,
            file_size=size,
            file_disk=disk,
            summary=summary,
            rows_written=rows,
            bytes_written=size,
            generated_at=generated_at,
            expires_at=generated_at + retention,
            updated_at=now,
        )
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
            body=f"Review pack #{claim.pack_id} for {tenant_name(session, claim.tenant_id)} is ready to download.",
            data={"pack_id": claim.pack_id, "operation_run_id": claim.run_id, "tenant_id": claim.tenant_id},
        )
    session.commit()
    return True


def release(session: Session, claim: Claim, *, now: dt.datetime) -> bool:
    """Hand an attempt back so that a retry can claim the run again."""
    run = session.execute(
        update(OperationRun).where(*_owns(claim)).values(status=RunStatus.QUEUED, heartbeat_at=now)
    ).rowcount
    if run == 1:
        session.execute(
            update(ReviewPack)
            .where(ReviewPack.id == claim.pack_id, ReviewPack.status == PackStatus.GENERATING)
            .values(status=PackStatus.QUEUED, updated_at=now)
        )
    session.commit()
    return run == 1


def mark_failed(
    session: Session, pack_id: int, reason: ReasonCode, *, now: dt.datetime, attempt: int | None = None, detail: str | None = None
) -> bool:
    """Fail a queued or generating pack and complete its run; False when it was already final.

    ``attempt``, when given, fences the write to that attempt of the run.
    """
    pack = session.execute(
        select(ReviewPack).where(ReviewPack.id == pack_id).with_for_update()
    ).scalar_one_or_none()
    if pack is None or pack.status not in sources_for(PackStatus.FAILED):
        session.rollback()
        return False
    run_filter = [OperationRun.id == pack.operation_run_id, OperationRun.status != RunStatus.COMPLETED]
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
    run.status = RunStatus.COMPLETED
    run.outcome = RunOutcome.FAILED
    run.completed_at = now
    run.context = context
    pack.status = PackStatus.FAILED
    pack.updated_at = now
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


def tenant_name(session: Session, tenant_id: int) -> str:
    """How notifications name a tenant."""
    name = session.execute(select(Tenant.name).where(Tenant.id == tenant_id)).scalar_one_or_none()
    return name if name is not None else f"tenant {tenant_id}"


def add_notification(session: Session, *, user_id: int, kind: str, title: str, body: str, data: dict) -> None:
    session.add(Notification(user_id=user_id, kind=kind, title=title, body=body, data=data))


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
    session.add(
        AuditLog(
            workspace_id=workspace_id,
            tenant_id=tenant_id,
            actor_user_id=actor_id,
            action=action,
            resource_type="review_pack",
            resource_id=pack_id,
            details=details,
        )
    )
