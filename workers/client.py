"""The producer-side client: request packs, read their state, issue download URLs.

Every call checks the actor's capabilities in the tenant's workspace before it
uses what it read or writes anything, and a refused call writes nothing. A request
reads its membership together with the fingerprint inputs, in one statement that
returns nothing at all to an actor outside the workspace. Requests are
answered from an existing pack when the fingerprint matches; otherwise the run
and the pack are created in one transaction and the generate task is queued
after that transaction commits.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

from sqlalchemy import ColumnElement, Engine, Select, bindparam, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from domain import capabilities, fingerprint, layout
from domain.capabilities import Action
from domain.options import InvalidOptions, resolve_options
from domain.states import ACTIVE_PACK_STATUSES, TERMINAL_PACK_STATUSES, PackStatus
from reviewpacks.settings import Settings
from storage import packs, queries
from storage.artifacts import ArtifactStore, artifact_store_from_settings
from storage.db import create_engine_for
from storage.models import OperationRun, ReviewPack, Tenant, TenantReview, WorkspaceMembership, utcnow
from workers.dispatch import broker_label
from workers.logs import event

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


class RequestOutcome(enum.StrEnum):
    QUEUED = "queued"
    REUSED_READY = "reused_ready"
    REUSED_ACTIVE = "reused_active"


@dataclass(frozen=True)
class PackView:
    id: int
    workspace_id: int
    tenant_id: int
    tenant_review_id: int | None
    status: PackStatus
    fingerprint: str | None
    previous_fingerprint: str | None
    sha256: str | None
    file_size: int | None
    options: dict[str, Any]
    summary: dict[str, Any]
    generated_at: dt.datetime | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    operation_run_id: int | None
    rows_written: int
    bytes_written: int
    reason_code: str | None = None
    expired_at: dt.datetime | None = None
    # Set while the pack's task awaits a broker that did not take it (see DispatchFailed).
    dispatch_pending_since: dt.datetime | None = None
    kind: str = layout.PackKind.TENANT.value

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_PACK_STATUSES


@functools.cache
def _tenant_state_statement(review: bool) -> Select[Any]:
    """What a new pack's insert needs to know, in one round trip: the tenant's active generation
    for other inputs (it refuses the request), and the newest ready pack's fingerprint of this kind."""
    busy = (
        select(ReviewPack.id)
        .where(
            ReviewPack.tenant_id == bindparam("tenant_id"),
            ReviewPack.status.in_(ACTIVE_PACK_STATUSES),
            # An active pack with these very inputs is shared, not refused: it is found by the
            # fingerprint lookup (or, when it was committed a moment ago, by the next round).
            ReviewPack.fingerprint.is_distinct_from(bindparam("fingerprint")),
        )
        .limit(1)
        .scalar_subquery()
    )
    previous = (
        select(ReviewPack.fingerprint)
        .where(
            ReviewPack.workspace_id == bindparam("workspace_id"),
            ReviewPack.tenant_id == bindparam("tenant_id"),
            ReviewPack.status == PackStatus.READY,
            ReviewPack.kind == bindparam("kind"),
            *([ReviewPack.tenant_review_id == bindparam("review_id")] if review else []),
        )
        .order_by(ReviewPack.generated_at.desc(), ReviewPack.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return select(busy.label("busy"), previous.label("previous"))


# What review_pack_status answers (seed 004 FR-008, without the seed's UI-only states).
REVIEW_PACK_AVAILABLE = "available"
REVIEW_PACK_GENERATING = "generating"
REVIEW_PACK_UNAVAILABLE = "unavailable"
REVIEW_PACK_EXPIRED = "expired"

# The review-export outcomes the seed's audit log names, for the request outcomes here.
REVIEW_EXPORT_OUTCOMES = {"reused_ready": "reused", "reused_active": "reused_active_run", "queued": "queued"}


@dataclass(frozen=True)
class _Request:
    """What one request asks for, and how its audit rows describe it."""

    workspace_id: int
    tenant_id: int
    review_id: int | None
    kind: layout.PackKind
    actor_id: int
    fingerprint: str
    tenant_name: str

    def details(self, outcome: str) -> dict[str, Any]:
        recorded: dict[str, Any] = {"outcome": outcome, "fingerprint": self.fingerprint}
        if self.review_id is not None:
            # The seed's review-export audit names the review and its own outcome words.
            recorded.update(review_id=self.review_id, export_outcome=REVIEW_EXPORT_OUTCOMES.get(outcome, outcome))
        return recorded

    def audit(self, session: Session, pack_id: int, outcome: str) -> None:
        packs.add_audit(
            session,
            workspace_id=self.workspace_id,
            tenant_id=self.tenant_id,
            actor_id=self.actor_id,
            action=packs.REQUESTED,
            pack_id=pack_id,
            details=self.details(outcome),
        )


@dataclass(frozen=True)
class RequestResult:
    outcome: RequestOutcome
    pack: PackView


class DispatchFailed(ReviewPackError):
    """The request was recorded, but the broker did not take its task; it is dispatched again automatically.

    ``pack`` is the recorded (queued) pack; ``broker`` names the broker by scheme and host only.
    Every worker publishes pending packs again as soon as the broker answers.
    """

    def __init__(self, pack: PackView, broker: str):
        self.pack = pack
        self.broker = broker
        super().__init__(
            f"pack {pack.id} was recorded, but the broker at {broker} did not take its task; "
            "it is dispatched automatically once the broker is reachable"
        )


def _not_found() -> NotFound:
    return NotFound("review pack or tenant not found")


def _check_id(name: str, value: object) -> int:
    if type(value) is not int or not 0 < value <= MAX_ID:
        raise InvalidRequest(f"{name} must be a positive whole number, got {value!r}")
    return value


def _audit(session: Session, pack: ReviewPack, actor_id: int, action: str, details: dict[str, Any]) -> None:
    packs.add_audit(
        session,
        workspace_id=pack.workspace_id,
        tenant_id=pack.tenant_id,
        actor_id=actor_id,
        action=action,
        pack_id=pack.id,
        details=details,
    )


def _reuse_outcome(live: Any) -> RequestOutcome:
    return RequestOutcome.REUSED_READY if live.status == PackStatus.READY else RequestOutcome.REUSED_ACTIVE


def _view_of(pack: Any, reason: str | None = None) -> PackView:
    """The view of a pack, from its model or from a row of its table."""
    return PackView(
        id=pack.id,
        workspace_id=pack.workspace_id,
        tenant_id=pack.tenant_id,
        tenant_review_id=pack.tenant_review_id,
        status=PackStatus(pack.status),
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
        expired_at=pack.expired_at,
        dispatch_pending_since=pack.dispatch_pending_since,
        kind=pack.kind,
    )


class ReviewPackClient:
    """The producer's entry point. Use it as a context manager, or call close(), to release what it opened.

    ``engine`` lets a host application share its own SQLAlchemy Engine (and its pool) with the
    client; the client never disposes of an engine it was given. Without one, the client opens
    its own engine for ``settings.database_url`` and closes it in close().
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        store: ArtifactStore | None = None,
        publish: Callable[[int], None] | None = None,
    ):
        self.settings = settings if settings is not None else Settings.from_env()
        self._own_engine = engine is None
        self.engine = engine if engine is not None else create_engine_for(self.settings.database_url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._store = store
        self._celery_app: Any = None
        self._publish = publish or self._celery_publish

    @classmethod
    def from_env(cls, *, engine: Engine | None = None) -> "ReviewPackClient":
        return cls(Settings.from_env(), engine=engine)

    def close(self) -> None:
        """Close the broker connections and the engine this client opened; a host's engine is left alone."""
        if self._celery_app is not None:
            self._celery_app.close()
            self._celery_app = None
        if self._own_engine:
            self.engine.dispose()

    def __enter__(self) -> "ReviewPackClient":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def store(self) -> ArtifactStore:
        if self._store is None:
            self._store = artifact_store_from_settings(self.settings)
        return self._store

    def _celery_publish(self, pack_id: int) -> None:
        if self._celery_app is None:
            from workers.app import make_app

            self._celery_app = make_app(self.settings)
        self._celery_app.send_task(GENERATE_TASK, args=[pack_id], queue=GENERATE_QUEUE)

    # -- access -------------------------------------------------------------------------------

    def _membership(self, actor_id: int, workspace_column: InstrumentedAttribute[int]) -> ColumnElement[bool]:
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
        tenant: Tenant = row[0]
        return tenant

    def tenant_id_for(self, external_id: uuid.UUID, actor_id: int) -> int:
        """The id of the tenant with this external UUID, among the actor's workspaces; NotFound otherwise."""
        _check_id("actor_id", actor_id)
        with self._session() as session:
            tenant_id = session.execute(
                select(Tenant.id)
                .join(WorkspaceMembership, self._membership(actor_id, Tenant.workspace_id))
                .where(Tenant.external_id == external_id)
            ).scalar_one_or_none()
        if tenant_id is None:
            raise _not_found()
        return tenant_id

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
        pack: ReviewPack = row[0]
        return pack

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
        since = queries.operations_since(utcnow().date()) if options.include_operations else None
        # Outside a transaction: the read and the reuse are one statement each, and a request that
        # shares a pack (the common case) costs two round trips and no BEGIN or COMMIT.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # One statement reads the membership and every fingerprint input: a non-member gets no
            # row, and a member without the capability is refused before anything is written.
            scoped = queries.scoped_tenant_inputs(conn, tenant_id, actor_id, options, since, self._freshness_basis())
            if scoped is None:
                raise _not_found()
            self._check(scoped.capabilities, Action.REQUEST)
            request = _Request(
                workspace_id=scoped.workspace_id,
                tenant_id=tenant_id,
                review_id=None,
                kind=layout.PackKind.TENANT,
                actor_id=actor_id,
                fingerprint=fingerprint.compute(scoped.inputs),
                tenant_name=scoped.inputs.tenant_name,
            )
            now = utcnow()
            live = packs.reuse_live(
                conn,
                workspace_id=request.workspace_id,
                tenant_id=tenant_id,
                fingerprint=request.fingerprint,
                actor_id=actor_id,
                now=now,
                ready_details=request.details(RequestOutcome.REUSED_READY),
                active_details=request.details(RequestOutcome.REUSED_ACTIVE),
            )
        if live is not None and not packs.past_retention(live, now):
            return self._reused(live)
        stored_options: dict[str, Any] = options.as_dict()
        if since is not None:
            stored_options["operations_since"] = since.isoformat()
        with self._session() as session:
            # A live pack was just looked for; unless one needs expiring, the first round can go straight to the insert.
            return self._request(session, request, options=stored_options, look=live is not None)

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
            if review is None:
                raise _not_found()
            if review.status != "published":
                raise InvalidRequest(f"review {review_id} is {review.status}; only published reviews can be exported")
            conn = session.connection()
            review_row, tenant_row = queries.review_row(conn, review.id), queries.tenant_row(conn, tenant.id)
            if review_row is None or tenant_row is None:
                raise _not_found()
            inputs = queries.review_pack_inputs(conn, review_row, tenant_row, options, self._freshness_basis())
            request = _Request(
                workspace_id=tenant.workspace_id,
                tenant_id=tenant.id,
                review_id=review.id,
                kind=layout.PackKind.REVIEW,
                actor_id=actor_id,
                fingerprint=fingerprint.compute(inputs),
                tenant_name=inputs.tenant_name,
            )
            return self._request(session, request, options=options.as_dict())

    def _request(self, session: Session, request: _Request, *, options: dict[str, Any], look: bool = True) -> RequestResult:
        """Share the live pack for these inputs, or refuse the request, or queue a new pack.

        ``look=False``: the caller has just found no live pack, so the first round goes straight
        to the insert. A pack that appeared since is still found: the unique index refuses the
        insert, and the next round looks.
        """
        fp = request.fingerprint
        # Two rounds at most: when a concurrent request wins the insert, the second round finds its pack.
        for _ in range(3):
            now = utcnow()
            if look:
                live = packs.live_pack(
                    session.connection(), workspace_id=request.workspace_id, tenant_id=request.tenant_id, fingerprint=fp
                )
                if live is not None and packs.past_retention(live, now):
                    # It expires here exactly as prune would expire it (audit row, object deleted).
                    self._expire(session, [live.id], now=now, by="retention")
                    live = None
                if live is not None:
                    request.audit(session, live.id, _reuse_outcome(live))
                    session.commit()
                    return self._reused(live, session)
            look = True
            busy, previous = session.execute(
                _tenant_state_statement(request.review_id is not None),
                {
                    "workspace_id": request.workspace_id,
                    "tenant_id": request.tenant_id,
                    "fingerprint": fp,
                    "kind": request.kind.value,
                    "review_id": request.review_id,
                },
            ).one()
            if busy is not None:
                self._refuse(session, request, busy)
            pack = packs.create_request(
                session,
                workspace_id=request.workspace_id,
                tenant_id=request.tenant_id,
                review_id=request.review_id,
                actor_id=request.actor_id,
                fingerprint=fp,
                previous_fingerprint=previous,
                options=options,
                now=now,
                kind=request.kind.value,
                audit_details=request.details("queued"),
                tenant_label=request.tenant_name,
            )
            if pack is None:
                continue
            view = self._view(session, pack)
            self._dispatch(session, view)
            return RequestResult(RequestOutcome.QUEUED, view)
        raise ReviewPackError("could not record the request after repeated conflicts; try again")

    def _reused(self, live: Any, session: Session | None = None) -> RequestResult:
        """The answer of a request that shares ``live``, whose request is already audited."""
        view = _view_of(live)
        if live.status == PackStatus.QUEUED and live.dispatch_pending_since is not None:
            # The pack this request joins still awaits the broker: the request dispatches it, or says it could not.
            if session is None:
                with self._session() as own:
                    self._dispatch(own, view, pending=True)
            else:
                self._dispatch(session, view, pending=True)
        return RequestResult(_reuse_outcome(live), view)

    def _dispatch(self, session: Session, view: PackView, *, pending: bool = False) -> None:
        """Publish the pack's task after its row committed; when the broker does not take it, mark it and raise."""
        try:
            self._publish(view.id)
        except Exception as exc:
            # The pack row is the record of the work: mark it for the dispatch sweep and tell the caller.
            broker = broker_label(self.settings.broker_url)
            packs.mark_dispatch_pending(session, view.id, now=utcnow())
            event(log, "pack.dispatch_failed", level=logging.WARNING, pack_id=view.id, broker=broker, error=type(exc).__name__)
            raise DispatchFailed(view, broker) from exc
        if pending:
            packs.dispatched(session, [view.id], now=utcnow())
            session.commit()

    def _freshness_basis(self) -> fingerprint.FreshnessBasis:
        return fingerprint.FreshnessBasis(utcnow().date().isoformat(), self.settings.stale_after_days)

    def _refuse(self, session: Session, request: _Request, active: int) -> NoReturn:
        """One generation at a time per tenant (seed T012 checkActiveRun): other inputs are refused.

        The refusal is audited and nothing else is written. The partial unique index
        uq_reviewpacks_packs_one_active_per_tenant makes the same decision for two requests that race.
        """
        request.audit(session, active, "refused_conflict")
        session.commit()
        raise Conflict(
            f"generation already in progress for this tenant (pack {active}); "
            "request again once it is ready, or ask for the same options to share it"
        )

    # -- reads --------------------------------------------------------------------------------

    def _view(self, session: Session, pack: ReviewPack) -> PackView:
        reason = None
        if pack.status == PackStatus.FAILED and pack.operation_run_id is not None:
            context = session.execute(
                select(OperationRun.context).where(OperationRun.id == pack.operation_run_id)
            ).scalar_one_or_none()
            reason = (context or {}).get("reason_code")
        return _view_of(pack, reason)

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

    def _expire(
        self, session: Session, pack_ids: list[int], *, now: dt.datetime, by: str, actor_id: int | None = None
    ) -> packs.Expiry:
        expiry = packs.expire(session, self.store, pack_ids, now=now, by=by, actor_id=actor_id)
        for pack_id, error in expiry.objects.failed:
            # The row is expired and keeps file_disk; the next prune deletes the object.
            event(log, "pack.object_delete_failed", level=logging.WARNING, pack_id=pack_id, error=error)
        return expiry

    def download_url(self, pack_id: int, actor_id: int) -> str:
        """A presigned GET URL, valid for min(the TTL setting, the pack's remaining life)."""
        _check_id("pack_id", pack_id)
        _check_id("actor_id", actor_id)
        with self._session() as session:
            pack = self._pack(session, pack_id, actor_id, Action.DOWNLOAD_URL)
            ttl_seconds = self._downloadable_for(session, pack, utcnow())
            tenant = session.get(Tenant, pack.tenant_id)
            if tenant is None or pack.file_path is None or pack.generated_at is None:
                raise _not_found()
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
        if any(p.status == PackStatus.READY and not packs.past_retention(p, now) for p in review_packs):
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
            self._expire(session, [pack.id], now=utcnow(), by="actor", actor_id=actor_id)
            session.refresh(pack)
            return self._view(session, pack)
