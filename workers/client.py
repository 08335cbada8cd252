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
from domain.options import InvalidOptions, resolve_options
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

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_PACK_STATUSES


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
            inputs = queries.tenant_sources(session.connection(), tenant_row, options, since).inputs
            stored_options = options.as_dict()
            if since is not None:
                stored_options["operations_since"] = since.isoformat()
            return self._request(
                session,
                workspace_id=tenant.workspace_id,
                tenant_id=tenant.id,
                review_id=None,
                actor_id=actor_id,
                fp=fingerprint.compute(inputs),
                options=stored_options,
            )

    def request_review_pack(self, review_id: int, actor_id: int, include_pii: bool | None = None) -> RequestResult:
        _check_id("review_id", review_id)
        _check_id("actor_id", actor_id)
        try:
            options = resolve_options(
                include_pii, False, default_pii=self.settings.include_pii_default, default_operations=False
            )
        except InvalidOptions as exc:
            raise InvalidRequest(str(exc)) from None
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
            conn = session.connection()
            inputs = queries.review_pack_inputs(
                conn, queries.review_row(conn, review.id), queries.tenant_row(conn, tenant.id), options
            )
            return self._request(
                session,
                workspace_id=tenant.workspace_id,
                tenant_id=tenant.id,
                review_id=review.id,
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
        actor_id: int,
        fp: str,
        options: dict,
    ) -> RequestResult:
        audit = dict(workspace_id=workspace_id, tenant_id=tenant_id, actor_id=actor_id, action="review_pack.requested")
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
                packs.add_audit(session, **audit, pack_id=live.id, details={"outcome": outcome, "fingerprint": fp})
                session.commit()
                return RequestResult(outcome, self._view(session, live))

            previous = session.execute(
                select(ReviewPack.fingerprint)
                .where(
                    ReviewPack.workspace_id == workspace_id,
                    ReviewPack.tenant_id == tenant_id,
                    ReviewPack.status == PackStatus.READY,
                    ReviewPack.tenant_review_id.is_(None) if review_id is None else ReviewPack.tenant_review_id == review_id,
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
                packs.add_audit(session, **audit, pack_id=pack.id, details={"outcome": "queued", "fingerprint": fp})
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
        _check_id("pack_id", pack_id)
        _check_id("actor_id", actor_id)
        with self._session() as session:
            pack = self._pack(session, pack_id, actor_id, Action.DOWNLOAD_URL)
            if pack.status != PackStatus.READY or pack.expires_at is None or pack.expires_at <= utcnow():
                raise InvalidRequest(f"pack {pack_id} is {pack.status}, not ready for download")
            tenant = session.get(Tenant, pack.tenant_id)
            ttl_minutes = self.settings.download_url_ttl_minutes
            url = self.store.download_url(
                pack.file_path,
                filename=layout.download_filename(str(tenant.external_id), pack.generated_at.date()),
                ttl_seconds=ttl_minutes * 60,
            )
            # The URL is a bearer credential: the audit row records that one was issued, never the URL.
            _audit(session, pack, actor_id, "review_pack.download_url_issued", {"ttl_minutes": ttl_minutes})
            session.commit()
            return url

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
