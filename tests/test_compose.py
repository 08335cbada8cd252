"""docker-compose.yml cannot drift from the code: every service command runs here against local services.

There is no Docker engine on the test machines, so the file is parsed, compose.env is
interpolated into each service's environment the way compose does it, and each of our
services' commands (and healthchecks) runs as a process with that environment, its host
names translated to the local PostgreSQL, Redis and a MinIO-like S3 server (moto behind a
front that answers PutPublicAccessBlock with 501 NotImplemented, as MinIO does). Then a
pack is generated through the processes those commands started and downloaded through the
public endpoint. The MinIO images and the mc setup script are checked statically.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import create_engine, inspect, text

from reviewpacks import runtime
from reviewpacks.settings import Settings
from tests.conftest import PG_ADMIN_URL, REDIS_URL, ROOT
from tests.support.s3 import free_port

pytestmark = pytest.mark.e2e

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = [name for name, svc in SERVICES.items() if svc.get("image") == "reviewpacks:latest"]
SECRET_NAMES = ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_KMS_SECRET_KEY",
                "REVIEWPACKS_S3_ACCESS_KEY", "REVIEWPACKS_S3_SECRET_KEY", "FLOWER_BASIC_AUTH")


def _env_file() -> dict[str, str]:
    env = {}
    for line in (ROOT / "compose.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation for the forms this file uses: ${VAR}, ${VAR:?message}, ${VAR:-default}, $$."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        if variables.get(name):
            return variables[name]
        if op == ":-":
            return arg
        raise KeyError(f"{name} is required: {arg}")

    return _VARIABLE.sub(replace, str(value))


def service_environment(service: str, variables: dict[str, str] | None = None) -> dict[str, str]:
    variables = _env_file() if variables is None else variables
    raw = SERVICES[service].get("environment", {})
    return {key: interpolate(value, variables) for key, value in raw.items()}


def _secret_values() -> dict[str, str]:
    env = _env_file()
    return {name: env[name] for name in SECRET_NAMES}


# ------------------------------------------------------------------ the file itself


def test_the_stack_has_every_part_with_healthchecks():
    assert set(SERVICES) == {"postgres", "redis", "minio", "minio-init", "create-bucket", "migrate", "worker", "beat", "flower"}
    for name in ("postgres", "redis", "minio", "worker", "flower"):
        assert "healthcheck" in SERVICES[name], name
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["worker"]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert SERVICES["create-bucket"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    # Exactly one beat: nothing scales it, and no replica count is set.
    assert "deploy" not in SERVICES["beat"] and "scale" not in SERVICES["beat"]
    for one_shot in ("migrate", "create-bucket", "minio-init"):
        assert SERVICES[one_shot]["restart"] == "no"
    assert set(APP_SERVICES) == {"create-bucket", "migrate", "worker", "beat", "flower"}
    assert (ROOT / "Dockerfile").exists()


def test_every_image_is_pinned_and_minio_comes_from_quay():
    assert SERVICES["minio"]["image"] == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert re.fullmatch(r"quay\.io/minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", SERVICES["minio-init"]["image"])
    for name, service in SERVICES.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest") or image == "reviewpacks:latest", name


def test_nothing_is_published_beyond_loopback():
    published = {name: service["ports"] for name, service in SERVICES.items() if "ports" in service}
    assert published == {"minio": ["127.0.0.1:9000:9000"], "flower": ["127.0.0.1:5555:5555"]}


def test_each_service_gets_only_its_own_secrets():
    values = _secret_values()
    holders = {}
    for service in SERVICES:
        env = " ".join(service_environment(service).values())
        holders[service] = {name for name, value in values.items() if value in env}
    assert holders == {
        "postgres": {"POSTGRES_PASSWORD"},
        "redis": set(),
        "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_KMS_SECRET_KEY"},
        "minio-init": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "REVIEWPACKS_S3_ACCESS_KEY", "REVIEWPACKS_S3_SECRET_KEY"},
        "create-bucket": {"REVIEWPACKS_S3_ACCESS_KEY", "REVIEWPACKS_S3_SECRET_KEY"},
        "migrate": {"POSTGRES_PASSWORD"},
        "worker": {"POSTGRES_PASSWORD", "REVIEWPACKS_S3_ACCESS_KEY", "REVIEWPACKS_S3_SECRET_KEY"},
        "beat": set(),
        "flower": {"FLOWER_BASIC_AUTH"},
    }
    # One database password, written once.
    assert (ROOT / "compose.env").read_text().count("POSTGRES_PASSWORD=") == 1
    assert "env_file" not in json.dumps(COMPOSE)


def test_a_missing_secret_stops_compose_with_a_message():
    variables = {k: v for k, v in _env_file().items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(KeyError, match="set POSTGRES_PASSWORD in compose.env"):
        service_environment("worker", variables)


def test_the_application_credential_is_limited_to_the_bucket():
    bucket = service_environment("worker")["REVIEWPACKS_ARTIFACT_STORE"].removeprefix("s3://").split("/")[0]
    mounts = {volume.split(":")[1]: ROOT / volume.split(":")[0] for volume in SERVICES["minio-init"]["volumes"]}
    policy = json.loads(mounts["/etc/reviewpacks/minio-app-policy.json"].read_text())
    script = mounts["/etc/reviewpacks/minio-init.sh"].read_text()

    resources = {resource for statement in policy["Statement"] for resource in statement["Resource"]}
    actions = [action for statement in policy["Statement"] for action in statement["Action"]]
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    assert not any("*" in action or action.startswith("admin:") for action in actions)
    assert f"bucket={bucket}" in script
    assert 'mc admin user add local "$REVIEWPACKS_S3_ACCESS_KEY"' in script
    assert 'mc admin policy attach local "$policy" --user "$REVIEWPACKS_S3_ACCESS_KEY"' in script
    # The application services sign with that user, never with MinIO's root account.
    for service in APP_SERVICES:
        env = service_environment(service)
        assert "MINIO_ROOT_USER" not in env and "MINIO_ROOT_PASSWORD" not in env
        if "AWS_ACCESS_KEY_ID" in env:
            assert env["AWS_ACCESS_KEY_ID"] == _env_file()["REVIEWPACKS_S3_ACCESS_KEY"]


# -------------------------------------------------------- the commands, run locally


@pytest.fixture(scope="module")
def local_stack(minio_like, tmp_path_factory):
    """Each service's environment with service host names pointed at this machine's services."""
    database = f"reviewpacks_compose_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'reviewpacks'")).first():
            conn.execute(text("CREATE ROLE reviewpacks LOGIN"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{database}" OWNER reviewpacks'))
    home = tmp_path_factory.mktemp("compose")
    public = minio_like.endpoint_url.replace("127.0.0.1", "localhost")
    ports = {"flower": free_port(), "metrics": free_port()}
    translations = [
        ("@postgres:5432/reviewpacks", f"@127.0.0.1:5432/{database}"),
        ("redis://redis:6379/0", REDIS_URL),
        ("http://minio:9000", minio_like.endpoint_url),
        ("http://127.0.0.1:9000", public),
        ("/tmp/reviewpacks-metrics", str(home / "metrics")),
    ]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWPACKS_", "AWS_", "FLOWER_", "PROMETHEUS_"))}
    base.update(REVIEWPACKS_HOME=str(home), HOSTNAME=socket.gethostname(), PATH=f"{Path(sys.executable).parent}:{base['PATH']}")

    def env_for(service: str, **overrides: str) -> dict[str, str]:
        env = dict(base)
        for key, value in service_environment(service).items():
            for old, new in translations:
                value = value.replace(old, new)
            env[key] = value
        if service == "worker":
            # Loopback here; in compose the port stays inside the compose network.
            env.update(REVIEWPACKS_METRICS_PORT=str(ports["metrics"]), REVIEWPACKS_METRICS_ADDRESS="127.0.0.1")
        env.update(overrides)
        return env

    import redis as redis_lib

    redis_lib.Redis.from_url(REDIS_URL).flushdb()
    yield env_for, ports, home, public
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


def _command(service: str, ports: dict) -> list[str]:
    command = [arg.replace("--port=5555", f"--port={ports['flower']}") for arg in SERVICES[service]["command"]]
    if service == "flower":
        command.append("--address=127.0.0.1")
    return command


def _healthcheck(service: str, env: dict, ports: dict) -> subprocess.CompletedProcess:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    # Compose turns $$ into $ before the shell sees it.
    shell = test[1].replace("$$", "$").replace("localhost:5555", f"localhost:{ports['flower']}")
    return subprocess.run(["sh", "-c", shell], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _start(service: str, env: dict, ports: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        _command(service, ports), cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
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


def test_flower_refuses_the_placeholder_password(local_stack):
    env_for, ports, home, _public = local_stack
    for auth, message in (
        (_env_file()["FLOWER_BASIC_AUTH"], "placeholder"),
        ("", "must be set"),
        ("admin:short", "at least 12"),
    ):
        done = subprocess.run(
            _command("flower", ports), cwd=ROOT, env=env_for("flower", FLOWER_BASIC_AUTH=auth), capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0, auth
        assert message in done.stdout + done.stderr, (auth, done.stdout, done.stderr)


def test_every_service_command_starts_and_the_stack_generates_a_pack(local_stack, minio_like):
    env_for, ports, home, public = local_stack

    # One-shot services, in dependency order (minio-init is MinIO's own tooling; see above).
    init = subprocess.run(_command("create-bucket", ports), cwd=ROOT, env=env_for("create-bucket"), capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, (init.stdout, init.stderr)
    report = " ".join(init.stdout.split())
    assert "warning public access block: PutPublicAccessBlock not implemented by the provider (501 NotImplemented)" in report
    assert "ok privacy: an anonymous GET of a probe object is refused" in report
    assert "ok encryption at rest: the provider reports AES256 on a probe object" in report
    assert "PUT" in minio_like.front.refused
    migrate = subprocess.run(_command("migrate", ports), cwd=ROOT, env=env_for("migrate"), capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, (migrate.stdout, migrate.stderr)

    settings = Settings.from_env(env_for("worker"))
    engine = create_engine(settings.database_url)
    assert "reviewpacks_packs" in inspect(engine).get_table_names()
    engine.dispose()

    flower_auth = ("admin", secrets.token_urlsafe(16))
    procs = {}
    try:
        for service, env, marker in (
            ("worker", env_for("worker"), "ready."),
            ("beat", env_for("beat"), "beat: Starting"),
            ("flower", env_for("flower", FLOWER_BASIC_AUTH=":".join(flower_auth)), "Visit me at"),
        ):
            log = home / f"{service}.log"
            procs[service] = _start(service, env, ports, log)
            _wait_log(log, marker, procs[service])
        healthy = _healthcheck("worker", env_for("worker"), ports)
        assert healthy.returncode == 0, healthy.stderr
        # The healthcheck fails when the worker cannot reach the database or the broker.
        dead = free_port()
        no_db = _healthcheck("worker", env_for("worker", REVIEWPACKS_DATABASE_URL=f"postgresql+psycopg://reviewpacks@127.0.0.1:{dead}/x"), ports)
        assert no_db.returncode == 1 and "unhealthy: database unreachable" in no_db.stderr
        no_broker = _healthcheck("worker", env_for("worker", REVIEWPACKS_BROKER_URL=f"redis://127.0.0.1:{dead}/0"), ports)
        assert no_broker.returncode == 1 and "unhealthy: broker unreachable" in no_broker.stderr
        assert str(dead) not in no_db.stderr + no_broker.stderr
        deadline = time.monotonic() + 30
        while _healthcheck("flower", env_for("flower"), ports).returncode != 0:
            assert time.monotonic() < deadline, "flower healthcheck never passed"
            time.sleep(0.5)

        from storage.demo_data import seed_demo
        from workers.client import ReviewPackClient

        with runtime.session_factory(settings.database_url)() as session:
            ids = seed_demo(session, findings=50)
        worker_env = env_for("worker")
        os.environ.update({k: worker_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        client = ReviewPackClient(settings)
        pack = client.wait(client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id, ids.manager_id, timeout=90)
        assert pack.status == "ready"
        # A host user downloads through the published, public address, not the containers' name for MinIO.
        url = client.download_url(pack.id, ids.manager_id)
        assert url.startswith(f"{public}/review-packs/packs/")
        download = requests.get(url, timeout=30)
        assert download.status_code == 200 and len(download.content) == pack.file_size
        assert requests.get(f"http://127.0.0.1:{ports['flower']}/api/workers", auth=flower_auth, timeout=10).status_code == 200
        assert requests.get(f"http://127.0.0.1:{ports['flower']}/api/workers", timeout=10).status_code == 401
        metrics = requests.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10).text
        assert 'reviewpacks_packs_total{outcome="ready",reason=""} 1.0' in metrics
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
