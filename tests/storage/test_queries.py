"""The read side on real PostgreSQL: the streaming reader and the fingerprint inputs."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy import delete, text, update

from domain import fingerprint
from domain.options import PackOptions
from storage import queries
from storage.models import Finding, OperationRun, StoredReport, Tenant, User, Workspace, WorkspaceMembership
from tests.support.sql import recorded_statements

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


@pytest.fixture
def member(pg_session, tenant):
    user = User(email=f"{uuid.uuid4().hex}@example.test", display_name="m")
    pg_session.add(user)
    pg_session.flush()
    pg_session.add(WorkspaceMembership(workspace_id=tenant.workspace_id, user_id=user.id, capabilities=["review_pack.request"]))
    pg_session.flush()
    return user


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
    with recorded_statements(conn) as sent:
        chunks = list(queries.stream_findings(conn, tenant.id, chunk_size=7))
    statements = [statement for statement, _ in sent]

    assert [r["id"] for chunk in chunks for r in chunk] == sorted(open_ids)
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    # Each chunk is its own LIMITed query: the reader never asks for all rows at once.
    assert len(statements) == len(chunks)
    assert all("LIMIT" in s for s in statements)


def test_stream_findings_is_lazy(pg_session, tenant):
    _findings(pg_session, tenant.id, 30)
    conn = pg_session.connection()
    with recorded_statements(conn) as sent:
        stream = queries.stream_findings(conn, tenant.id, chunk_size=10)
        first = next(stream)
        assert len(first) == 10
        assert len(sent) == 1


def test_stream_of_an_empty_tenant_yields_nothing(pg_session, tenant):
    assert list(queries.stream_findings(pg_session.connection(), tenant.id, chunk_size=10)) == []


BASIS = fingerprint.FreshnessBasis(evaluated_on="2026-11-21", stale_after_days=7)


def _fp(session, tenant, options=None, since=dt.date(2026, 10, 21)):
    options = options or PackOptions(True, True)
    session.flush()
    session.refresh(tenant)
    inputs = queries.tenant_inputs(session.connection(), _row_of(tenant), options, since, BASIS)
    # The worker's full read computes the same inputs as the request's cheap one.
    assert queries.tenant_sources(session.connection(), _row_of(tenant), options, since, BASIS).inputs == inputs
    # And so does the request's single statement, read through a member's eyes.
    scoped = queries.scoped_tenant_inputs(session.connection(), tenant.id, _member_of(session, tenant), options, since, BASIS)
    assert scoped is not None and scoped.inputs == inputs and scoped.workspace_id == tenant.workspace_id
    return fingerprint.compute(inputs)


def _member_of(session, tenant):
    membership = session.query(WorkspaceMembership).filter_by(workspace_id=tenant.workspace_id).first()
    if membership is None:
        user = User(email=f"{uuid.uuid4().hex}@example.test", display_name="m")
        session.add(user)
        session.flush()
        membership = WorkspaceMembership(workspace_id=tenant.workspace_id, user_id=user.id, capabilities=[])
        session.add(membership)
        session.flush()
    return membership.user_id


EXPORTED_CHANGES = {
    "last_seen_at": NOW + dt.timedelta(hours=1),
    "first_seen_at": NOW - dt.timedelta(days=3),
    "status": "acknowledged",
    "severity": "critical",
    "title": "renamed",
    "evidence": {"changed": True},
    "subject_display_name": "Someone Else",
    "subject_external_id": uuid.UUID("00000000-0000-0000-0000-0000000000aa"),
    "subject_type": "group",
    "finding_type": "y",
}


@pytest.mark.parametrize("column", list(EXPORTED_CHANGES))
def test_any_exported_column_changed_without_updated_at_moves_the_fingerprint(pg_session, tenant, column):
    ids = _findings(pg_session, tenant.id, 3)
    before = _fp(pg_session, tenant)
    # The host rewrites one value and leaves updated_at alone.
    pg_session.execute(update(Finding).where(Finding.id == ids[1]).values({column: EXPORTED_CHANGES[column]}))
    assert _fp(pg_session, tenant) != before


def test_inserts_updates_deletes_and_truncate_each_move_the_counter(pg_session, tenant):
    other = Tenant(workspace_id=tenant.workspace_id, external_id=uuid.uuid4(), name="other", hardening={})
    pg_session.add(other)
    pg_session.flush()
    conn = pg_session.connection()
    ids = _findings(pg_session, tenant.id, 4)
    _findings(pg_session, other.id, 2)
    pg_session.flush()
    assert (queries.finding_changes(conn, tenant.id), queries.finding_changes(conn, other.id)) == (4, 2)

    # One statement touching many rows counts every row (its old and its new version), for its own
    # tenant only.
    pg_session.execute(update(Finding).where(Finding.tenant_id == tenant.id).values(last_seen_at=NOW))
    assert (queries.finding_changes(conn, tenant.id), queries.finding_changes(conn, other.id)) == (12, 2)
    # Moving a finding to another tenant counts for both.
    pg_session.execute(update(Finding).where(Finding.id == ids[0]).values(tenant_id=other.id))
    assert (queries.finding_changes(conn, tenant.id), queries.finding_changes(conn, other.id)) == (13, 3)
    pg_session.execute(delete(Finding).where(Finding.id == ids[1]))
    assert queries.finding_changes(conn, tenant.id) == 14
    pg_session.execute(text("TRUNCATE findings"))
    assert (queries.finding_changes(conn, tenant.id), queries.finding_changes(conn, other.id)) == (15, 4)
    # Deleting a tenant cascades to its findings and its counter without tripping over either.
    pg_session.execute(delete(Tenant).where(Tenant.id == other.id))
    assert queries.finding_changes(conn, other.id) == 0


def test_a_request_reads_no_finding_rows(pg_session, tenant):
    _findings(pg_session, tenant.id, 5)
    pg_session.add(StoredReport(tenant_id=tenant.id, report_type="permission_posture", fingerprint="abc", payload={"big": "x" * 1000}, generated_at=NOW))
    pg_session.flush()
    with recorded_statements(pg_session.get_bind().engine) as sent:
        queries.tenant_inputs(pg_session.connection(), _row_of(tenant), PackOptions(True, True), dt.date(2026, 10, 21), BASIS)
    statements = [statement for statement, _ in sent]
    # The cost of a request does not grow with the tenant's findings: it reads their counter only.
    assert statements and not any(re.search(r"\bFROM findings\b", s) for s in statements)
    assert any("finding_stats" in s for s in statements)
    # Nor report payloads, which can be large: the fingerprint needs their ids, fingerprints and dates.
    assert not any("payload" in s for s in statements)


def test_a_request_reads_its_inputs_in_one_statement_without_findings_or_payloads(pg_session, tenant, member):
    _findings(pg_session, tenant.id, 5)
    pg_session.add(StoredReport(tenant_id=tenant.id, report_type="permission_posture", fingerprint="abc", payload={"big": "x" * 1000}, generated_at=NOW))
    pg_session.flush()
    with recorded_statements(pg_session.get_bind().engine) as sent:
        scoped = queries.scoped_tenant_inputs(pg_session.connection(), tenant.id, member.id, PackOptions(True, True), dt.date(2026, 10, 21), BASIS)
    statements = [statement for statement, _ in sent]
    assert scoped is not None and scoped.capabilities == ["review_pack.request"]
    assert len(statements) == 1
    assert not re.search(r"\bFROM findings\b", statements[0]) and "finding_stats" in statements[0]
    assert "payload" not in statements[0]


def test_the_request_read_returns_nothing_to_an_actor_outside_the_workspace(pg_session, tenant, member):
    elsewhere = Workspace(name="elsewhere")
    outsider = User(email=f"{uuid.uuid4().hex}@example.test", display_name="o")
    pg_session.add_all([elsewhere, outsider])
    pg_session.flush()
    pg_session.add(WorkspaceMembership(workspace_id=elsewhere.id, user_id=outsider.id, capabilities=["review_pack.request"]))
    other_tenant = Tenant(workspace_id=elsewhere.id, external_id=uuid.uuid4(), name="x", hardening={})
    pg_session.add(other_tenant)
    pg_session.flush()
    read = lambda tenant_id, actor_id: queries.scoped_tenant_inputs(  # noqa: E731
        pg_session.connection(), tenant_id, actor_id, PackOptions(True, False), None, BASIS
    )
    assert read(tenant.id, outsider.id) is None
    assert read(other_tenant.id, member.id) is None
    assert read(tenant.id + other_tenant.id + 1000, member.id) is None
    assert read(tenant.id, member.id).inputs.tenant_id == tenant.id


def test_the_request_read_takes_the_newest_report_of_each_type(pg_session, tenant, member):
    older = StoredReport(tenant_id=tenant.id, report_type="permission_posture", fingerprint="old", payload={}, generated_at=NOW - dt.timedelta(days=1))
    same_time_a = StoredReport(tenant_id=tenant.id, report_type="entra.admin_roles", fingerprint="a", payload={}, generated_at=NOW)
    same_time_b = StoredReport(tenant_id=tenant.id, report_type="entra.admin_roles", fingerprint="b", payload={}, generated_at=NOW)
    newest = StoredReport(tenant_id=tenant.id, report_type="permission_posture", fingerprint="new", payload={}, generated_at=NOW)
    pg_session.add_all([older, same_time_a, same_time_b, newest])
    pg_session.flush()
    scoped = queries.scoped_tenant_inputs(pg_session.connection(), tenant.id, member.id, PackOptions(True, False), None, BASIS)
    assert scoped.inputs.reports["permission_posture"].fingerprint == "new"
    # Two reports stamped at the same instant: the later row wins, as in latest_reports.
    assert scoped.inputs.reports["entra.admin_roles"].fingerprint == "b"
    assert scoped.inputs == queries.tenant_inputs(pg_session.connection(), _row_of(tenant), PackOptions(True, False), None, BASIS)


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
