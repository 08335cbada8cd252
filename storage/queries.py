"""Read-side queries: fingerprint inputs, counts, and the streaming readers.

Every function takes a SQLAlchemy Connection and returns plain values (dicts,
domain dataclasses), so the pipeline never handles ORM objects across a
transaction boundary.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import ARRAY, BigInteger, Connection, Engine, Select, any_, bindparam, func, select, true
from sqlalchemy.orm import aliased

from domain import layout
from domain.fingerprint import FreshnessBasis, ReportStamp, ReviewPackInputs, SourceStamp, TenantPackInputs
from domain.options import PackOptions
from domain.states import RUN_TYPE_GENERATE
from storage.driver import DriverStatement
from storage.models import (
    Finding,
    FindingCount,
    FindingStats,
    OperationRun,
    StoredReport,
    Tenant,
    TenantReview,
    UTCDateTime,
    WorkspaceMembership,
)

FINDING_COLUMNS = (
    Finding.id,
    Finding.finding_type,
    Finding.severity,
    Finding.status,
    Finding.subject_type,
    Finding.subject_external_id,
    Finding.subject_display_name,
    Finding.title,
    Finding.evidence,
    Finding.first_seen_at,
    Finding.last_seen_at,
    Finding.updated_at,
)
OPERATION_COLUMNS = (
    OperationRun.id,
    OperationRun.type,
    OperationRun.status,
    OperationRun.outcome,
    OperationRun.context,
    OperationRun.initiator_user_id,
    OperationRun.created_at,
    OperationRun.started_at,
    OperationRun.completed_at,
)


def tenant_row(conn: Connection, tenant_id: int) -> dict | None:
    row = conn.execute(select(Tenant).where(Tenant.id == tenant_id)).mappings().first()
    return dict(row) if row else None


def review_row(conn: Connection, review_id: int) -> dict | None:
    row = conn.execute(select(TenantReview).where(TenantReview.id == review_id)).mappings().first()
    return dict(row) if row else None


def operations_since(today: dt.date) -> dt.date:
    return today - dt.timedelta(days=layout.OPERATIONS_WINDOW_DAYS)


def _since_ts(since: dt.date) -> dt.datetime:
    return dt.datetime.combine(since, dt.time.min, tzinfo=dt.timezone.utc)


def _stamp(count: int, max_id: int | None, latest: dt.datetime | None) -> SourceStamp:
    # Full precision: two changes within one second must still give different stamps.
    return SourceStamp(count=count, max_id=max_id, latest_change=_iso_full(latest))


def _iso_full(value) -> str | None:
    value = _as_utc(value)
    return value.isoformat() if value else None


def _as_utc(value):
    # Aggregates bypass the column type, so SQLite hands back naive datetimes or strings.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


REPORT_STAMP_COLUMNS = (StoredReport.id, StoredReport.report_type, StoredReport.fingerprint, StoredReport.generated_at)


def latest_reports(conn: Connection, tenant_id: int, *, payload: bool = True) -> dict[str, dict | None]:
    """The newest stored report of each exported type, or None where the tenant has none.

    ``payload=False`` reads only what the fingerprint needs: a request must not pay for
    fetching report payloads, which can be large.
    """
    statement = _latest_report_statement(payload)
    reports: dict[str, dict | None] = {}
    for report_type in layout.REPORTS:
        row = conn.execute(statement, {"tenant_id": tenant_id, "report_type": report_type}).mappings().first()
        reports[report_type] = dict(row) if row else None
    return reports


@functools.cache
def _latest_report_statement(payload: bool) -> Select:
    # Built once: every pack reads each report type, and building the statement costs more than running it.
    columns = (StoredReport,) if payload else REPORT_STAMP_COLUMNS
    return (
        select(*columns)
        .where(
            StoredReport.tenant_id == bindparam("tenant_id", type_=BigInteger),
            StoredReport.report_type == bindparam("report_type", type_=StoredReport.report_type.type),
        )
        .order_by(StoredReport.generated_at.desc(), StoredReport.id.desc())
        .limit(1)
    )


def _operations_filter(tenant_id: int, since: dt.date):
    return _operations_window(tenant_id, _since_ts(since))


def _operations_window(tenant_id, since_ts):
    # Pack generations are operation runs too; listing them would make every request change the
    # next pack's content, so a pack never lists its own kind of run.
    return (
        OperationRun.tenant_id == tenant_id,
        OperationRun.created_at >= since_ts,
        OperationRun.type != RUN_TYPE_GENERATE,
    )


@dataclass(frozen=True)
class TenantSources:
    """What one read of a tenant's sources yields: the fingerprint inputs and what the pack reports."""

    inputs: TenantPackInputs
    by_severity: dict[str, int]  # over the findings a pack includes
    by_status: dict[str, int]
    reports: dict[str, dict | None]
    freshness: dict[str, str | None]


