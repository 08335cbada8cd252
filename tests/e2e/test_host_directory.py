"""Inside a host application's directory: its own settings.py and celeryconfig.py change nothing.

The producer and the worker are started as subprocesses in a directory that
holds a host ``settings.py`` and ``celeryconfig.py``. Python puts that
directory first on ``sys.path``, exactly as it does for a host application, so
any lookup of those module names would find the host's files. Each host file
leaves a marker when it is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import Worker
from tests.support.packs import seed

pytestmark = pytest.mark.e2e

HOST_SETTINGS = """\
# A host application's Django-style settings module.
import pathlib
pathlib.Path(__file__).with_name("host-settings-imported").touch()
DEBUG = True
DATABASES = {}
"""

HOST_CELERYCONFIG = """\
# A host application's own Celery settings, under Celery's default module name.
import pathlib
pathlib.Path(__file__).with_name("host-celeryconfig-imported").touch()
broker_url = "memory://"
task_acks_late = False
task_routes = {}
"""

PRODUCER = """\
import json, os
from workers.client import ReviewPackClient
from workers.app import app

client = ReviewPackClient.from_env()
result = client.request_pack(tenant_id={tenant}, actor_id={actor})
pack = client.wait(result.pack.id, {actor}, timeout=120)
print(json.dumps({{
    "outcome": result.outcome,
    "pack_id": pack.id,
    "status": str(pack.status),
    "acks_late": app.conf.task_acks_late,
    "our_broker": app.conf.broker_url == os.environ["REVIEWPACKS_BROKER_URL"],
    "routes": app.conf.task_routes,
}}))
"""


def test_client_and_worker_started_in_a_host_directory_generate_a_pack(stack, tmp_path):
    host = tmp_path / "host-app"
    host.mkdir()
    (host / "settings.py").write_text(HOST_SETTINGS)
    (host / "celeryconfig.py").write_text(HOST_CELERYCONFIG)
    ids = seed(stack, findings=40)
    env = {**stack.env, "REVIEWPACKS_LOG_FORMAT": "json"}

    worker = Worker(env, tmp_path / "worker.log", concurrency=1, cwd=host)
    try:
        worker.wait_ready()
        producer = subprocess.run(
            [sys.executable, "-c", PRODUCER.format(tenant=ids.tenant_id, actor=ids.manager_id)],
            cwd=host, env=env, capture_output=True, text=True, timeout=240,
        )
        assert producer.returncode == 0, producer.stderr[-3000:] + worker.log()
        worker_log = worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()

    outcome = json.loads(producer.stdout.strip().splitlines()[-1])
    assert outcome["outcome"] == "queued" and outcome["status"] == "ready"
    assert outcome["acks_late"] is True and outcome["our_broker"] is True
    assert outcome["routes"]["reviewpacks.generate"] == {"queue": "review_packs"}
    assert not (host / "host-settings-imported").exists()
    assert not (host / "host-celeryconfig-imported").exists()
    assert sorted(p.name for p in host.iterdir()) == ["celeryconfig.py", "settings.py"]

    # REVIEWPACKS_LOG_FORMAT=json reached the worker: its own lines are JSON objects naming the attempt.
    events = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    ready = [e for e in events if e["event"] == "pack.ready" and e.get("pack_id") == outcome["pack_id"]]
    assert len(ready) == 1, worker_log[-3000:]
    assert ready[0]["run_id"] > 0 and ready[0]["tenant_id"] == ids.tenant_id and ready[0]["attempt"] == 1
    assert ready[0]["logger"] == "reviewpacks.pipeline" and ready[0]["level"] == "info"
    assert "://" not in worker_log.split("ready.", 1)[1]
