"""Read-side queries: fingerprint inputs, counts, and the streaming readers.

Every function takes a SQLAlchemy Connection and returns plain values (dicts,
domain dataclasses), so the pipeline never handles ORM objects across a
transaction boundary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

from sqlalchemy import Connection, Select, func, select

from domain import layout
from domain.fingerprint import ReportStamp, ReviewPackInputs, SourceStamp, TenantPackInputs
from domain.options import PackOptions
from domain.states import RUN_TYPE_GENERATE
from storage.models import Finding, OperationRun, StoredReport, Tenant, TenantReview

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


def _stamp(conn: Connection, id_col, changed_col, *where) -> SourceStamp:
    count, max_id, latest = conn.execute(
        select(func.count(), func.max(id_col), func.max(changed_col)).where(*where)
    ).one()
    # Full precision: two changes within one second must still give different stamps.
    return SourceStamp(count=int(count), max_id=max_id, latest_change=_iso_full(latest))


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


def latest_reports(conn: Connection, tenant_id: int) -> dict[str, dict | None]:
    """The newest stored report of each exported type, or None where the tenant has none."""
    reports: dict[str, dict | None] = {}
    for report_type in layout.REPORTS:
        row = (
            conn.execute(
                select(StoredReport)
                .where(StoredReport.tenant_id == tenant_id, StoredReport.report_type == report_type)
                .order_by(StoredReport.generated_at.desc(), StoredReport.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        reports[report_type] = dict(row) if row else None
    return reports


def _operations_filter(tenant_id: int, since: dt.date):
    # Pack generations are operation runs too; listing them would make every request change the
    # next pack's content, so a pack never lists its own kind of run.
    return (
        OperationRun.tenant_id == tenant_id,
        OperationRun.created_at >= _since_ts(since),
        OperationRun.type != RUN_TYPE_GENERATE,
    )


def tenant_pack_inputs(
    conn: Connection, tenant: Mapping, options: PackOptions, since: dt.date | None
) -> TenantPackInputs:
    reports = latest_reports(conn, tenant["id"])
    stamps = {
        rtype: ReportStamp(r["id"], r["fingerprint"], layout.iso(r["generated_at"])) if r else ReportStamp()
        for rtype, r in reports.items()
    }
    operations = operations_completed = None
    if options.include_operations:
        if since is None:
            raise ValueError("operations are included but no operations window start was given")
        window = _operations_filter(tenant["id"], since)
        operations = _stamp(conn, OperationRun.id, OperationRun.created_at, *window)
        operations_completed = _stamp(
            conn, OperationRun.id, OperationRun.completed_at, *window, OperationRun.completed_at.is_not(None)
        )
    return TenantPackInputs(
        tenant_id=tenant["id"],
        tenant_external_id=str(tenant["external_id"]),
        tenant_name=tenant["name"],
        options=options,
        # Every status counts here: resolving a finding touches updated_at and drops it from the pack.
        findings=_stamp(conn, Finding.id, Finding.updated_at, Finding.tenant_id == tenant["id"]),
        hardening=tenant["hardening"] or {},
        hardening_updated_at=_iso_full(tenant.get("hardening_updated_at")),
        reports=stamps,
        operations_since=since.isoformat() if options.include_operations else None,
        operations=operations,
        operations_completed=operations_completed,
    )


def review_pack_inputs(conn: Connection, review: Mapping, tenant: Mapping, options: PackOptions) -> ReviewPackInputs:
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
    )


def finding_counts(conn: Connection, tenant_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """(by severity, by status) over the findings a pack includes."""
    rows = conn.execute(
        select(Finding.severity, Finding.status, func.count())
        .where(Finding.tenant_id == tenant_id, Finding.status.in_(layout.INCLUDED_FINDING_STATUSES))
        .group_by(Finding.severity, Finding.status)
    ).all()
    by_severity: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for severity, status, count in rows:
        by_severity[severity] = by_severity.get(severity, 0) + count
        by_status[status] = by_status.get(status, 0) + count
    return by_severity, by_status


def freshness(conn: Connection, tenant: Mapping, reports: Mapping[str, dict | None], since: dt.date | None) -> dict:
    """When each source last changed, as ISO timestamps (None where a source has no data)."""
    findings_latest = conn.execute(
        select(func.max(Finding.updated_at)).where(Finding.tenant_id == tenant["id"])
    ).scalar()
    result = {
        "findings": layout.iso(_as_utc(findings_latest)),
        "hardening": layout.iso(tenant.get("hardening_updated_at")),
    }
    for report_type, report in reports.items():
        key = layout.REPORTS[report_type].removeprefix("reports/").removesuffix(".json")
        result[key] = layout.iso(report["generated_at"]) if report else None
    if since is not None:
        latest_op = conn.execute(
            select(func.max(OperationRun.created_at)).where(*_operations_filter(tenant["id"], since))
        ).scalar()
        result["operations"] = layout.iso(_as_utc(latest_op))
    return result


def keyset_chunks(conn: Connection, query: Select, id_column, chunk_size: int) -> Iterator[list[dict]]:
    """Yield the query's rows in id order, chunk_size at a time, one bounded query per chunk.

    Keyset pagination keeps memory flat on every dialect and never holds a cursor
    open between chunks; inside one REPEATABLE READ transaction the chunks share
    one snapshot.
    """
    last_id = None
    while True:
        page = query.order_by(id_column).limit(chunk_size)
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
    query = select(*FINDING_COLUMNS).where(
        Finding.tenant_id == tenant_id, Finding.status.in_(layout.INCLUDED_FINDING_STATUSES)
    )
    return keyset_chunks(conn, query, Finding.id, chunk_size)


def stream_operations(conn: Connection, tenant_id: int, since: dt.date, chunk_size: int) -> Iterator[list[dict]]:
    query = select(*OPERATION_COLUMNS).where(*_operations_filter(tenant_id, since))
    return keyset_chunks(conn, query, OperationRun.id, chunk_size)
