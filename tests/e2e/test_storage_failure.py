"""The failure path on a real worker: the artifact store is unreachable past the retry budget."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reviewpacks.settings import Settings
from storage.models import Notification, OperationRun
from tests.conftest import Stack, Worker
from tests.support.packs import seed
from tests.support.s3 import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dead_store_worker(stack: Stack, tmp_path_factory):
    # Same database and broker, but the worker's S3 endpoint is a port nobody listens on.
    env = {**stack.env, "REVIEWPACKS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    assert Settings.from_env(env).transient_max_retries == 2
    proc = Worker(env, tmp_path_factory.mktemp("dead-store") / "worker.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_storage_down_fails_the_pack_with_a_reason_and_leaves_nothing(stack, dead_store_worker):
    ids = seed(stack, findings=100)
    client = stack.client()

    result = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    pack = client.wait(result.pack.id, ids.manager_id, timeout=120)

    assert pack.status == "failed"
    assert pack.reason_code == "storage_unavailable"
    with stack.session() as session:
        run = session.get(OperationRun, pack.operation_run_id)
        notes = session.execute(select(Notification).where(Notification.user_id == ids.manager_id)).scalars().all()
    assert (run.status, run.outcome, run.context["reason_code"]) == ("completed", "failed", "storage_unavailable")
    # One first attempt and two retries, per REVIEWPACKS_TRANSIENT_MAX_RETRIES=2.
    assert run.attempts == 3
    assert [(n.kind, n.data.get("reason_code")) for n in notes] == [
        ("review_pack.queued", None),
        ("review_pack.failed", "storage_unavailable"),
    ]
    # The failure notice names the pack and carries the reason's safe message, never an address.
    assert notes[1].body.startswith(f"Review pack #{pack.id} for ") and "could not be reached" in notes[1].body
    assert "http" not in notes[1].body and stack.bucket not in notes[1].body
    assert list(stack.store().keys()) == []
    assert list((stack.home / "tmp").rglob("review-pack-*")) == []
    assert pack.sha256 is None and pack.file_size is None
