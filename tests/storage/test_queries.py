"""The read side on real PostgreSQL: the streaming reader and the fingerprint inputs."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import event, update

from domain import fingerprint
from domain.options import PackOptions
from storage import queries
from storage.models import Finding, OperationRun, StoredReport, Tenant, Workspace

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def tenant(pg_session):
    workspace = Workspace(name="w")
    pg_session.add(workspace)
    pg_session.flush()
    row = Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name="t", hardening={"mfa": True})
    pg_session.add(row)
    pg_session.flush()
    return row


def _findings(session, tenant_id, count, status="new"):
    rows = [
        Finding(
            tenant_id=tenant_id,
            finding_type="x",
            severity="high",
            status=status,
            subject_type="user",
            title=f"f{i}",
            evidence={},
            updated_at=NOW,
        )
        for i in range(count)
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def _row_of(tenant):
    return {c.key: getattr(tenant, c.key) for c in Tenant.__table__.columns}


def test_stream_findings_returns_every_open_row_in_order_one_bounded_query_per_chunk(pg_session, tenant):
    open_ids = _findings(pg_session, tenant.id, 45, "new") + _findings(pg_session, tenant.id, 5, "acknowledged")
    _findings(pg_session, tenant.id, 7, "resolved")
    other = Tenant(workspace_id=tenant.workspace_id, external_id=uuid.uuid4(), name="o", hardening={})
    pg_session.add(other)
    pg_session.flush()
    _findings(pg_session, other.id, 9)

    conn = pg_session.connection()
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    event.listen(conn, "before_cursor_execute", listener)
    try:
        chunks = list(queries.stream_findings(conn, tenant.id, chunk_size=7))
    finally:
        event.remove(conn, "before_cursor_execute", listener)

    assert [r["id"] for chunk in chunks for r in chunk] == sorted(open_ids)
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    # Each chunk is its own LIMITed query: the reader never asks for all rows at once.
    assert len(statements) == len(chunks)
    assert all("LIMIT" in s for s in statements)


def test_stream_findings_is_lazy(pg_session, tenant):
    _findings(pg_session, tenant.id, 30)
    conn = pg_session.connection()
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(conn, "before_cursor_execute", listener)
    try:
        stream = queries.stream_findings(conn, tenant.id, chunk_size=10)
        first = next(stream)
        assert len(first) == 10
        assert len(statements) == 1
    finally:
        event.remove(conn, "before_cursor_execute", listener)


def test_stream_of_an_empty_tenant_yields_nothing(pg_session, tenant):
    assert list(queries.stream_findings(pg_session.connection(), tenant.id, chunk_size=10)) == []


def _fp(session, tenant, options=None, since=dt.date(2026, 10, 21)):
    options = options or PackOptions(True, True)
    session.flush()
    session.refresh(tenant)
    return fingerprint.compute(queries.tenant_sources(session.connection(), _row_of(tenant), options, since).inputs)


def test_fingerprint_inputs_are_stable_and_follow_every_source(pg_session, tenant):
    ids = _findings(pg_session, tenant.id, 3)
    base = _fp(pg_session, tenant)
    assert _fp(pg_session, tenant) == base

    pg_session.execute(update(Finding).where(Finding.id == ids[0]).values(status="resolved", updated_at=NOW + dt.timedelta(minutes=1)))
    after_resolve = _fp(pg_session, tenant)
    assert after_resolve != base

    pg_session.add(StoredReport(tenant_id=tenant.id, report_type="permission_posture", fingerprint="abc", payload={}, generated_at=NOW))
    after_report = _fp(pg_session, tenant)
    assert after_report != after_resolve

    tenant.hardening = {"mfa": False}
    after_hardening = _fp(pg_session, tenant)
    assert after_hardening != after_report

    pg_session.add(OperationRun(workspace_id=tenant.workspace_id, tenant_id=tenant.id, type="inventory.sync", status="completed", created_at=NOW))
    after_operation = _fp(pg_session, tenant)
    assert after_operation != after_hardening
    assert _fp(pg_session, tenant, options=PackOptions(True, False), since=None) != after_operation
    assert _fp(pg_session, tenant, options=PackOptions(False, True)) != after_operation


def test_pack_generation_runs_do_not_change_the_fingerprint(pg_session, tenant):
    _findings(pg_session, tenant.id, 2)
    before = _fp(pg_session, tenant)
    pg_session.add(
        OperationRun(workspace_id=tenant.workspace_id, tenant_id=tenant.id, type="tenant.review_pack.generate", status="queued", created_at=NOW)
    )
    assert _fp(pg_session, tenant) == before


def test_latest_report_of_each_type_and_empty_when_missing(pg_session, tenant):
    pg_session.add_all(
        [
            StoredReport(tenant_id=tenant.id, report_type="permission_posture", payload={"v": 1}, generated_at=NOW - dt.timedelta(days=2)),
            StoredReport(tenant_id=tenant.id, report_type="permission_posture", payload={"v": 2}, generated_at=NOW),
        ]
    )
    pg_session.flush()
    reports = queries.latest_reports(pg_session.connection(), tenant.id)
    assert reports["permission_posture"]["payload"] == {"v": 2}
    assert reports["entra.admin_roles"] is None


def test_a_run_completing_or_hardening_being_rewritten_changes_the_fingerprint(pg_session, tenant):
    run = OperationRun(workspace_id=tenant.workspace_id, tenant_id=tenant.id, type="inventory.sync", status="running", created_at=NOW)
    pg_session.add(run)
    before = _fp(pg_session, tenant)
    run.status, run.outcome, run.completed_at = "completed", "succeeded", NOW + dt.timedelta(minutes=2)
    after_completion = _fp(pg_session, tenant)
    assert after_completion != before
    tenant.hardening_updated_at = NOW
    assert _fp(pg_session, tenant) != after_completion
