"""docker-compose.yml cannot drift from the code: every service command runs here against local services.

There is no Docker engine on the test machines, so the file is parsed and each of
our services' commands (and healthchecks) is run as a process with compose.env,
its host names translated to the local PostgreSQL, Redis and the moto S3 server.
Then a pack is generated through the processes those commands started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import create_engine, inspect, text

from settings import Settings
from tests.conftest import PG_ADMIN_URL, ROOT
from tests.support.s3 import free_port

pytestmark = pytest.mark.e2e

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = [name for name, svc in SERVICES.items() if svc.get("image") == "reviewpacks:latest"]


def _env_file() -> dict[str, str]:
    env = {}
    for line in (ROOT / "compose.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def test_the_stack_has_every_part_with_healthchecks():
    assert set(SERVICES) == {"postgres", "redis", "minio", "create-bucket", "migrate", "worker", "beat", "flower"}
    for name in ("postgres", "redis", "minio", "worker", "flower"):
        assert "healthcheck" in SERVICES[name], name
    for name in APP_SERVICES:
        assert SERVICES[name]["env_file"] == "compose.env"
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["worker"]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    # Exactly one beat: nothing scales it, and no replica count is set.
    assert "deploy" not in SERVICES["beat"] and "scale" not in SERVICES["beat"]
    assert SERVICES["migrate"]["restart"] == "no" and SERVICES["create-bucket"]["restart"] == "no"
    assert set(APP_SERVICES) == {"create-bucket", "migrate", "worker", "beat", "flower"}
    assert (ROOT / "Dockerfile").exists()


@pytest.fixture(scope="module")
def local_stack(s3_server, tmp_path_factory):
    """compose.env with service host names pointed at this machine's services."""
    database = f"reviewpacks_compose_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    compose_env = _env_file()
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": compose_env["POSTGRES_USER"]}).first():
            conn.execute(text(f"CREATE ROLE {compose_env['POSTGRES_USER']} LOGIN PASSWORD '{compose_env['POSTGRES_PASSWORD']}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{database}" OWNER {compose_env["POSTGRES_USER"]}'))
    flower_port = free_port()
    translations = [
        ("@postgres:5432/reviewpacks", f"@127.0.0.1:5432/{database}"),
        ("redis://redis:6379/0", "redis://127.0.0.1:6379/12"),
        ("http://minio:9000", s3_server.endpoint_url),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWPACKS_", "AWS_", "FLOWER_"))}
    for key, value in compose_env.items():
        for old, new in translations:
            value = value.replace(old, new)
        env[key] = value
    home = tmp_path_factory.mktemp("compose")
    env.update(REVIEWPACKS_HOME=str(home), HOSTNAME=socket.gethostname(), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    import redis as redis_lib

    redis_lib.Redis.from_url("redis://127.0.0.1:6379/12").flushdb()
    yield env, flower_port, home
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


def _command(service: str, flower_port: int) -> list[str]:
    command = [arg.replace("--port=5555", f"--port={flower_port}") for arg in SERVICES[service]["command"]]
    if service == "flower":
        command.append("--address=127.0.0.1")
    return command


def _healthcheck(service: str, env: dict, flower_port: int) -> int:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    # Compose turns $$ into $ before the shell sees it.
    shell = test[1].replace("$$", "$").replace("localhost:5555", f"localhost:{flower_port}")
    return subprocess.run(["sh", "-c", shell], cwd=ROOT, env=env, capture_output=True, timeout=60).returncode


def _start(service: str, env: dict, flower_port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        _command(service, flower_port), cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_log(log: Path, marker: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if marker in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise TimeoutError(log.read_text())


def test_every_service_command_starts_and_the_stack_generates_a_pack(local_stack):
    env, flower_port, home = local_stack

    # One-shot services, in dependency order.
    for service in ("create-bucket", "migrate"):
        done = subprocess.run(_command(service, flower_port), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (service, done.stdout, done.stderr)

    settings = Settings.from_env(env)
    engine = create_engine(settings.database_url)
    assert "reviewpacks_packs" in inspect(engine).get_table_names()
    engine.dispose()
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"],
    )
    bucket = settings.artifact_store.removeprefix("s3://").split("/")[0]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4

    procs = {}
    try:
        for service, marker in (("worker", "ready."), ("beat", "beat: Starting"), ("flower", "Visit me at")):
            log = home / f"{service}.log"
            procs[service] = _start(service, env, flower_port, log)
            _wait_log(log, marker, procs[service])
        assert _healthcheck("worker", env, flower_port) == 0
        deadline = time.monotonic() + 30
        while _healthcheck("flower", env, flower_port) != 0:
            assert time.monotonic() < deadline, "flower healthcheck never passed"
            time.sleep(0.5)

        from storage import db
        from storage.demo_data import seed_demo
        from workers.client import ReviewPackClient

        with db.session_factory(settings.database_url)() as session:
            ids = seed_demo(session, findings=50)
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        client = ReviewPackClient(settings)
        pack = client.wait(client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id, ids.manager_id, timeout=90)
        assert pack.status == "ready"
        assert requests.get(client.download_url(pack.id, ids.manager_id), timeout=30).status_code == 200
        basic = tuple(env["FLOWER_BASIC_AUTH"].split(":", 1))
        assert requests.get(f"http://127.0.0.1:{flower_port}/api/workers", auth=basic, timeout=10).status_code == 200
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