def finding_changes(conn: Connection, tenant_id: int) -> int:
    """The tenant's finding change counter; 0 for a tenant whose findings were never written."""
    changes = conn.execute(select(FindingStats.changes).where(FindingStats.tenant_id == tenant_id)).scalar()
    return int(changes or 0)


@dataclass(frozen=True)
class FindingFigures:
    """What the findings triggers keep for one tenant (migrations 0005 and 0008)."""

    changes: int
    groups: dict[tuple[str, str], int]  # (severity, status) -> findings, every status
    latest_seen: dt.datetime | None  # the newest last_seen_at of any of its findings
    latest_write: dt.datetime | None  # the newest updated_at


@functools.cache
def _finding_figures_statement() -> Select:
    return (
        select(
            FindingStats.changes, FindingStats.last_seen_at, FindingStats.updated_at,
            FindingStats.last_seen_at_stale, FindingStats.updated_at_stale,
            FindingCount.severity, FindingCount.status, FindingCount.findings,
        )
        .outerjoin(FindingCount, FindingCount.tenant_id == FindingStats.tenant_id)
        .where(FindingStats.tenant_id == bindparam("tenant_id", type_=BigInteger))
    )


def finding_figures(conn: Connection, tenant_id: int) -> FindingFigures:
    """The tenant's counts per severity and status, newest dates and change counter, in one statement.

    A newest date marked stale (a write deleted, moved or lowered the finding that held it) is
    read from the findings instead, until a later write reaches it again.
    """
    rows = conn.execute(_finding_figures_statement(), {"tenant_id": tenant_id}).all()
    if not rows:
        return FindingFigures(0, {}, None, None)
    first = rows[0]
    latest_seen, latest_write = _as_utc(first.last_seen_at), _as_utc(first.updated_at)
    if first.last_seen_at_stale or first.updated_at_stale:
        seen, wrote = conn.execute(
            select(func.max(Finding.last_seen_at), func.max(Finding.updated_at)).where(Finding.tenant_id == tenant_id)
        ).one()
        if first.last_seen_at_stale:
            latest_seen = _as_utc(seen)
        if first.updated_at_stale:
            latest_write = _as_utc(wrote)
    groups = {(row.severity, row.status): row.findings for row in rows if row.severity is not None}
    return FindingFigures(int(first.changes), groups, latest_seen, latest_write)


def tenant_inputs(
    conn: Connection,
    tenant: Mapping,
    options: PackOptions,
    since: dt.date | None,
    basis: FreshnessBasis,
    reports: dict[str, dict | None] | None = None,
    findings_changes: int | None = None,
) -> TenantPackInputs:
    """The fingerprint inputs alone: a handful of indexed single-row reads, whatever the tenant's size.

    The findings enter through their change counter, which the database's triggers keep, so
    no read of the inputs aggregates a tenant's findings. A request reads the same inputs in
    one statement through scoped_tenant_inputs; both assemble them in _assemble_inputs.
    """
    _check_window(options, since)
    if reports is None:
        reports = latest_reports(conn, tenant["id"], payload=False)
    operations = None
    if options.include_operations:
        assert since is not None
        operations = tuple(conn.execute(_operations_stamps(tenant["id"], _since_ts(since))).one())
    if findings_changes is None:
        findings_changes = finding_changes(conn, tenant["id"])
    return _assemble_inputs(tenant, options, since, basis, reports, findings_changes, operations)


def _check_window(options: PackOptions, since: dt.date | None) -> None:
    if options.include_operations and since is None:
        raise ValueError("operations are included but no operations window start was given")


def _operations_stamps(tenant_id, since_ts) -> Select:
    """One statement for both operation stamps: every run in the window, and the completed ones among them."""
    completed = OperationRun.completed_at.is_not(None)
    return select(
        func.count().label("ops_count"),
        func.max(OperationRun.id).label("ops_max_id"),
        func.max(OperationRun.created_at).label("ops_latest"),
        func.count().filter(completed).label("ops_done"),
        func.max(OperationRun.id).filter(completed).label("ops_done_max_id"),
        func.max(OperationRun.completed_at).label("ops_done_latest"),
    ).where(*_operations_window(tenant_id, since_ts))


