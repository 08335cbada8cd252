"""Flower against the test broker: basic auth, the task and its progress, structured worker logs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time

import pytest
import requests

from storage.demo_data import add_findings
from tests.conftest import ROOT, Worker
from tests.support.packs import seed
from tests.support.s3 import free_port

pytestmark = pytest.mark.e2e

AUTH = ("auditor", "s3cret-pass")


@pytest.fixture
def flower(stack, tmp_path):
    port = free_port()
    env = {**stack.env, "FLOWER_BASIC_AUTH": ":".join(AUTH)}
    log = open(tmp_path / "flower.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthcheck", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        raise TimeoutError((tmp_path / "flower.log").read_text())
    yield base
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _find_task(base: str, pack_id: int) -> dict | None:
    tasks = requests.get(f"{base}/api/tasks", params={"taskname": "reviewpacks.generate"}, auth=AUTH, timeout=5).json()
    for task_id, task in tasks.items():
        if list(ast.literal_eval(task["args"])) == [pack_id]:
            return {"id": task_id, **task}
    return None


def test_flower_shows_the_task_and_its_progress_behind_basic_auth(stack, flower, tmp_path):
    ids = seed(stack, findings=10)
    with stack.session() as session:
        add_findings(session, ids.tenant_id, 60_000)
    env = {**stack.env, "REVIEWPACKS_PROGRESS_INTERVAL_SECONDS": "0.05", "REVIEWPACKS_FINDINGS_CHUNK_SIZE": "500"}
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    try:
        worker.wait_ready()
        client = stack.client()
        pack_id = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id
        states, progress = [], []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            task = _find_task(flower, pack_id)
            if task:
                info = requests.get(f"{flower}/api/task/info/{task['id']}", auth=AUTH, timeout=5).json()
                states.append(info["state"])
                if info["state"] == "PROGRESS":
                    progress.append(info["result"])
                if info["state"] == "SUCCESS":
                    break
            time.sleep(0.05)
        pack = client.wait(pack_id, ids.manager_id, timeout=60)
        url = client.download_url(pack_id, ids.manager_id)
    finally:
        worker.stop()

    assert pack.status == "ready"
    assert "PROGRESS" in states and states[-1] == "SUCCESS"
    assert all(re.fullmatch(r"rows=\d+ bytes=\d+", p) for p in progress) and progress
    assert info["result"] == "'ready'"

    assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    assert requests.get(f"{flower}/api/tasks", auth=("auditor", "wrong"), timeout=5).status_code == 401
    assert requests.get(f"{flower}/", timeout=5).status_code == 401
    # Flower serves Prometheus metrics without auth (README: keep Flower on an internal network).
    assert requests.get(f"{flower}/metrics", timeout=5).status_code == 200

    log = worker.log_path.read_text()
    ready = re.search(rf"pack\.ready pack_id={pack_id} run_id=\d+ tenant_id={ids.tenant_id} attempt=1 rows=(\d+) bytes=(\d+) duration_s=[\d.]+", log)
    assert ready and int(ready.group(1)) == pack.rows_written and int(ready.group(2)) == pack.file_size
    assert re.search(rf"pack\.generating pack_id={pack_id} run_id=\d+ tenant_id={ids.tenant_id} attempt=1", log)
    assert "X-Amz-" not in log and "Signature=" not in log
    assert url.split("?")[0] not in log  # not even the object's address
