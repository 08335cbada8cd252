"""A starting worker deletes the scratch files a killed worker on its host left behind."""

from __future__ import annotations

import os
import time

import pytest

from storage import scratch
from tests.conftest import Stack, Worker

pytestmark = pytest.mark.e2e


def test_worker_start_sweeps_scratch_files_older_than_the_lease(stack: Stack, tmp_path):
    directory = stack.home / "tmp" / scratch.DIRECTORY_NAME
    directory.mkdir(mode=0o700, exist_ok=True)
    left, live = directory / f"{scratch.PREFIX}901-dead.zip", directory / f"{scratch.PREFIX}902-live.zip"
    left.write_bytes(b"partial pack")
    live.write_bytes(b"being written")
    lease = stack.settings.heartbeat_seconds * 3
    then = time.time() - lease - 5
    os.utime(left, (then, then))

    log_path = tmp_path / "worker.log"
    worker = Worker(stack.env, log_path)
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 30
        while b"scratch.swept" not in log_path.read_bytes():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.1)
    finally:
        worker.stop()

    assert (left.exists(), live.exists()) == (False, True)
    assert "scratch.swept removed=1" in log_path.read_text()
