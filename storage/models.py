"""SQLAlchemy models: the source tables of the integration contract and our own.

The project's own tables carry the ``reviewpacks_`` prefix, so that they sit beside
a host application's tables (its ``notifications``, its ``audit_logs``) without a clash.

The schema itself is created only by the Alembic migrations in
``storage/migrations``; these classes describe it for queries.  They run on
PostgreSQL in production and on SQLite for the embedded default, so JSON
columns are JSONB only where PostgreSQL is the dialect.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite has no 64-bit autoincrement integer type of its own; INTEGER PRIMARY KEY is one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every dialect (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    """Now, in UTC: the one clock rows are stamped with."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    name: Mapped[str] = mapped_column(String(255))
    hardening: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    # Added beside the contract's columns: when the host application last wrote `hardening`.
    hardening_updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))


class WorkspaceMembership(Base):
    __tablename__ = "workspace_memberships"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    capabilities: Mapped[list] = mapped_column(Json, default=list, server_default=text("'[]'"))


class Finding(Base):
    __tablename__ = "findings"
    __table_args__ = (
        # Serves the keyset reader (tenant, id order) and the fingerprint aggregate.
        Index("ix_findings_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    finding_type: Mapped[str] = mapped_column(String(100))
    severity: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    subject_type: Mapped[str] = mapped_column(String(100))
    subject_external_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    subject_display_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    title: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    first_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


class FindingStats(Base):
    """One counter per tenant, moved by database triggers on every write to its findings.

    The host writes findings directly; the triggers (migrations 0005 and 0008) see every
    insert, update and delete, so ``changes`` moves whenever any exported value
    can have changed, and reading it costs one row whatever the tenant's size.
    ``last_seen_at`` and ``updated_at`` are the newest of each over the tenant's findings,
    or, where marked stale, an upper bound of it (a write removed or lowered the newest value).
    """

    __tablename__ = "reviewpacks_finding_stats"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at_stale: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at_stale: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class FindingCount(Base):
    """How many of a tenant's findings have one severity and status, kept by the same triggers.

    A group without findings has no row.
    """

    __tablename__ = "reviewpacks_finding_counts"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    severity: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    findings: Mapped[int] = mapped_column(BigInteger)


class StoredReport(Base):
    __tablename__ = "stored_reports"
    __table_args__ = (Index("ix_stored_reports_tenant_type_generated", "tenant_id", "report_type", "generated_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    report_type: Mapped[str] = mapped_column(String(100))
    fingerprint: Mapped[str | None] = mapped_column(String(128), nullable=True)
    payload: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    generated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


class OperationRun(Base):
    __tablename__ = "operation_runs"
    __table_args__ = (
        Index("ix_operation_runs_tenant_created", "tenant_id", "created_at"),
        Index("ix_operation_runs_status_heartbeat", "status", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True)
    type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    context: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    initiator_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Written by the worker while it holds the run; a stale heartbeat means the worker died.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # When the generate message was last handed to the broker by the sweeper (None: at creation).
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TenantReview(Base):
    __tablename__ = "tenant_reviews"
    __table_args__ = (Index("ix_tenant_reviews_tenant_status", "tenant_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    summary: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    sections: Mapped[list] = mapped_column(Json, default=list, server_default=text("'[]'"))
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReviewPack(Base):
    __tablename__ = "reviewpacks_packs"
    __table_args__ = (
        # Only live packs take part in dedupe: an expired or failed pack never blocks a new one.
        Index(
            "uq_reviewpacks_packs_active_fingerprint",
            "workspace_id",
            "tenant_id",
            "fingerprint",
            unique=True,
            postgresql_where=text("fingerprint IS NOT NULL AND status NOT IN ('expired', 'failed')"),
            sqlite_where=text("fingerprint IS NOT NULL AND status NOT IN ('expired', 'failed')"),
        ),
        # One generation at a time per tenant: a second queued or generating pack cannot be inserted.
        Index(
            "uq_reviewpacks_packs_one_active_per_tenant",
            "tenant_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'generating')"),
            sqlite_where=text("status IN ('queued', 'generating')"),
        ),
        Index("ix_reviewpacks_packs_listing", "workspace_id", "tenant_id", "created_at"),
        Index("ix_reviewpacks_packs_retention", "status", "expires_at"),
        Index("ix_reviewpacks_packs_status_expired", "status", "expired_at"),
        # The dispatch sweep's work list: packs whose generate task the broker has not taken yet.
        Index(
            "ix_reviewpacks_packs_dispatch_pending",
            "dispatch_pending_since",
            postgresql_where=text("dispatch_pending_since IS NOT NULL"),
            sqlite_where=text("dispatch_pending_since IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    tenant_review_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant_reviews.id", ondelete="SET NULL"), nullable=True
    )
    operation_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("operation_runs.id", ondelete="SET NULL"), nullable=True
    )
    initiated_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # "tenant" or "review", stored so that a deleted review never makes a review pack look like a tenant pack.
    kind: Mapped[str] = mapped_column(String(20), default="tenant", server_default="tenant")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    summary: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    options: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    # Opaque, random store key chosen at request time, so that every attempt writes the same object.
    file_disk: Mapped[str | None] = mapped_column(String(20), nullable=True)
    file_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rows_written: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    generated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the pack became expired; the hard-delete grace period counts from here.
    expired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set when the generate task could not be handed to the broker; cleared once it was.
    dispatch_pending_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, server_default=func.now())


class AuditLog(Base):
    __tablename__ = "reviewpacks_audit_logs"
    __table_args__ = (Index("ix_reviewpacks_audit_logs_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    details: Mapped[dict] = mapped_column("metadata", Json, default=dict, server_default=text("'{}'"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


class Notification(Base):
    __tablename__ = "reviewpacks_notifications"
    __table_args__ = (Index("ix_reviewpacks_notifications_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
