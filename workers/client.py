"""The producer-side client: request packs, read their state, issue download URLs.

Every call checks the actor's capabilities in the tenant's workspace before it
reads or writes anything else, and a refused call writes nothing. Requests are
answered from an existing pack when the fingerprint matches; otherwise the run
and the pack are created in one transaction and the generate task is queued
after that transaction commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain import capabilities, fingerprint, layout
from domain.capabilities import Action
from domain.options import InvalidOptions, PackOptions, resolve_options
from domain.states import ACTIVE_PACK_STATUSES, RUN_TYPE_GENERATE, TERMINAL_PACK_STATUSES, PackStatus, RunStatus
from settings import Settings
from storage import packs, queries
from storage.artifacts import ArtifactStore, artifact_store_from_settings
from storage.db import session_factory
from storage.models import OperationRun, ReviewPack, Tenant, TenantReview, WorkspaceMembership

log = logging.getLogger("reviewpacks.client")

MAX_ID = 2**63 - 1
GENERATE_TASK = "reviewpacks.generate"
GENERATE_QUEUE = "review_packs"


class ReviewPackError(Exception):
    """Base of the errors a caller can act on."""


class NotFound(ReviewPackError):
    """404: unknown id, or the actor is not a member of its workspace (never says which)."""


class Forbidden(ReviewPackError):
    """403: a member of the workspace without the capability."""


class InvalidRequest(ReviewPackError):
    """400: bad arguments, an unpublished review, or a pack not in a state for the call."""


class Conflict(ReviewPackError):
    """409: another generation with other inputs is already in progress for the tenant."""


class WaitTimeout(ReviewPackError):
    """The pack did not reach a final state within the timeout."""


@dataclass(frozen=True)
class PackView:
    id: int
    workspace_id: int
    tenant_id: int
    tenant_review_id: int | None
    status: str
    fingerprint: str | None
    previous_fingerprint: str | None
    sha256: str | None
    file_size: int | None
    options: dict
    summary: dict
    generated_at: dt.datetime | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    operation_run_id: int | None
    rows_written: int
    bytes_written: int
    reason_code: str | None = None
    kind: str = layout.PackKind.TENANT.value

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_PACK_STATUSES


# What review_pack_status answers (seed 004 FR-008, without the seed's UI-only states).
REVIEW_PACK_AVAILABLE = "available"
REVIEW_PACK_GENERATING = "generating"
REVIEW_PACK_UNAVAILABLE = "unavailable"
REVIEW_PACK_EXPIRED = "expired"

# The review-export outcomes the seed's audit log names, for the request outcomes here.
REVIEW_EXPORT_OUTCOMES = {"reused_ready": "reused", "reused_active": "reused_active_run", "queued": "queued"}


@dataclass(frozen=True)
class RequestResult:
    outcome: str  # "queued" | "reused_ready" | "reused_active"
    pack: PackView


def _not_found() -> NotFound:
    return NotFound("review pack or tenant not found")


def _check_id(name: str, value: object) -> int:
    if type(value) is not int or not 0 < value <= MAX_ID:
        raise InvalidRequest(f"{name} must be a positive whole number, got {value!r}")
    return value


def _audit(session: Session, pack: ReviewPack, actor_id: int, action: str, details: dict) -> None:
    packs.add_audit(
        session,
        workspace_id=pack.workspace_id,
        tenant_id=pack.tenant_id,
        actor_id=actor_id,
        action=action,
        pack_id=pack.id,
        details=details,
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ReviewPackClient:
    def __init__(
        self,
        settings: Settings,
        *,
        store: ArtifactStore | None = None,
        publish: Callable[[int], None] | None = None,
    ):
        self.settings = settings
        self._session = session_factory(settings.database_url)
        self._store = store
        self._publish = publish or self._celery_publisher()

    @classmethod
    def from_env(cls) -> "ReviewPackClient":
        return cls(Settings.from_env())

    @property
    def store(self) -> ArtifactStore:
        if self._store is None:
            self._store = artifact_store_from_settings(self.settings)
        return self._store

    def _celery_publisher(self) -> Callable[[int], None]:
        app = None

        def publish(pack_id: int) -> None:
            nonlocal app
            if app is None:
                from workers.app import make_app

                app = make_app(self.settings)
            app.send_task(GENERATE_TASK, args=[pack_id], queue=GENERATE_QUEUE)

        return publish

    # -- access -------------------------------------------------------------------------------

    def _membership(self, actor_id: int, workspace_column):
        """Join condition: the actor is a member of the row's workspace."""
        return (WorkspaceMembership.workspace_id == workspace_column) & (WorkspaceMembership.user_id == actor_id)

    def _check(self, granted: object, action: Action) -> None:
        if not capabilities.allows(granted if isinstance(granted, list) else [], action):
            raise Forbidden(f"you need the {capabilities.REQUIRED[action]} capability in this workspace")

    def _tenant(self, session: Session, tenant_id: int, actor_id: int, action: Action) -> Tenant:
        # Scoped in the query itself: a tenant outside the actor's workspaces is never loaded.
        row = session.execute(
            select(Tenant, WorkspaceMembership.capabilities)
            .join(WorkspaceMembership, self._membership(actor_id, Tenant.workspace_id))
            .where(Tenant.id == tenant_id)
        ).first()
        if row is None:
            raise _not_found()
        self._check(row[1], action)
        return row[0]

    def _pack(self, session: Session, pack_id: int, actor_id: int, action: Action) -> ReviewPack:
        row = session.execute(
            select(ReviewPack, WorkspaceMembership.capabilities)
            .join(WorkspaceMembership, self._membership(actor_id, ReviewPack.workspace_id))
            .join(Tenant, (Tenant.id == ReviewPack.tenant_id) & (Tenant.workspace_id == ReviewPack.workspace_id))
            .where(ReviewPack.id == pack_id)
        ).first()
        if row is None:
            raise _not_found()
        self._check(row[1], action)
        return row[0]

    # -- requests -----------------------------------------------------------------------------

    def request_pack(
        self,
        tenant_id: int,
        actor_id: int,
        include_pii: bool | None = None,
        include_operations: bool | None = None,
        **unknown: object,
    ) -> RequestResult:
        if unknown:
            raise InvalidRequest(f"unknown option(s): {', '.join(sorted(unknown))}; known: include_pii, include_operations")
        _check_id("tenant_id", tenant_id)
        _check_id("actor_id", actor_id)
        try:
            options = resolve_options(
                include_pii,
                include_operations,
                default_pii=self.settings.include_pii_default,
                default_operations=self.settings.include_operations_default,
            )
        except InvalidOptions as exc:
            raise InvalidRequest(str(exc)) from None
        with self._session() as session:
            tenant = self._tenant(session, tenant_id, actor_id, Action.REQUEST)
            since = queries.operations_since(utcnow().date()) if options.include_operations else None
            tenant_row = {c.key: getattr(tenant, c.key) for c in Tenant.__table__.columns}
            inputs = queries.tenant_inputs(session.connection(), tenant_row, options, since, self._freshness_basis())
            stored_options = options.as_dict()
            if since is not None:
                stored_options["operations_since"] = since.isoformat()
            return self._request(
                session,
                workspace_id=tenant.workspace_id,
                tenant_id=tenant.id,
                review_id=None,
                kind=layout.PackKind.TENANT,
                actor_id=actor_id,
                fp=fingerprint.compute(inputs),
                options=stored_options,
            )

    def request_review_pack(self, review_id: int, actor_id: int) -> RequestResult:
        _check_id("review_id", review_id)
        _check_id("actor_id", actor_id)
        with self._session() as session:
            review_tenant = session.execute(
                select(TenantReview.tenant_id)
                .join(Tenant, Tenant.id == TenantReview.tenant_id)
                .join(WorkspaceMembership, self._membership(actor_id, Tenant.workspace_id))
                .where(TenantReview.id == review_id)
            ).scalar_one_or_none()
            if review_tenant is None:
                raise _not_found()
            tenant = self._tenant(session, review_tenant, actor_id, Action.REQUEST_REVIEW)
            review = session.get(TenantReview, review_id)
            if review.status != "published":
                raise InvalidRequest(f"review {review_id} is {review.status}; only published reviews can be exported")
            options = PackOptions(include_pii=self.settings.include_pii_default, include_operations=False)
            conn = session.connection()
            inputs = queries.review_pack_inputs(
                conn, queries.review_row(conn, review.id), queries.tenant_row(conn, tenant.id), options, self._freshness_basis()
            )
            return self._request(
                session,
                workspace_id=tenant.workspace_id,
                tenant_id=tenant.id,
                review_id=review.id,
                kind=layout.PackKind.REVIEW,
                actor_id=actor_id,
                fp=fingerprint.compute(inputs),
                options=options.as_dict(),
            )

    def _request(
        self,
        session: Session,
        *,
        workspace_id: int,
        tenant_id: int,
        review_id: int | None,
        kind: layout.PackKind,
        actor_id: int,
        fp: str,
        options: dict,
    ) -> RequestResult:
        audit = dict(workspace_id=workspace_id, tenant_id=tenant_id, actor_id=actor_id, action="review_pack.requested")

        def details(outcome: str) -> dict:
            recorded = {"outcome": outcome, "fingerprint": fp}
            if review_id is not None:
                # The seed's review-export audit names the review and its own outcome words.
                recorded.update(review_id=review_id, export_outcome=REVIEW_EXPORT_OUTCOMES.get(outcome, outcome))
            return recorded

        # Two rounds at most: when a concurrent request wins the insert, the second round finds its pack.
        for _ in range(3):
            live = session.execute(
                select(ReviewPack).where(
                    ReviewPack.workspace_id == workspace_id,
                    ReviewPack.tenant_id == tenant_id,
                    ReviewPack.fingerprint == fp,
                    ReviewPack.status.in_([*ACTIVE_PACK_STATUSES, PackStatus.READY]),
                )
            ).scalar_one_or_none()
            now = utcnow()
            if live is not None and live.status == PackStatus.READY and live.expires_at <= now:
                # Past retention but not yet pruned: it must not be handed out, nor block a new pack.
                # Its object is deleted by the next prune (the row keeps file_disk until then).
                session.execute(
                    update(ReviewPack)
                    .where(ReviewPack.id == live.id, ReviewPack.status == PackStatus.READY)
                    .values(status=PackStatus.EXPIRED, expired_at=now, updated_at=now)
                )
                session.flush()
                live = None
            if live is not None:
                outcome = "reused_ready" if live.status == PackStatus.READY else "reused_active"
                packs.add_audit(session, **audit, pack_id=live.id, details=details(outcome))
                session.commit()
                return RequestResult(outcome, self._view(session, live))
            self._refuse_if_tenant_busy(session, audit, tenant_id, fp, details)

            previous = session.execute(
                select(ReviewPack.fingerprint)
                .where(
                    ReviewPack.workspace_id == workspace_id,
                    ReviewPack.tenant_id == tenant_id,
                    ReviewPack.status == PackStatus.READY,
                    ReviewPack.kind == kind.value,
                    *([] if review_id is None else [ReviewPack.tenant_review_id == review_id]),
                )
                .order_by(ReviewPack.generated_at.desc(), ReviewPack.id.desc())
                .limit(1)
            ).scalar_one_or_none()
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
                kind=kind.value,
                operation_run_id=run.id,
                initiated_by_user_id=actor_id,
                status=PackStatus.QUEUED,
                fingerprint=fp,
                previous_fingerprint=previous if previous != fp else None,
                options=options,
                file_path=packs.new_file_key(),
                created_at=now,
                updated_at=now,
            )
            session.add(pack)
            try:
                session.flush()
                packs.add_audit(session, **audit, pack_id=pack.id, details=details("queued"))
                self._notify_queued(session, pack, actor_id)
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
            view = self._view(session, pack)
            try:
                self._publish(pack.id)
            except Exception:
                # The pack row is the record of the work; the stale-run sweeper re-publishes it.
                log.exception("could not publish generation task", extra={"pack_id": pack.id})
            return RequestResult("queued", view)
        raise ReviewPackError("could not record the request after repeated conflicts; try again")

    def _freshness_basis(self) -> fingerprint.FreshnessBasis:
        return fingerprint.FreshnessBasis(utcnow().date().isoformat(), self.settings.stale_after_days)

    def _refuse_if_tenant_busy(self, session: Session, audit: dict, tenant_id: int, fp: str, details) -> None:
        """One generation at a time per tenant (seed T012 checkActiveRun): other inputs are refused.

        The refusal is audited and nothing else is written. The partial unique index
        uq_review_packs_one_active_per_tenant makes the same decision for two requests that race.
        """
        active = session.execute(
            select(ReviewPack.id)
            .where(
                ReviewPack.tenant_id == tenant_id,
                ReviewPack.status.in_(ACTIVE_PACK_STATUSES),
                # An active pack with these very inputs is shared, not refused: it is found by the
                # fingerprint lookup (or, when it was committed a moment ago, by the next round).
                ReviewPack.fingerprint.is_distinct_from(fp),
            )
            .limit(1)
        ).scalar_one_or_none()
        if active is None:
            return
        packs.add_audit(session, **audit, pack_id=active, details=details("refused_conflict"))
        session.commit()
        raise Conflict(
            f"generation already in progress for this tenant (pack {active}); "
            "request again once it is ready, or ask for the same options to share it"
        )

    def _notify_queued(self, session: Session, pack: ReviewPack, actor_id: int) -> None:
        packs.add_notification(
            session,
            user_id=actor_id,
            kind="review_pack.queued",
            title="Review pack queued",
            body=f"Review pack #{pack.id} for {packs.tenant_name(session, pack.tenant_id)} is queued for generation.",
            data={"pack_id": pack.id, "operation_run_id": pack.operation_run_id, "tenant_id": pack.tenant_id},
        )

    # -- reads --------------------------------------------------------------------------------

    def _view(self, session: Session, pack: ReviewPack) -> PackView:
        reason = None
        if pack.status == PackStatus.FAILED and pack.operation_run_id is not None:
            context = session.execute(
                select(OperationRun.context).where(OperationRun.id == pack.operation_run_id)
            ).scalar_one_or_none()
            reason = (context or {}).get("reason_code")
        return PackView(
            id=pack.id,
            workspace_id=pack.workspace_id,
            tenant_id=pack.tenant_id,
            tenant_review_id=pack.tenant_review_id,
            status=pack.status,
            fingerprint=pack.fingerprint,
            previous_fingerprint=pack.previous_fingerprint,
            sha256=pack.sha256,
            file_size=pack.file_size,
            options=dict(pack.options or {}),
            summary=dict(pack.summary or {}),
            generated_at=pack.generated_at,
            expires_at=pack.expires_at,
            created_at=pack.created_at,
            operation_run_id=pack.operation_run_id,
            rows_written=pack.rows_written,
            bytes_written=pack.bytes_written,
            reason_code=reason,
            kind=pack.kind,
        )

    def get_pack(self, pack_id: int, actor_id: int) -> PackView:
        _check_id("pack_id", pack_id)
        _check_id("actor_id", actor_id)
        with self._session() as session:
            return self._view(session, self._pack(session, pack_id, actor_id, Action.GET))

    def list_packs(self, tenant_id: int, actor_id: int, status: str | None = None) -> list[PackView]:
        _check_id("tenant_id", tenant_id)
        _check_id("actor_id", actor_id)
        if status is not None and status not in {s.value for s in PackStatus}:
            raise InvalidRequest(f"status must be one of {', '.join(s.value for s in PackStatus)}, got {status!r}")
        with self._session() as session:
            tenant = self._tenant(session, tenant_id, actor_id, Action.LIST)
            query = select(ReviewPack).where(
                ReviewPack.workspace_id == tenant.workspace_id, ReviewPack.tenant_id == tenant.id
            )
            if status is not None:
                query = query.where(ReviewPack.status == status)
            rows = session.execute(query.order_by(ReviewPack.created_at.desc(), ReviewPack.id.desc())).scalars()
            return [self._view(session, p) for p in rows]

    def wait(
        self,
        pack_id: int,
        actor_id: int,
        timeout: float = 600,
        *,
        poll_interval: float = 0.25,
        on_progress: Callable[[PackView], None] | None = None,
    ) -> PackView:
        deadline = time.monotonic() + timeout
        while True:
            view = self.get_pack(pack_id, actor_id)
            if on_progress is not None:
                on_progress(view)
            if view.is_final:
                return view
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"pack {pack_id} is still {view.status} after {timeout:g}s")
            time.sleep(poll_interval)

    # -- downloads and lifecycle --------------------------------------------------------------

    def download_url(self, pack_id: int, actor_id: int) -> str:
        """A presigned GET URL, valid for min(the TTL setting, the pack's remaining life)."""
        _check_id("pack_id", pack_id)
        _check_id("actor_id", actor_id)
        with self._session() as session:
            pack = self._pack(session, pack_id, actor_id, Action.DOWNLOAD_URL)
            ttl_seconds = self._downloadable_for(session, pack, utcnow())
            tenant = session.get(Tenant, pack.tenant_id)
            url = self.store.download_url(
                pack.file_path,
                filename=layout.download_filename(str(tenant.external_id), pack.generated_at.date()),
                ttl_seconds=ttl_seconds,
            )
            # The URL is a bearer credential: the audit row records that one was issued, never the URL.
            _audit(session, pack, actor_id, "review_pack.download_url_issued", {"ttl_seconds": ttl_seconds})
            session.commit()
            return url

    def _downloadable_for(self, session: Session, pack: ReviewPack, now: dt.datetime) -> int:
        """Seconds a download URL for this pack may live; NotFound (404, seed T015) saying why there is none."""
        if pack.status == PackStatus.EXPIRED:
            raise NotFound(f"pack {pack.id} has expired; request a new one")
        if pack.status == PackStatus.FAILED:
            raise NotFound(f"pack {pack.id} failed and has no file to download")
        if pack.status != PackStatus.READY:
            raise NotFound(f"pack {pack.id} is {pack.status}, not ready for download yet")
        remaining = int((pack.expires_at - now).total_seconds()) if pack.expires_at is not None else 0
        if remaining < 1:
            raise NotFound(f"pack {pack.id} has expired; request a new one")
        if pack.kind == layout.PackKind.REVIEW:
            published = session.execute(
                select(TenantReview.id).where(TenantReview.id == pack.tenant_review_id, TenantReview.status == "published")
            ).scalar_one_or_none()
            if published is None:
                raise NotFound(f"pack {pack.id} belongs to a review that is no longer published")
        return min(self.settings.download_url_ttl_minutes * 60, remaining)

    def review_pack_status(self, review_id: int, actor_id: int) -> str:
        """Where the current pack of a review stands: available | generating | unavailable | expired.

        available: a ready, unexpired pack of the published review exists; generating: one is queued
        or being generated; expired: the newest finished pack has expired; unavailable: the review is
        not published, or no pack exists, or the newest one failed.
        """
        _check_id("review_id", review_id)
        _check_id("actor_id", actor_id)
        with self._session() as session:
            row = session.execute(
                select(TenantReview.status, Tenant.id)
                .join(Tenant, Tenant.id == TenantReview.tenant_id)
                .join(WorkspaceMembership, self._membership(actor_id, Tenant.workspace_id))
                .where(TenantReview.id == review_id)
            ).first()
            if row is None:
                raise _not_found()
            self._tenant(session, row[1], actor_id, Action.GET)
            if row[0] != "published":
                return REVIEW_PACK_UNAVAILABLE
            review_packs = session.execute(
                select(ReviewPack.status, ReviewPack.expires_at)
                .where(ReviewPack.kind == layout.PackKind.REVIEW, ReviewPack.tenant_review_id == review_id)
                .order_by(ReviewPack.created_at.desc(), ReviewPack.id.desc())
            ).all()
        now = utcnow()
        if any(status == PackStatus.READY and expires_at and expires_at > now for status, expires_at in review_packs):
            return REVIEW_PACK_AVAILABLE
        if any(status in ACTIVE_PACK_STATUSES for status, _ in review_packs):
            return REVIEW_PACK_GENERATING
        if review_packs and review_packs[0][0] in (PackStatus.EXPIRED, PackStatus.READY):
            return REVIEW_PACK_EXPIRED
        return REVIEW_PACK_UNAVAILABLE

    def expire_pack(self, pack_id: int, actor_id: int) -> PackView:
        _check_id("pack_id", pack_id)
        _check_id("actor_id", actor_id)
        with self._session() as session:
            pack = self._pack(session, pack_id, actor_id, Action.EXPIRE)
            if pack.status == PackStatus.EXPIRED:
                return self._view(session, pack)
            if pack.status != PackStatus.READY:
                raise InvalidRequest(f"pack {pack_id} is {pack.status}; only a ready pack can be expired")
            now = utcnow()
            moved = session.execute(
                update(ReviewPack)
                .where(ReviewPack.id == pack.id, ReviewPack.status == PackStatus.READY)
                .values(status=PackStatus.EXPIRED, expired_at=now, updated_at=now)
            ).rowcount
            if moved:
                _audit(session, pack, actor_id, "review_pack.expired", {"by": "actor"})
            session.commit()
            if moved and pack.file_path:
                # Should this fail, the row keeps file_disk and the next prune deletes the object.
                self.store.delete(pack.file_path)
                session.execute(update(ReviewPack).where(ReviewPack.id == pack.id).values(file_disk=None))
                session.commit()
            session.refresh(pack)
            return self._view(session, pack)
