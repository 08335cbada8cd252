"""Flower against the test broker: basic auth, the task and its progress, failures with reason codes only,
structured worker logs, and the worker's own Prometheus endpoint next to Flower's."""

from __future__ import annotations

import ast
import json
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
from workers.tasks import PackFailed, PackRetry

pytestmark = pytest.mark.e2e

AUTH = ("auditor", "s3cret-pass-for-tests")


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
        # flowerconfig.py stops Flower at once on a bad password; say so rather than wait.
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
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
    metrics_port = free_port()
    env = {
        **stack.env,
        "REVIEWPACKS_PROGRESS_INTERVAL_SECONDS": "0.05",
        "REVIEWPACKS_FINDINGS_CHUNK_SIZE": "500",
        "REVIEWPACKS_METRICS_PORT": str(metrics_port),
    }
    # Prefork with two children: the figures below are summed over processes by the parent.
    worker = Worker(env, tmp_path / "worker.log", concurrency=2)
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
        exposition = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        worker.stop()

    figures = _samples(exposition)
    assert figures.get('reviewpacks_packs_total{outcome="ready",reason=""}') == 1, exposition
    assert figures["reviewpacks_pack_rows_total"] == pack.rows_written
    assert figures["reviewpacks_pack_bytes_total"] == pack.file_size
    assert figures["reviewpacks_pack_build_seconds_count"] == 1 and figures["reviewpacks_pack_build_seconds_sum"] > 0
    assert figures["reviewpacks_pack_upload_seconds_count"] == 1

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


def _samples(exposition: str) -> dict[str, float]:
    """Prometheus text format to {"name{labels}": value}, labels as the exposition orders them."""
    samples = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_failure_and_reason_classes_pickle_to_the_reason_code_alone():
    import pickle

    for cls in (PackFailed, PackRetry):
        restored = pickle.loads(pickle.dumps(cls("storage_unavailable")))
        assert type(restored) is cls and restored.reason_code == "storage_unavailable"
        assert restored.args == ("storage_unavailable",) and repr(restored) == f"{cls.__name__}('storage_unavailable')"


def test_flower_shows_a_failed_pack_as_failure_with_its_reason_code_only(stack, flower, tmp_path):
    # The worker's S3 endpoint is a port nobody listens on: every attempt is retried, then fails.
    dead = f"http://127.0.0.1:{free_port()}"
    metrics_port = free_port()
    env = {**stack.env, "REVIEWPACKS_S3_ENDPOINT_URL": dead, "REVIEWPACKS_METRICS_PORT": str(metrics_port)}
    ids = seed(stack, findings=20)
    worker = Worker(env, tmp_path / "dead-store-worker.log", concurrency=1)
    seen = []
    try:
        worker.wait_ready()
        client = stack.client()
        pack_id = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id
        deadline = time.monotonic() + 120
        info = {}
        while time.monotonic() < deadline and info.get("state") != "FAILURE":
            task = _find_task(flower, pack_id)
            if task:
                info = requests.get(f"{flower}/api/task/info/{task['id']}", auth=AUTH, timeout=5).json()
                seen.append(info)
            time.sleep(0.05)
        pack = client.wait(pack_id, ids.manager_id, timeout=60)
        exposition = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        worker.stop()

    assert (pack.status, pack.reason_code) == ("failed", "storage_unavailable")
    assert info["state"] == "FAILURE"
    assert info["exception"] == "PackFailed('storage_unavailable')"
    assert "PackFailed: storage_unavailable" in info["traceback"]
    # A RETRY state lasts only until the worker receives the retried message again, too short to
    # be sure a poll sees it; the exception it recorded stays on the task until the failure.
    retried = {i.get("exception") for i in seen if i["state"] != "FAILURE"} - {None}
    assert retried == {"PackRetry('storage_unavailable')"}
    # Nothing Flower holds about the task names where the store is or what was in it.
    everything = json.dumps(seen)
    for secret in (dead, dead.removeprefix("http://"), stack.bucket, "s3://", "X-Amz-", "Unpickleable", "EndpointConnectionError"):
        assert secret not in everything, secret

    figures = _samples(exposition)
    assert figures['reviewpacks_packs_total{outcome="failed",reason="storage_unavailable"}'] == 1
    # REVIEWPACKS_UPLOAD_MAX_RETRIES=2 in the test stack: two hand-backs before the failure.
    assert figures['reviewpacks_pack_retries_total{reason="storage_unavailable"}'] == 2
    log = worker.log_path.read_text()
    assert dead not in log and stack.bucket not in log
