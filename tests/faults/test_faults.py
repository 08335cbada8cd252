"""Fault injection on real processes and services: a pack ends ready or failed with a reason,
never stuck, never duplicated, never half-uploaded.

Full trial counts: `REVIEWPACKS_FAULT_TRIALS=full .venv/bin/python -m pytest tests/faults`
(docs/reliability.md has the table); CI runs the smaller counts.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import func, select, update

from reviewpacks.settings import Settings
from storage.demo_data import add_findings
from storage.models import OperationRun, ReviewPack, StoredReport
from tests.conftest import Beat, Stack, Worker
from tests.support.packs import object_bytes, open_findings, open_zip, seed, sha256, wait_for
from tests.support.reliability import trials
from tests.support.s3 import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

FAST = {
    "REVIEWPACKS_HEARTBEAT_SECONDS": "1",
    "REVIEWPACKS_PROGRESS_INTERVAL_SECONDS": "0.2",
    "REVIEWPACKS_REAP_INTERVAL_SECONDS": "1",
    "REVIEWPACKS_QUEUED_REPUBLISH_SECONDS": "3",
    "REVIEWPACKS_MAX_ATTEMPTS": "5",
}




def _status(stack: Stack, pack_id: int) -> str:
    with stack.session() as session:
        return session.execute(select(ReviewPack.status).where(ReviewPack.id == pack_id)).scalar_one()


def _tally(stack: Stack, row, pack_ids: list[int], *, expect_failed: bool = False) -> None:
    """Count outcomes: ready packs, objects beyond one per ready pack, leftover temp files and rows."""
    with stack.session() as session:
        statuses = dict(session.execute(select(ReviewPack.id, ReviewPack.status).where(ReviewPack.id.in_(pack_ids))).all())
        keys = set(session.execute(select(ReviewPack.file_path).where(ReviewPack.id.in_(pack_ids))).scalars())
    stored = [k for k in stack.store().keys() if k in keys]
    ready = sum(1 for s in statuses.values() if s == "ready")
    row.trials += len(pack_ids)
    row.ready += ready
    if expect_failed:
        row.failed_as_expected += sum(1 for s in statuses.values() if s == "failed")
    row.duplicates += max(0, len(stored) - ready) + (len(stored) - len(set(stored)))
    row.leftovers += len(list((stack.home / "tmp").rglob("review-pack-*"))) + sum(
        1 for s in statuses.values() if s in ("queued", "generating")
    )


def _request_large(stack: Stack, findings: int, *, rng_seed: int):
    """A tenant with many findings, and a pack requested for it: (ids, pack id)."""
    ids = seed(stack, findings=5)
    with stack.session() as session:
        add_findings(session, ids.tenant_id, findings, seed=rng_seed)
    return ids, stack.client().request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def fast_env(stack: Stack) -> dict:
    return {**stack.env, **FAST}


def test_worker_child_sigkilled_at_a_random_moment(stack, fast_env, tmp_path, reliability):
    rng = random.Random(20261123)
    worker = Worker(fast_env, tmp_path / "worker.log", concurrency=1)
    beat = Beat(fast_env, tmp_path)
    row = reliability.row("worker child SIGKILLed mid-generation")
    pack_ids = []
    try:
        worker.wait_ready()
        client = stack.client()
        for trial in range(trials(10, 3)):
            ids, pack_id = _request_large(stack, 150_000, rng_seed=trial)
            pack_ids.append(pack_id)
            wait_for(lambda pack_id=pack_id: _status(stack, pack_id) == "generating", 60, "generation did not start")
            time.sleep(rng.uniform(0.0, 1.2))
            for child in _children(worker.process.pid):
                os.kill(child, signal.SIGKILL)
            pack = client.wait(pack_id, ids.manager_id, timeout=120)
            assert pack.status == "ready", worker.log()
            data = object_bytes(stack, pack)
            assert sha256(data) == pack.sha256
            expected = open_findings(stack, ids.tenant_id)
            assert sum(1 for _ in open_zip(data).open("findings.csv")) - 1 == expected
    finally:
        beat.stop()
        worker.stop()
    _tally(stack, row, pack_ids)
    assert (row.ready, row.duplicates, row.leftovers) == (len(pack_ids), 0, 0)


def test_storage_outage_during_upload_is_retried(stack, s3_server, tmp_path, reliability):
    env = {**stack.env, **FAST, "REVIEWPACKS_TRANSIENT_MAX_RETRIES": "6", "REVIEWPACKS_TRANSIENT_RETRY_BACKOFF_SECONDS": "1"}
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    row = reliability.row("S3 down from generation start until an upload fails")
    pack_ids = []
    try:
        worker.wait_ready()
        client = stack.client()
        for trial in range(trials(3, 1)):
            ids, pack_id = _request_large(stack, 200_000, rng_seed=100 + trial)
            pack_ids.append(pack_id)
            wait_for(lambda pack_id=pack_id: _status(stack, pack_id) == "generating", 60, "generation did not start")
            s3_server.stop()
            try:
                # Down until the upload has met the outage and the attempt was handed back, however long
                # building the ZIP takes on this machine: a fixed outage could end before the upload starts.
                wait_for(lambda pack_id=pack_id: f"pack.retrying pack_id={pack_id}" in worker.log_path.read_text(),
                         180, "the upload never met the outage")
            finally:
                s3_server.start()
            pack = client.wait(pack_id, ids.manager_id, timeout=120)
            assert pack.status == "ready", worker.log()
            with stack.session() as session:
                assert session.get(OperationRun, pack.operation_run_id).attempts >= 2
            assert f"pack.retrying pack_id={pack_id}" in worker.log_path.read_text()
    finally:
        s3_server.start()
        worker.stop()
    _tally(stack, row, pack_ids)
    assert (row.ready, row.duplicates, row.leftovers) == (len(pack_ids), 0, 0)


def test_storage_down_past_the_retry_budget_fails_with_a_reason(stack, tmp_path, reliability):
    env = {**stack.env, "REVIEWPACKS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
           "REVIEWPACKS_TRANSIENT_MAX_RETRIES": "1", "REVIEWPACKS_TRANSIENT_RETRY_BACKOFF_SECONDS": "0.2"}
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    row = reliability.row("S3 down past the retry budget")
    try:
        worker.wait_ready()
        ids = seed(stack, findings=50)
        client = stack.client()
        pack_id = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id
        pack = client.wait(pack_id, ids.manager_id, timeout=120)
    finally:
        worker.stop()
    assert (pack.status, pack.reason_code) == ("failed", "storage_unavailable")
    _tally(stack, row, [pack_id], expect_failed=True)
    assert (row.failed_as_expected, row.duplicates, row.leftovers) == (1, 0, 0)


def test_database_connection_killed_mid_stream(stack, tmp_path, reliability):
    env = {**stack.env, **FAST, "REVIEWPACKS_TRANSIENT_RETRY_BACKOFF_SECONDS": "0.5"}
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    row = reliability.row("PostgreSQL backend terminated mid-COPY")
    pack_ids = []
    dsn = stack.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        worker.wait_ready()
        client = stack.client()
        for trial in range(trials(3, 1)):
            ids, pack_id = _request_large(stack, 300_000, rng_seed=200 + trial)
            pack_ids.append(pack_id)
            with psycopg.connect(dsn, autocommit=True) as admin:
                backend = wait_for(
                    lambda: admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY (SELECT%%'"
                        " AND pid <> pg_backend_pid()"
                    ).fetchone(),
                    60,
                    "COPY never started",
                )[0]
                time.sleep(0.2)
                assert admin.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]
            pack = client.wait(pack_id, ids.manager_id, timeout=120)
            assert pack.status == "ready", worker.log()
            with stack.session() as session:
                run = session.get(OperationRun, pack.operation_run_id)
            expected = open_findings(stack, ids.tenant_id)
            assert run.attempts >= 2
            assert pack.rows_written == expected
            assert sum(1 for _ in open_zip(object_bytes(stack, pack)).open("findings.csv")) - 1 == expected
    finally:
        worker.stop()
    _tally(stack, row, pack_ids)
    assert (row.ready, row.duplicates, row.leftovers) == (len(pack_ids), 0, 0)


class LocalRedis:
    """A Redis of this test's own, without persistence, that can be restarted on the same port."""

    def __init__(self, home: Path):
        self.port = free_port()
        self.home = home
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self):
        subprocess.run(
            [shutil.which("redis-server"), "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.home), "--logfile", str(self.home / "redis.log")],
            check=True,
        )
        wait_for(lambda: self._ping(), 10, "redis did not start")

    def _ping(self) -> bool:
        try:
            return redis_lib.Redis.from_url(self.url).ping()
        except redis_lib.ConnectionError:
            return False

    def stop(self):
        try:
            redis_lib.Redis.from_url(self.url).shutdown(nosave=True)
        except redis_lib.ConnectionError:
            pass
        wait_for(lambda: not self._ping(), 10, "redis did not stop")


def test_redis_restarted_without_persistence_loses_no_request(stack, tmp_path, reliability):
    broker = LocalRedis(tmp_path)
    env = {**stack.env, **FAST, "REVIEWPACKS_BROKER_URL": broker.url}
    settings = Settings.from_env(env)
    client = stack.client().__class__(settings)
    row = reliability.row("Redis restarted empty with 20 requests queued")
    try:
        seeded = [seed(stack, findings=20) for _ in range(20)]
        pack_ids = [client.request_pack(tenant_id=i.tenant_id, actor_id=i.manager_id).pack.id for i in seeded]
        assert redis_lib.Redis.from_url(broker.url).llen("review_packs") == 20
        broker.stop()
        broker.start()
        assert redis_lib.Redis.from_url(broker.url).llen("review_packs") == 0
        worker = Worker(env, tmp_path / "worker.log")
        beat = Beat(env, tmp_path)
        try:
            worker.wait_ready()
            for pack_id, ids in zip(pack_ids, seeded):
                assert client.wait(pack_id, ids.manager_id, timeout=120).status == "ready"
        finally:
            beat.stop()
            worker.stop()
    finally:
        broker.stop()
    _tally(stack, row, pack_ids)
    assert (row.ready, row.duplicates, row.leftovers) == (20, 0, 0)


def test_duplicate_messages_and_racing_workers_generate_once(stack, tmp_path, reliability):
    from workers.app import make_app

    app = make_app(stack.settings)
    workers = [Worker(stack.env, tmp_path / f"worker-{i}.log", concurrency=1) for i in range(2)]
    row = reliability.row("message delivered 3x, two workers racing")
    pack_ids = []
    try:
        for w in workers:
            w.wait_ready()
        client = stack.client()
        for _ in range(trials(5, 2)):
            ids, pack_id = _request_large(stack, 30_000, rng_seed=0)
            pack_ids.append(pack_id)
            for _ in range(2):
                app.send_task("reviewpacks.generate", args=[pack_id], queue="review_packs")
            pack = client.wait(pack_id, ids.manager_id, timeout=120)
            assert pack.status == "ready"
            time.sleep(1)  # let the duplicates arrive and be refused
            with stack.session() as session:
                assert session.get(OperationRun, pack.operation_run_id).attempts == 1
            logs = "".join(w.log_path.read_text() for w in workers)
            assert logs.count(f"pack.generating pack_id={pack_id} ") == 1
            assert logs.count(f"pack.not_claimed pack_id={pack_id} ") == 2
    finally:
        for w in workers:
            w.stop()
        app.close()
    _tally(stack, row, pack_ids)
    assert (row.ready, row.duplicates, row.leftovers) == (len(pack_ids), 0, 0)


def test_two_hundred_identical_requests_from_twenty_threads(stack, worker, reliability):
    ids = seed(stack, findings=100)
    client = stack.client()
    barrier = threading.Barrier(20)

    def caller(_):
        barrier.wait()
        return [client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id) for _ in range(10)]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = [r for batch in pool.map(caller, range(20)) for r in batch]
    assert len(results) == 200
    pack_ids = {r.pack.id for r in results}
    assert len(pack_ids) == 1
    pack = client.wait(pack_ids.pop(), ids.manager_id, timeout=60)
    with stack.session() as session:
        packs = session.execute(select(func.count()).where(ReviewPack.tenant_id == ids.tenant_id)).scalar_one()
        runs = session.execute(
            select(func.count()).where(OperationRun.tenant_id == ids.tenant_id, OperationRun.type == "tenant.review_pack.generate")
        ).scalar_one()
    assert (pack.status, packs, runs) == ("ready", 1, 1)
    row = reliability.row("200 identical requests, 20 threads")
    _tally(stack, row, [pack.id])
    row.trials = 200
    assert (row.duplicates, row.leftovers) == (0, 0)


