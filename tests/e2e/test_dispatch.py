"""A request while the broker is down: the CLI says so and exits 1; the pack is dispatched once the broker is back.

The broker is a private redis-server on a free port, with a password, that the test
starts and stops, so the outage is real and touches no other test's Redis.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from storage.models import ReviewPack
from tests.conftest import ROOT, Worker
from tests.support.packs import seed

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-broker-pw"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    def __init__(self, port: int, workdir: Path):
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", PASSWORD, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis(host="127.0.0.1", port=self.port, password=PASSWORD)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis_lib.ConnectionError:
                time.sleep(0.1)
        raise TimeoutError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_request_while_the_broker_is_down_fails_clearly_and_is_dispatched_once_it_is_back(stack, tmp_path):
    port = _free_port()
    broker = PrivateRedis(port, tmp_path)
    env = {
        **stack.env,
        "REVIEWPACKS_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        "REVIEWPACKS_DISPATCH_RETRY_SECONDS": "1",
        "COLUMNS": "200",
    }
    ids = seed(stack, findings=25)
    other = seed(stack, findings=5)

    # The broker is down (never started): the request is recorded, and the CLI says it was not dispatched.
    down = _cli(env, "request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id))
    assert down.returncode == 1, (down.stdout, down.stderr)
    assert down.stderr.count("\n") == 1, down.stderr
    assert f"redis://127.0.0.1:{port}" in down.stderr
    assert PASSWORD not in down.stdout + down.stderr and "Traceback" not in down.stderr
    pack_id = int(re.search(r"pack (\d+) was recorded", down.stderr).group(1))
    with stack.session() as session:
        pack = session.get(ReviewPack, pack_id)
        assert pack.status == "queued" and pack.dispatch_pending_since is not None
    status = _cli(env, "status", str(pack_id), "--actor", str(ids.manager_id))
    assert status.returncode == 0 and "awaiting the broker since" in status.stdout

    # --debug adds the traceback, still without the password.
    debug = _cli(env, "--debug", "request", "--tenant", str(other.tenant_id), "--actor", str(other.manager_id))
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "not dispatched" in debug.stderr
    assert PASSWORD not in debug.stderr
    debug_pack = int(re.search(r"pack (\d+) was recorded", debug.stderr).group(1))

    # The broker comes back; a worker starts. No beat runs, and the lost-message sweep waits 600 s:
    # only the dispatch sweep can hand these packs to the broker.
    broker.start()
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    client = stack.client()
    try:
        worker.wait_ready()
        ready_at = time.monotonic()
        first = client.wait(pack_id, ids.manager_id, timeout=60)
        second = client.wait(debug_pack, other.manager_id, timeout=60)
        elapsed = time.monotonic() - ready_at
    finally:
        worker.stop()
        broker.stop()
    assert first.status == "ready", worker.log()
    assert second.status == "ready", worker.log()
    assert elapsed < 30, elapsed
    with stack.session() as session:
        assert session.get(ReviewPack, pack_id).dispatch_pending_since is None
        assert session.get(ReviewPack, debug_pack).dispatch_pending_since is None
    assert PASSWORD not in (tmp_path / "worker.log").read_text(errors="replace")