def _assemble_inputs(
    tenant: Mapping,
    options: PackOptions,
    since: dt.date | None,
    basis: FreshnessBasis,
    reports: Mapping[str, Mapping | None],
    findings_changes: int | None,
    operations: tuple | None,
) -> TenantPackInputs:
    """The one place that turns what was read into fingerprint inputs, so a request and a worker agree."""
    operations_stamp = operations_completed = None
    if operations is not None:
        count, max_id, latest, done, done_max_id, done_latest = operations
        operations_stamp = _stamp(int(count), max_id, _as_utc(latest))
        operations_completed = _stamp(int(done), done_max_id, _as_utc(done_latest))
    return TenantPackInputs(
        tenant_id=tenant["id"],
        tenant_external_id=str(tenant["external_id"]),
        tenant_name=tenant["name"],
        options=options,
        findings_changes=int(findings_changes or 0),
        hardening=tenant["hardening"] or {},
        hardening_updated_at=_iso_full(tenant.get("hardening_updated_at")),
        reports={
            rtype: ReportStamp(r["id"], r["fingerprint"], layout.iso(r["generated_at"])) if r else ReportStamp()
            for rtype, r in reports.items()
        },
        operations_since=since.isoformat() if options.include_operations and since is not None else None,
        operations=operations_stamp,
        operations_completed=operations_completed,
        freshness=basis,
    )


@dataclass(frozen=True)
class ScopedInputs:
    """A tenant as one actor's membership sees it: the capabilities granted there, and the fingerprint inputs."""

    workspace_id: int
    capabilities: object
    inputs: TenantPackInputs


_TENANT_COLUMNS = ("id", "workspace_id", "external_id", "name", "hardening", "hardening_updated_at")