def test_a_poison_pack_fails_once_and_does_not_loop(stack, worker, fast_env, tmp_path, reliability):
    # Two workers (the module's and a fast-recovery one with beat): neither may pick it up again.
    ids = seed(stack, findings=10)
    with stack.session() as session:
        session.execute(
            update(StoredReport).where(StoredReport.tenant_id == ids.tenant_id, StoredReport.report_type == "entra.admin_roles")
            .values(payload="corrupt")
        )
        session.commit()
    second = Worker(fast_env, tmp_path / "worker.log")
    beat = Beat(fast_env, tmp_path)
    try:
        second.wait_ready()
        client = stack.client()
        pack_id = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id
        pack = client.wait(pack_id, ids.manager_id, timeout=60)
        time.sleep(5)  # several reaper rounds
    finally:
        beat.stop()
        second.stop()
    assert (pack.status, pack.reason_code) == ("failed", "invalid_source_data")
    with stack.session() as session:
        assert session.get(OperationRun, pack.operation_run_id).attempts == 1
    logs = worker.log_path.read_text() + second.log_path.read_text()
    assert logs.count(f"pack.generating pack_id={pack_id} ") == 1
    assert logs.count(f"pack.failed pack_id={pack_id} ") == 1
    row = reliability.row("poison pack (corrupt stored report)")
    _tally(stack, row, [pack_id], expect_failed=True)
    assert (row.failed_as_expected, row.duplicates, row.leftovers) == (1, 0, 0)
