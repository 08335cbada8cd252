"""The findings triggers keep each tenant's counts and newest dates equal to an aggregate of its findings.

Random writes of every kind (inserts, updates that move findings between severities,
statuses and tenants or lower their dates, deletes, emptying the table, deleting a
tenant), on PostgreSQL (statement triggers) and SQLite (row triggers); after each
write the kept figures are compared with a GROUP BY over the findings.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from domain import layout
from domain.fingerprint import FreshnessBasis
from domain.options import PackOptions
from reviewpacks import runtime
from storage import db, queries
from storage.models import Finding, FindingStats, Tenant, Workspace
from tests.support.sql import recorded_statements

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
# A few instants, so that writes often tie with the newest value or fall just below it.
TIMES = [None, *(NOW + dt.timedelta(hours=k) for k in range(5))]
SEVERITIES = ("low", "high", "critical")
STATUSES = ("new", "acknowledged", "resolved")


@pytest.fixture(params=["postgresql", "sqlite"])
def session(request, tmp_path) -> Session:
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_session")
        return
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    db.upgrade(url)
    with Session(bind=runtime.engine_for(url), expire_on_commit=False) as own:
        yield own
    runtime.dispose_engines()


def _tenants(session: Session, count: int) -> list[int]:
    workspace = Workspace(name="w")
    session.add(workspace)
    session.flush()
    tenants = [Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name=f"t{i}", hardening={}) for i in range(count)]
    session.add_all(tenants)
    session.flush()
    return [t.id for t in tenants]


def _finding(rng: random.Random, tenant_id: int) -> dict:
    return {
        "tenant_id": tenant_id,
        "finding_type": "x",
        "severity": rng.choice(SEVERITIES),
        "status": rng.choice(STATUSES),
        "subject_type": "user",
        "title": "t",
        "evidence": {},
        "last_seen_at": rng.choice(TIMES),
        "updated_at": rng.choice(TIMES[1:]),
    }


def _some(rng: random.Random, session: Session, tenants: list[int], *, newest: bool = False) -> list[int]:
    """A few of the tenants' findings; with ``newest``, among those holding a tenant's newest sighting or write."""
    query = select(Finding.id).where(Finding.tenant_id.in_(tenants)).order_by(Finding.id)
    if newest:
        column = rng.choice([Finding.last_seen_at, Finding.updated_at])
        # The newest of them all is its own tenant's newest too.
        query = query.where(column == select(func.max(column)).where(Finding.tenant_id.in_(tenants)).scalar_subquery())
    ids = session.execute(query).scalars().all()
    return rng.sample(ids, min(len(ids), rng.randint(1, 4))) if ids else []


def _write(rng: random.Random, session: Session, tenants: list[int]) -> None:
    kind = rng.choice(["insert", "insert", "lower", "raise", "move", "status", "delete", "delete_all"])
    if kind == "insert":
        session.execute(insert(Finding), [_finding(rng, rng.choice(tenants)) for _ in range(rng.randint(1, 6))])
    elif kind in ("lower", "raise"):
        # One statement for several rows: their dates go down (often below the newest) or up.
        when = min(TIMES[1:]) if kind == "lower" else max(TIMES[1:])
        column = rng.choice(["last_seen_at", "updated_at"])
        value = None if column == "last_seen_at" and rng.random() < 0.3 else when
        chosen = _some(rng, session, tenants, newest=kind == "lower" and rng.random() < 0.5)
        session.execute(update(Finding).where(Finding.id.in_(chosen)).values({column: value}))
    elif kind == "move":
        session.execute(update(Finding).where(Finding.id.in_(_some(rng, session, tenants))).values(tenant_id=rng.choice(tenants)))
    elif kind == "status":
        values = {"status": rng.choice(STATUSES)} if rng.random() < 0.5 else {"severity": rng.choice(SEVERITIES)}
        session.execute(update(Finding).where(Finding.id.in_(_some(rng, session, tenants))).values(values))
    elif kind == "delete":
        session.execute(delete(Finding).where(Finding.id.in_(_some(rng, session, tenants, newest=rng.random() < 0.5))))
    elif rng.random() < 0.3:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("TRUNCATE findings"))
        else:
            session.execute(delete(Finding))


def _kept(session: Session, tenant_id: int) -> tuple[dict, tuple]:
    """What a pack reads: the kept counts and newest dates (a stale date read from the findings)."""
    figures = queries.finding_figures(session.connection(), tenant_id)
    return figures.groups, (figures.latest_seen, figures.latest_write)


def _stored(session: Session, tenant_id: int) -> tuple:
    row = session.execute(
        select(FindingStats.last_seen_at, FindingStats.updated_at, FindingStats.last_seen_at_stale, FindingStats.updated_at_stale)
        .where(FindingStats.tenant_id == tenant_id)
    ).one_or_none()
    return tuple(row) if row is not None else (None, None, False, False)


def _aggregated(session: Session, tenant_id: int) -> tuple[dict, tuple]:
    groups = session.execute(
        select(Finding.severity, Finding.status, func.count()).where(Finding.tenant_id == tenant_id).group_by(Finding.severity, Finding.status)
    ).all()
    newest = session.execute(
        select(func.max(Finding.last_seen_at), func.max(Finding.updated_at)).where(Finding.tenant_id == tenant_id)
    ).one()
    return {(s, st): n for s, st, n in groups}, tuple(queries._as_utc(v) for v in newest)


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_keep_the_counts_and_newest_dates_equal_to_an_aggregate(session, seed):
    rng = random.Random(seed)
    tenants = _tenants(session, 3)
    stale_seen = 0
    for step in range(40):
        _write(rng, session, tenants)
        session.flush()
        for tenant_id in tenants:
            where = f"seed {seed}, step {step}, tenant {tenant_id}"
            groups, newest = _aggregated(session, tenant_id)
            assert _kept(session, tenant_id) == (groups, newest), where
            # A date not marked stale is the newest itself; a stale one is never below it.
            seen, wrote, seen_stale, wrote_stale = _stored(session, tenant_id)
            for stored, stale, actual in ((seen, seen_stale, newest[0]), (wrote, wrote_stale, newest[1])):
                assert stored == actual if not stale else actual is None or stored >= actual, where
                stale_seen += stale
    # The writes did make dates stale along the way, so the fallback was exercised too.
    assert stale_seen > 0


def test_a_write_that_removes_the_newest_date_costs_no_read_of_the_findings_and_the_next_sighting_makes_it_exact(session):
    first, second = _tenants(session, 2)
    rng = random.Random(3)
    rows = [{**_finding(rng, first), "last_seen_at": TIMES[k], "updated_at": TIMES[k]} for k in (1, 2, 3)]
    session.execute(insert(Finding), [*rows, {**_finding(rng, second), "last_seen_at": TIMES[4]}])
    session.flush()
    newest = session.execute(select(Finding.id).where(Finding.tenant_id == first, Finding.last_seen_at == TIMES[3])).scalar_one()
    postgres = session.get_bind().dialect.name == "postgresql"
    # Scans of the findings table and of each of its indexes so far in this transaction.
    scans = text(
        "SELECT pg_stat_get_xact_numscans('findings'::regclass) + "
        "(SELECT sum(pg_stat_get_xact_numscans(indexrelid)) FROM pg_index WHERE indrelid = 'findings'::regclass)"
    )
    before = session.execute(scans).scalar_one() if postgres else None
    session.execute(delete(Finding).where(Finding.id == newest))
    if postgres:
        # The delete's own lookup by id, and nothing else: the trigger read none of the tenant's findings.
        assert session.execute(scans).scalar_one() == before + 1
    assert _stored(session, first) == (TIMES[3], TIMES[3], True, True)
    assert _kept(session, first)[1] == (TIMES[2], TIMES[2])
    # The other tenant's dates are untouched.
    assert _stored(session, second)[2:] == (False, False)
    session.execute(update(Finding).where(Finding.tenant_id == first, Finding.last_seen_at == TIMES[1]).values(last_seen_at=TIMES[4], updated_at=TIMES[4]))
    assert _stored(session, first) == (TIMES[4], TIMES[4], False, False)
    assert _kept(session, first)[1] == (TIMES[4], TIMES[4])


def test_a_pack_reads_no_finding_rows_for_its_counts_while_the_dates_are_exact(session):
    (tenant_id,) = _tenants(session, 1)
    session.execute(insert(Finding), [_finding(random.Random(i), tenant_id) for i in range(5)])
    session.flush()
    with recorded_statements(session.get_bind().engine) as sent:
        queries.finding_figures(session.connection(), tenant_id)
    assert len(sent) == 1 and not re.search(r"\bFROM findings\b", sent[0][0])


def test_deleting_a_tenant_takes_its_counts_along(session):
    first, second = _tenants(session, 2)
    rng = random.Random(1)
    session.execute(insert(Finding), [_finding(rng, t) for t in (first, first, second)])
    session.flush()
    session.execute(delete(Tenant).where(Tenant.id == first))
    session.flush()
    assert _kept(session, first) == ({}, (None, None))
    assert _kept(session, second) == _aggregated(session, second) != ({}, (None, None))


def test_the_pack_reads_its_counts_and_freshness_from_the_kept_figures(session):
    (tenant_id,) = _tenants(session, 1)
    rows = [
        {**_finding(random.Random(i), tenant_id), "severity": severity, "status": status, "last_seen_at": seen}
        for i, (severity, status, seen) in enumerate(
            [("high", "new", TIMES[2]), ("high", "acknowledged", TIMES[4]), ("low", "new", None), ("critical", "resolved", TIMES[3])]
        )
    ]
    session.execute(insert(Finding), rows)
    session.flush()
    tenant = {"id": tenant_id, "external_id": uuid.uuid4(), "name": "t", "hardening": {}, "hardening_updated_at": None}
    basis = FreshnessBasis("2026-11-20", 30)
    sources = queries.tenant_sources(session.connection(), tenant, PackOptions(True, False), None, basis)
    # Resolved findings are not in the pack and not in its counts; the newest sighting is any finding's.
    assert sources.by_severity == {"high": 2, "low": 1}
    assert sources.by_status == {"new": 2, "acknowledged": 1}
    assert sources.freshness["findings"] == layout.iso(TIMES[4])
    session.execute(update(Finding).where(Finding.tenant_id == tenant_id).values(last_seen_at=None))
    session.flush()
    # With no sightings recorded, the newest write stands in.
    newest_write = max(r["updated_at"] for r in rows)
    sources = queries.tenant_sources(session.connection(), tenant, PackOptions(True, False), None, basis)
    assert sources.freshness["findings"] == layout.iso(newest_write)