@functools.cache
def _scoped_inputs_statement(include_operations: bool) -> DriverStatement:
    """Built once per option set: a request pays neither for building it nor for more than one round trip.

    Each report type joins its newest row through a correlated "newest id" subquery (served by
    ix_stored_reports_tenant_type_generated), and the operation stamps are a one-row aggregate, so
    the statement reads a few index entries whatever the tenant's size, on PostgreSQL and SQLite alike.
    """
    tenant_id, actor_id = bindparam("tenant_id", type_=BigInteger), bindparam("actor_id", type_=BigInteger)
    columns: list = [Tenant.__table__.c[name] for name in _TENANT_COLUMNS]
    columns.append(WorkspaceMembership.capabilities.label("capabilities"))
    changes = select(FindingStats.changes).where(FindingStats.tenant_id == Tenant.id).scalar_subquery()
    columns.append(changes.label("findings_changes"))
    query = select(*columns).join(
        WorkspaceMembership,
        (WorkspaceMembership.workspace_id == Tenant.workspace_id) & (WorkspaceMembership.user_id == actor_id),
    )
    for index, report_type in enumerate(layout.REPORTS):
        report = aliased(StoredReport, name=f"report_{index}")
        newest = (
            select(StoredReport.id)
            .where(StoredReport.tenant_id == Tenant.id, StoredReport.report_type == report_type)
            .order_by(StoredReport.generated_at.desc(), StoredReport.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = query.outerjoin(report, report.id == newest)
        columns = [report.id, report.fingerprint, report.generated_at]
        query = query.add_columns(*(c.label(f"report_{index}_{c.key}") for c in columns))
    if include_operations:
        stamps = _operations_stamps(tenant_id, bindparam("since_ts", type_=UTCDateTime)).subquery("ops")
        query = query.join(stamps, true()).add_columns(*stamps.c)
    return DriverStatement(query.where(Tenant.id == tenant_id))


def scoped_tenant_inputs(
    conn: Connection, tenant_id: int, actor_id: int, options: PackOptions, since: dt.date | None, basis: FreshnessBasis
) -> ScopedInputs | None:
    """The request's read in one statement: the tenant joined to the actor's membership, with every stamp.

    None when the actor is not a member of the tenant's workspace: such an actor gets no row
    back at all. The caller checks the capabilities before it uses the inputs or writes anything.
    The inputs equal tenant_inputs' for the same state.
    """
    _check_window(options, since)
    params: dict = {"tenant_id": tenant_id, "actor_id": actor_id}
    if options.include_operations:
        assert since is not None
        params["since_ts"] = _since_ts(since)
    row = _scoped_inputs_statement(options.include_operations).first(conn, params)
    if row is None:
        return None
    tenant = {name: getattr(row, name) for name in _TENANT_COLUMNS}
    reports = {}
    for index, report_type in enumerate(layout.REPORTS):
        report_id = getattr(row, f"report_{index}_id")
        reports[report_type] = None if report_id is None else {
            "id": report_id,
            "fingerprint": getattr(row, f"report_{index}_fingerprint"),
            "generated_at": getattr(row, f"report_{index}_generated_at"),
        }
    operations = None
    if options.include_operations:
        operations = (row.ops_count, row.ops_max_id, row.ops_latest, row.ops_done, row.ops_done_max_id, row.ops_done_latest)
    inputs = _assemble_inputs(tenant, options, since, basis, reports, row.findings_changes, operations)
    return ScopedInputs(workspace_id=row.workspace_id, capabilities=row.capabilities, inputs=inputs)


def tenant_sources(
    conn: Connection, tenant: Mapping, options: PackOptions, since: dt.date | None, basis: FreshnessBasis
) -> TenantSources:
    """The fingerprint inputs plus the counts and source dates the pack states (the worker's read)."""
    # The counts of the included findings and the newest observation (when the host last saw a
    # finding, or last wrote one where it records no sighting) come from what the findings
    # triggers keep: no aggregate over the tenant's findings runs before the first row is written.
    figures = finding_figures(conn, tenant["id"])
    by_severity: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for (severity, status), count in figures.groups.items():
        if status in layout.INCLUDED_FINDING_STATUSES:
            by_severity[severity] = by_severity.get(severity, 0) + count
            by_status[status] = by_status.get(status, 0) + count

    reports = latest_reports(conn, tenant["id"])
    inputs = tenant_inputs(conn, tenant, options, since, basis, reports, findings_changes=figures.changes)
    freshness = {
        "findings": layout.iso(figures.latest_seen or figures.latest_write),
        "hardening": layout.iso(tenant.get("hardening_updated_at")),
    }
    for report_type, report in reports.items():
        freshness[report_key(report_type)] = layout.iso(report["generated_at"]) if report else None
    if options.include_operations:
        freshness["operations"] = layout.iso(_as_utc(inputs.operations.latest_change))
    return TenantSources(inputs, by_severity, by_status, reports, dict(sorted(freshness.items())))


def report_key(report_type: str) -> str:
    """The name a report goes by in summary.json and the executive summary."""
    return layout.REPORTS[report_type].removeprefix("reports/").removesuffix(".json")


def review_pack_inputs(
    conn: Connection, review: Mapping, tenant: Mapping, options: PackOptions, basis: FreshnessBasis
) -> ReviewPackInputs:
    return ReviewPackInputs(
        review_id=review["id"],
        tenant_id=tenant["id"],
        tenant_external_id=str(tenant["external_id"]),
        tenant_name=tenant["name"],
        status=review["status"],
        published_at=layout.iso(review["published_at"]),
        summary=review["summary"] or {},
        sections=review["sections"] or [],
        options=options,
        freshness=basis,
    )


def keyset_chunks(conn: Connection, query: Select, id_column, chunk_size: int, *, leading: tuple = ()) -> Iterator[list[dict]]:
    """Yield the query's rows in id order, chunk_size at a time, one bounded query per chunk.

    Keyset pagination keeps memory flat on every dialect and never holds a cursor
    open between chunks; inside one REPEATABLE READ transaction the chunks share
    one snapshot. ``leading`` are columns the query holds to one value, ordered by before
    the id so that an index that starts with them serves the order.
    """
    last_id = None
    while True:
        page = query.order_by(*leading, id_column).limit(chunk_size)
        if last_id is not None:
            page = page.where(id_column > last_id)
        rows = [dict(r) for r in conn.execute(page).mappings()]
        if not rows:
            return
        yield rows
        if len(rows) < chunk_size:
            return
        last_id = rows[-1]["id"]


def stream_findings(conn: Connection, tenant_id: int, chunk_size: int) -> Iterator[list[dict]]:
    if conn.dialect.name == "postgresql":
        # As in the COPY statement (storage/export.py): with "tenant_id = x ORDER BY id" PostgreSQL
        # walks the primary key past other tenants' rows; a one-element array ordered by tenant and
        # id is read through (tenant_id, id).
        tenant = Finding.tenant_id == any_(bindparam("tenant_ids", [tenant_id], type_=ARRAY(BigInteger)))
    else:
        tenant = Finding.tenant_id == tenant_id
    query = select(*FINDING_COLUMNS).where(tenant, Finding.status.in_(layout.INCLUDED_FINDING_STATUSES))
    return keyset_chunks(conn, query, Finding.id, chunk_size, leading=(Finding.tenant_id,))


def stream_operations(conn: Connection, tenant_id: int, since: dt.date, chunk_size: int) -> Iterator[list[dict]]:
    query = select(*OPERATION_COLUMNS).where(*_operations_filter(tenant_id, since))
    return keyset_chunks(conn, query, OperationRun.id, chunk_size)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction that sees a single consistent state of every source."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn:
        with conn.begin():
            yield conn
