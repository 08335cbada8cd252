"""The producer client against real PostgreSQL, with the publisher recorded instead of a broker."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import Connection, event, func, select, update

from domain.states import PackStatus
from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage import db
from storage.demo_data import seed_demo
from storage.models import AuditLog, OperationRun, ReviewPack
from workers.client import Conflict, DispatchFailed, InvalidRequest, NotFound, RequestOutcome, ReviewPackClient
from workers.dispatch import broker_label, redispatch_pending


class Recorder:
    """Records published pack ids and what the database showed at that moment."""

    def __init__(self, url: str):
        self.url = url
        self.published: list[int] = []
        self.visible_at_publish: list[bool] = []
        self.lock = threading.Lock()

    def __call__(self, pack_id: int) -> None:
        with runtime.session_factory(self.url)() as session:
            visible = session.get(ReviewPack, pack_id) is not None
        with self.lock:
            self.published.append(pack_id)
            self.visible_at_publish.append(visible)


@pytest.fixture
def env(pg_url, tmp_path):
    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": pg_url, "REVIEWPACKS_HOME": str(tmp_path)})
    recorder = Recorder(pg_url)
    client = ReviewPackClient(settings, publish=recorder)
    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=20)
    return client, recorder, ids


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request, pg_url, tmp_path):
    """The client on PostgreSQL (one statement finds and audits a live pack) and on SQLite (two)."""
    url = pg_url
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'packs.db'}"
        db.upgrade(url)
    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": url, "REVIEWPACKS_HOME": str(tmp_path)})
    recorder = Recorder(url)
    with runtime.session_factory(url)() as session:
        ids = seed_demo(session, findings=20)
    with ReviewPackClient(settings, publish=recorder) as client:
        yield client, recorder, ids, url


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _counts(url, tenant_id):
    with runtime.session_factory(url)() as session:
        return tuple(
            session.execute(select(func.count()).select_from(model).where(model.tenant_id == tenant_id)).scalar_one()
            for model in (ReviewPack, OperationRun, AuditLog)
        )


def test_request_creates_run_and_pack_and_publishes_after_commit(env, pg_url):
    client, recorder, ids = env
    before = _counts(pg_url, ids.tenant_id)

    result = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)

    assert result.outcome == "queued"
    assert recorder.published == [result.pack.id]
    assert recorder.visible_at_publish == [True]
    assert _counts(pg_url, ids.tenant_id) == (before[0] + 1, before[1] + 1, before[2] + 1)
    with runtime.session_factory(pg_url)() as session:
        run = session.get(OperationRun, result.pack.operation_run_id)
        audit = session.execute(select(AuditLog).where(AuditLog.resource_id == result.pack.id)).scalar_one()
    assert (run.type, run.status, run.initiator_user_id) == ("tenant.review_pack.generate", "queued", ids.manager_id)
    assert (audit.action, audit.details["outcome"], audit.actor_user_id) == ("review_pack.requested", "queued", ids.manager_id)
    assert result.pack.options["include_pii"] is True and result.pack.options["include_operations"] is True


def test_a_second_identical_request_while_queued_is_reused_active(env):
    client, recorder, ids = env
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    second = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert (second.outcome, second.pack.id) == ("reused_active", first.pack.id)
    assert recorder.published == [first.pack.id]


def test_a_request_answered_by_a_live_pack_costs_two_statements_and_no_transaction(env, pg_url):
    client, _, ids = env
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    statements: list[str] = []
    commits: list[object] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    def committed(conn):
        commits.append(conn)

    event.listen(client.engine, "before_cursor_execute", record)
    event.listen(client.engine, "commit", committed)
    try:
        again = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    finally:
        event.remove(client.engine, "before_cursor_execute", record)
        event.remove(client.engine, "commit", committed)
    # The membership and every fingerprint input; the live pack with the audit row. Each round trip
    # counts when many producers call at once, so a new one has to be a deliberate choice: no BEGIN,
    # no COMMIT, and the audit row is there for every other session all the same.
    assert (again.outcome, again.pack.id) == ("reused_active", first.pack.id)
    assert len(statements) == 2 and commits == []
    assert statements[1].startswith("WITH live AS") and "INSERT INTO reviewpacks_audit_logs" in statements[1]
    with runtime.session_factory(pg_url)() as session:
        audits = session.execute(
            select(AuditLog.details).where(AuditLog.resource_id == first.pack.id).order_by(AuditLog.id)
        ).scalars().all()
    assert [a["outcome"] for a in audits] == ["queued", "reused_active"]


def test_without_listeners_a_shared_request_runs_its_two_statements_on_the_driver(env, pg_url, monkeypatch):
    client, _, ids = env
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    sent: list[str] = []
    commits: list[object] = []
    execute = psycopg.Cursor.execute

    def recorded(cursor, query, *args, **kwargs):
        sent.append(query)
        return execute(cursor, query, *args, **kwargs)

    committed = commits.append
    event.listen(client.engine, "commit", committed)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(psycopg.Cursor, "execute", recorded)
            patched.setattr(Connection, "execute", lambda *args, **kwargs: pytest.fail("SQLAlchemy ran a statement of the request"))
            again = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    finally:
        event.remove(client.engine, "commit", committed)
    # The cheap path a host without execution listeners gets: the same two statements, no BEGIN or
    # COMMIT, and psycopg is all that stands between them and the database.
    assert (again.outcome, again.pack.id) == ("reused_active", first.pack.id)
    assert len(sent) == 2 and sent[0].startswith("SELECT tenants.id") and sent[1].startswith("WITH live AS")
    assert commits == [] and _request_audits(pg_url, ids.tenant_id)[-1] == (first.pack.id, "review_pack.requested", "reused_active")


def _request_audits(url, tenant_id):
    with runtime.session_factory(url)() as session:
        audits = session.execute(
            select(AuditLog.resource_id, AuditLog.action, AuditLog.details)
            .where(AuditLog.tenant_id == tenant_id)
            .order_by(AuditLog.id)
        ).all()
    return [(pack_id, action, details.get("outcome", details.get("by"))) for pack_id, action, details in audits]


def test_a_request_shares_an_active_and_then_a_ready_pack_and_audits_each(any_db):
    client, recorder, ids, url = any_db
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    active = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    with runtime.session_factory(url)() as session:
        session.execute(
            update(ReviewPack).where(ReviewPack.id == first.pack.id)
            .values(status=PackStatus.READY, expires_at=_now() + dt.timedelta(days=1))
        )
        session.commit()
    ready = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert [(r.outcome, r.pack.id) for r in (first, active, ready)] == [
        ("queued", first.pack.id), ("reused_active", first.pack.id), ("reused_ready", first.pack.id)
    ]
    assert (active.pack.status, ready.pack.status) == ("queued", "ready") and recorder.published == [first.pack.id]
    assert _request_audits(url, ids.tenant_id) == [
        (first.pack.id, "review_pack.requested", outcome) for outcome in ("queued", "reused_active", "reused_ready")
    ]


@pytest.mark.parametrize("expires_in", [dt.timedelta(seconds=-1), None], ids=["past retention", "no deadline"])
def test_a_ready_pack_that_may_not_be_handed_out_is_not_audited_as_reused(any_db, expires_in):
    client, recorder, ids, url = any_db
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    expires_at = None if expires_in is None else _now() + expires_in
    with runtime.session_factory(url)() as session:
        session.execute(
            update(ReviewPack).where(ReviewPack.id == first.pack.id).values(status=PackStatus.READY, expires_at=expires_at)
        )
        session.commit()
    again = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert again.outcome == "queued" and again.pack.id != first.pack.id
    assert _request_audits(url, ids.tenant_id) == [
        (first.pack.id, "review_pack.requested", "queued"),
        (first.pack.id, "review_pack.expired", "retention"),
        (again.pack.id, "review_pack.requested", "queued"),
    ]


def test_different_options_make_a_different_pack(env, pg_url):
    client, _, ids = env
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    with runtime.session_factory(pg_url)() as session:
        session.execute(update(ReviewPack).where(ReviewPack.id == first.pack.id).values(status="failed"))
        session.commit()
    other = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=False)
    assert other.outcome == "queued" and other.pack.id != first.pack.id
    assert other.pack.fingerprint != first.pack.fingerprint


def test_other_options_while_a_generation_is_active_are_a_conflict_that_writes_only_an_audit_row(env, pg_url):
    client, recorder, ids = env
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    before = _counts(pg_url, ids.tenant_id)
    with pytest.raises(Conflict, match="generation already in progress for this tenant"):
        client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=False)
    with pytest.raises(Conflict):
        client.request_review_pack(ids.review_id, ids.manager_id)
    packs, runs, audits = _counts(pg_url, ids.tenant_id)
    assert (packs, runs, audits) == (before[0], before[1], before[2] + 2)
    assert recorder.published == [first.pack.id]
    with runtime.session_factory(pg_url)() as session:
        refused = session.execute(
            select(AuditLog).where(AuditLog.tenant_id == ids.tenant_id).order_by(AuditLog.id.desc()).limit(2)
        ).scalars().all()
    assert {(a.action, a.details["outcome"], a.resource_id) for a in refused} == {
        ("review_pack.requested", "refused_conflict", first.pack.id)
    }
    assert refused[0].details["review_id"] == ids.review_id
    # The identical request still shares the active generation.
    same = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert (same.outcome, same.pack.id) == ("reused_active", first.pack.id)


def test_racing_requests_with_different_options_leave_one_active_generation(env, pg_url):
    client, recorder, ids = env
    barrier = threading.Barrier(8)

    def request(i):
        barrier.wait()
        try:
            return client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=bool(i % 2)).outcome
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(request, range(8)))
    assert outcomes.count("queued") == 1
    assert set(outcomes) <= {"queued", "reused_active", "conflict"} and "conflict" in outcomes
    assert len(recorder.published) == 1


def test_concurrent_identical_requests_produce_one_pack(env, pg_url):
    client, recorder, ids = env
    barrier = threading.Barrier(20)

    def request(_):
        barrier.wait()
        return client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(request, range(20)))

    assert len({r.pack.id for r in results}) == 1
    assert sorted(r.outcome for r in results).count("queued") == 1
    assert recorder.published == [results[0].pack.id]
    packs, runs, audits = _counts(pg_url, ids.tenant_id)
    assert (packs, runs) == (1, 1 + 14)  # the seed's 14 operation runs plus the one generation run
    assert audits == 20


@pytest.mark.parametrize(
    "options",
    [
        {"include_pii": "yes"},
        {"include_pii": 1},
        {"include_operations": 0},
        {"include_operations": "false"},
        {"include_pii": []},
    ],
)
def test_bad_option_types_are_refused_and_nothing_is_written(env, pg_url, options):
    client, recorder, ids = env
    before = _counts(pg_url, ids.tenant_id)
    with pytest.raises(InvalidRequest, match="must be true or false"):
        client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, **options)
    assert _counts(pg_url, ids.tenant_id) == before
    assert recorder.published == []


@pytest.mark.parametrize("bad", [0, -1, 2**63, True, "7", 1.0, None])
def test_bad_ids_are_refused(env, bad):
    client, recorder, ids = env
    with pytest.raises(InvalidRequest, match="positive whole number"):
        client.request_pack(tenant_id=bad, actor_id=ids.manager_id)
    with pytest.raises(InvalidRequest):
        client.get_pack(bad, ids.manager_id)
    assert recorder.published == []


def test_unknown_tenant_is_not_found(env, pg_url):
    client, recorder, ids = env
    with pytest.raises(NotFound):
        client.request_pack(tenant_id=2**62, actor_id=ids.manager_id)
    assert recorder.published == []


def test_a_failed_publish_raises_dispatch_failed_and_the_sweep_publishes_it_later(pg_url, tmp_path):
    settings = Settings.from_env({
        "REVIEWPACKS_DATABASE_URL": pg_url,
        "REVIEWPACKS_HOME": str(tmp_path),
        "REVIEWPACKS_BROKER_URL": "redis://user:hunter2@broker.internal:6380/3",
    })
    published: list[int] = []
    broker_up = False

    def flaky(pack_id):
        if not broker_up:
            raise ConnectionError("Error 111 connecting to broker.internal:6380. Connection refused.")
        published.append(pack_id)

    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=1)
    with ReviewPackClient(settings, publish=flaky) as client:
        with pytest.raises(DispatchFailed) as failed:
            client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
        pack_id = failed.value.pack.id
        assert failed.value.broker == "redis://broker.internal:6380"
        assert "hunter2" not in str(failed.value) and "user" not in str(failed.value)
        assert client.get_pack(pack_id, ids.manager_id).status == PackStatus.QUEUED
        with runtime.session_factory(pg_url)() as session:
            assert session.get(ReviewPack, pack_id).dispatch_pending_since is not None

        # While the broker is still down, the sweep publishes nothing and keeps the mark.
        sessions = runtime.session_factory(pg_url)
        with pytest.raises(ConnectionError):
            redispatch_pending(sessions, flaky, now=_now())
        with runtime.session_factory(pg_url)() as session:
            assert session.get(ReviewPack, pack_id).dispatch_pending_since is not None

        broker_up = True
        assert redispatch_pending(sessions, flaky, now=_now()) >= 1
        assert pack_id in published
        with runtime.session_factory(pg_url)() as session:
            pack = session.get(ReviewPack, pack_id)
            assert pack.dispatch_pending_since is None
            assert session.get(OperationRun, pack.operation_run_id).published_at is not None
        # Nothing is pending any more: a second sweep publishes nothing.
        published.clear()
        redispatch_pending(sessions, flaky, now=_now())
        assert pack_id not in published


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("redis://:s3cret@10.0.0.5:6379/0", "redis://10.0.0.5:6379"),
        ("amqp://guest:guest@rabbit/vhost", "amqp://rabbit"),
        ("filesystem://", "filesystem://"),
        ("redis://[::1]:99999", "the configured broker"),
    ],
)
def test_the_broker_is_named_without_credentials(url, label):
    assert broker_label(url) == label


def test_status_is_one_str_enum_from_every_call(env):
    client, _, ids = env
    requested = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert type(requested.outcome) is RequestOutcome
    views = [
        requested.pack,
        client.get_pack(requested.pack.id, ids.manager_id),
        *client.list_packs(ids.tenant_id, ids.manager_id),
        client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack,
    ]
    assert all(type(view.status) is PackStatus for view in views)
    assert requested.pack.status == "queued"


def test_the_client_uses_a_host_engine_and_leaves_it_open(pg_url, tmp_path):
    from sqlalchemy import create_engine, text

    host_engine = create_engine(pg_url, pool_size=2)
    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": "sqlite:///nowhere.db", "REVIEWPACKS_HOME": str(tmp_path)})
    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=1)
    with ReviewPackClient(settings, engine=host_engine, publish=lambda _id: None) as client:
        assert client.engine is host_engine
        pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
        assert host_engine.pool.checkedin() >= 1
    # The host's engine still works after the client closed; the pack went to the host's database.
    with host_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reviewpacks_packs WHERE id = :id"), {"id": pack.id}).scalar_one() == 1
    host_engine.dispose()


def test_a_client_closes_the_engine_it_opened(pg_url, tmp_path):
    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": pg_url, "REVIEWPACKS_HOME": str(tmp_path)})
    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=1)
    with ReviewPackClient(settings, publish=lambda _id: None) as client:
        client.list_packs(ids.tenant_id, ids.manager_id)
        assert client.engine.pool.checkedin() == 1
    assert client.engine.pool.checkedin() == 0


def test_download_url_of_a_pack_that_is_not_ready_is_refused(env):
    client, _, ids = env
    result = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    with pytest.raises(NotFound, match=f"pack {result.pack.id} is queued, not ready for download yet"):
        client.download_url(result.pack.id, ids.manager_id)


def test_unknown_options_are_refused_and_nothing_is_written(env, pg_url):
    client, recorder, ids = env
    before = _counts(pg_url, ids.tenant_id)
    with pytest.raises(InvalidRequest, match="unknown option.*include_secrets"):
        client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_secrets=True)
    assert _counts(pg_url, ids.tenant_id) == before and recorder.published == []


def test_the_sweep_only_clears_the_mark_of_a_pack_that_is_no_longer_queued(pg_url, tmp_path):
    from domain.reasons import ReasonCode
    from storage import packs

    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": pg_url, "REVIEWPACKS_HOME": str(tmp_path)})

    def down(_pack_id):
        raise ConnectionError("broker down")

    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=1)
    with ReviewPackClient(settings, publish=down) as client:
        with pytest.raises(DispatchFailed) as failed:
            client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    pack_id = failed.value.pack.id
    with runtime.session_factory(pg_url)() as session:
        assert packs.mark_failed(session, pack_id, ReasonCode.SOURCE_MISSING, now=_now())
    published: list[int] = []
    redispatch_pending(runtime.session_factory(pg_url), published.append, now=_now())
    assert pack_id not in published
    with runtime.session_factory(pg_url)() as session:
        assert session.get(ReviewPack, pack_id).dispatch_pending_since is None


def test_a_request_that_joins_a_pack_awaiting_dispatch_dispatches_it_or_says_it_could_not(pg_url, tmp_path):
    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": pg_url, "REVIEWPACKS_HOME": str(tmp_path)})
    published: list[int] = []
    broker_up = False

    def flaky(pack_id):
        if not broker_up:
            raise ConnectionError("broker down")
        published.append(pack_id)

    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=1)
    with ReviewPackClient(settings, publish=flaky) as client:
        with pytest.raises(DispatchFailed) as first:
            client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
        # The same request again while the broker is still down: the same pack, and still not a success.
        with pytest.raises(DispatchFailed) as second:
            client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
        assert second.value.pack.id == first.value.pack.id
        broker_up = True
        joined = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
        assert joined.outcome == RequestOutcome.REUSED_ACTIVE and joined.pack.id == first.value.pack.id
        assert published == [first.value.pack.id]
        with runtime.session_factory(pg_url)() as session:
            assert session.get(ReviewPack, joined.pack.id).dispatch_pending_since is None
        # Once dispatched, joining it publishes nothing more.
        client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
        assert published == [first.value.pack.id]
