"""Nothing stuck, nothing lost, with real processes: a SIGKILLed worker and a Redis that forgot its queue."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import redis as redis_lib

from storage.demo_data import add_findings
from storage.models import OperationRun
from tests.conftest import Beat, Stack, Worker, migrated_database
from tests.support.packs import object_bytes, open_zip, pack_key, seed, sha256, wait_for

pytestmark = pytest.mark.e2e

FAST_RECOVERY = {
    "REVIEWPACKS_HEARTBEAT_SECONDS": "1",
    "REVIEWPACKS_PROGRESS_INTERVAL_SECONDS": "0.2",
    "REVIEWPACKS_REAP_INTERVAL_SECONDS": "1",
    "REVIEWPACKS_QUEUED_REPUBLISH_SECONDS": "2",
    "REVIEWPACKS_FINDINGS_CHUNK_SIZE": "2000",
}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database of this module's own. Its beat re-publishes every queued pack it finds: in the
    session's database that would include packs earlier modules left queued, whose objects would
    then land in this module's bucket beside the one pack each test accounts for."""
    with migrated_database(f"reviewpacks_test_recovery_{os.getpid()}") as url:
        yield url


@pytest.fixture
def fast_env(stack: Stack) -> dict:
    return {**stack.env, **FAST_RECOVERY}




def test_a_sigkilled_worker_mid_generation_loses_nothing(stack, fast_env, tmp_path):
    ids = seed(stack, findings=10)
    with stack.session() as session:
        add_findings(session, ids.tenant_id, 120_000)
    client = stack.client()
    victim = Worker(fast_env, tmp_path / "victim.log", concurrency=1)
    try:
        victim.wait_ready()
        pack_id = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id
        wait_for(lambda: client.get_pack(pack_id, ids.manager_id).rows_written > 0, 60, "generation did not start")
        # The whole worker, parent and child, as when a host or container dies.
        os.killpg(os.getpgid(victim.process.pid), signal.SIGKILL)
        victim.process.wait(timeout=10)
    finally:
        victim.stop()
    killed = client.get_pack(pack_id, ids.manager_id)
    assert killed.status == "generating"
    leftovers = list((stack.home / "tmp").rglob(f"review-pack-{pack_id}-*"))
    assert leftovers, "the killed attempt should have left its temp file behind"

    rescuer = Worker(fast_env, tmp_path / "rescuer.log", concurrency=1)
    beat = Beat(fast_env, tmp_path)
    try:
        rescuer.wait_ready()
        pack = client.wait(pack_id, ids.manager_id, timeout=180)
    finally:
        beat.stop()
        rescuer.stop()

    assert pack.status == "ready", rescuer.log()
    assert [k for k in stack.store().keys()] == [pack_key(stack, pack_id)]
    data = object_bytes(stack, pack)
    assert sha256(data) == pack.sha256
    assert pack.rows_written == sum(1 for _ in open_zip(data).open("findings.csv")) - 1
    assert list((stack.home / "tmp").rglob("review-pack-*")) == []
    with stack.session() as session:
        assert session.get(OperationRun, pack.operation_run_id).attempts == 2


def test_a_queue_flushed_by_a_redis_restart_is_republished_by_the_sweeper(stack, fast_env, tmp_path):
    ids = seed(stack, findings=30)
    client = stack.client()
    pack_id = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id
    broker = redis_lib.Redis.from_url(stack.settings.broker_url)
    assert broker.llen("review_packs") == 1
    broker.flushdb()  # what a restart without persistence leaves behind
    assert broker.llen("review_packs") == 0

    worker = Worker(fast_env, tmp_path / "worker.log")
    beat = Beat(fast_env, tmp_path)
    try:
        worker.wait_ready()
        pack = client.wait(pack_id, ids.manager_id, timeout=120)
    finally:
        beat.stop()
        worker.stop()

    assert pack.status == "ready"
    assert "run.republished pack_id=%d" % pack_id in worker.log_path.read_text()
