"""`reviewpacks` as a user runs it: a subprocess, real PostgreSQL and Redis, exit codes per the contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from reviewpacks import runtime
from storage.demo_data import seed_demo
from tests.conftest import ROOT


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli_env(pg_url, redis_url, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    env.update(REVIEWPACKS_DATABASE_URL=pg_url, REVIEWPACKS_BROKER_URL=redis_url, REVIEWPACKS_HOME=str(tmp_path), COLUMNS="200")
    return env


@pytest.fixture
def run(cli_env):
    def invoke(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return _cli(cli_env, *args, timeout=timeout)

    return invoke


@pytest.fixture
def ids(pg_url):
    with runtime.session_factory(pg_url)() as session:
        return seed_demo(session, findings=5)


def test_request_then_the_identical_request_says_what_happened(run, ids):
    first = run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id))
    assert first.returncode == 0, first.stderr
    assert "queued for generation" in first.stdout
    pack_id = first.stdout.split()[1]

    second = run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id))
    assert second.returncode == 0
    assert f"pack {pack_id} is already being generated" in second.stdout
    assert "queued" not in second.stdout

    status = run("status", pack_id, "--actor", str(ids.viewer_id))
    assert status.returncode == 0 and "queued" in status.stdout
    assert re.search(r"kind\s+tenant", status.stdout)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("status", "999999999", "--actor", "1"), 3, "not found"),
        (("url", "999999999", "--actor", "1"), 3, "not found"),
        (("request", "--tenant", "-5", "--actor", "1"), 2, "invalid request"),
        (("request", "--tenant", "not-a-tenant", "--actor", "1"), 2, "external UUID"),
        (("request", "--tenant", "1"), 2, "Missing option"),
        (("status", "not-a-number", "--actor", "1"), 2, "valid integer"),
        (("list", "--tenant", "1", "--actor", "1", "--status", "lost"), 2, "status must be one of"),
    ],
)
def test_exit_codes(run, args, code, message):
    result = run(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr


def test_a_member_without_manage_is_forbidden(run, ids):
    result = run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.viewer_id))
    assert result.returncode == 4
    assert "review_pack.manage" in result.stderr


def test_url_of_a_queued_pack_is_not_found(run, ids):
    first = run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id), "--no-operations")
    pack_id = first.stdout.split()[1]
    result = run("url", pack_id, "--actor", str(ids.manager_id))
    assert result.returncode == 3
    assert "not ready for download" in result.stderr


def test_a_conflicting_request_exits_5_and_review_status_reports_generating(run, ids):
    first = run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id), "--no-operations")
    assert first.returncode == 0, first.stderr
    conflict = run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id), "--no-pii")
    assert conflict.returncode == 5
    assert "conflict: generation already in progress for this tenant" in conflict.stderr
    status = run("review-status", str(ids.review_id), "--actor", str(ids.viewer_id))
    assert (status.returncode, status.stdout.strip()) == (0, "unavailable")


def test_a_bad_setting_is_a_clear_error(run):
    env_ttl = {"REVIEWPACKS_DOWNLOAD_URL_TTL_MINUTES": "20000"}
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "status", "1", "--actor", "1"],
        cwd=ROOT, env={**os.environ, **env_ttl}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "at most 10080" in result.stderr


def test_json_on_request_status_list_and_the_tenant_by_external_uuid(run, pg_url, ids):
    from storage.models import Tenant

    with runtime.session_factory(pg_url)() as session:
        external_id = str(session.get(Tenant, ids.tenant_id).external_id)

    requested = run("request", "--tenant", external_id, "--actor", str(ids.manager_id), "--no-pii", "--json")
    assert requested.returncode == 0, requested.stderr
    body = json.loads(requested.stdout)
    assert body["outcome"] == "queued"
    assert body["pack"]["tenant_id"] == ids.tenant_id and body["pack"]["status"] == "queued"
    assert body["pack"]["options"]["include_pii"] is False
    pack_id = body["pack"]["id"]

    status = json.loads(run("status", str(pack_id), "--actor", str(ids.viewer_id), "--json").stdout)
    assert status["id"] == pack_id and status["expired_at"] is None and status["failure_message"] is None

    listed = run("list", "--tenant", external_id, "--actor", str(ids.viewer_id), "--status", "queued", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [p["id"] for p in json.loads(listed.stdout)] == [pack_id]
    assert json.loads(run("list", "--tenant", str(ids.tenant_id), "--actor", str(ids.viewer_id), "--status", "ready",
                          "--json").stdout) == []

    text_list = run("list", "--tenant", str(ids.tenant_id), "--actor", str(ids.viewer_id))
    assert re.search(rf"\b{pack_id}\s+\W\s+queued\b", text_list.stdout), text_list.stdout

    # An external UUID outside the actor's workspaces is not found, like an unknown one.
    assert run("list", "--tenant", "5b1f0a8e-2a7e-4bb5-8c1e-0d5f1d8c0a11", "--actor", str(ids.viewer_id)).returncode == 3


def test_request_review_json(run, ids):
    result = run("request-review", "--review", str(ids.review_id), "--actor", str(ids.manager_id), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["outcome"] == "queued" and body["pack"]["tenant_review_id"] == ids.review_id


def test_request_review_without_personal_data(run, ids):
    result = run("request-review", "--review", str(ids.review_id), "--actor", str(ids.manager_id), "--no-pii", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pack"]["options"]["include_pii"] is False


def test_status_of_a_failed_pack_shows_the_safe_message(run, pg_url, ids):
    import datetime as dt

    from domain.reasons import USER_MESSAGES, ReasonCode
    from storage import packs

    pack_id = json.loads(run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id), "--json").stdout)["pack"]["id"]
    with runtime.session_factory(pg_url)() as session:
        packs.mark_failed(session, pack_id, ReasonCode.STORAGE_UNAVAILABLE, now=dt.datetime.now(dt.timezone.utc), detail="s3 at 10.0.0.1")
    result = run("status", str(pack_id), "--actor", str(ids.manager_id))
    assert result.returncode == 0
    assert "storage_unavailable" in result.stdout
    assert USER_MESSAGES[ReasonCode.STORAGE_UNAVAILABLE] in result.stdout
    assert "10.0.0.1" not in result.stdout
    assert "include_pii=True" in result.stdout


def test_expire_without_a_terminal_or_with_yes_does_not_ask(run, ids):
    result = run("expire", "999999999", "--actor", str(ids.manager_id), "--yes")
    assert result.returncode == 3


def test_version(run):
    from importlib.metadata import version

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"reviewpacks {version('reviewpacks')}"


def test_an_unmigrated_database_says_what_to_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    env.update(REVIEWPACKS_HOME=str(tmp_path / "home"), COLUMNS="200")
    for args in (("status", "1", "--actor", "1"), ("list", "--tenant", "1", "--actor", "1"), ("seed-demo",), ("prune",),
                 ("request", "--tenant", "1", "--actor", "1")):
        result = _cli(env, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "run `reviewpacks db upgrade`" in result.stderr, (args, result.stderr)
        assert "SELECT" not in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_request_wait_notices_that_no_worker_consumes_the_queue(run, ids):
    started = time.monotonic()
    result = run("request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id), "--wait", "--timeout", "60")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "no worker consumes the review_packs queue" in result.stderr
    assert "celery -A workers.app worker -Q review_packs,maintenance" in result.stderr
    # Noticed within 5 s of the request; the rest is the interpreter starting under load.
    assert elapsed < 15, elapsed


def test_demo_shows_the_error_of_a_worker_that_dies(tmp_path):
    # A worker that cannot start: an interpreter hook that stops only `celery` processes, as a broken
    # import would, with its own message on stderr.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'celery' in sys.orig_argv:\n"
        "    sys.stderr.write('ImportError: cannot import name Settings (simulated broken worker)\\n')\n"
        "    sys.stderr.flush()\n"
        "    os._exit(3)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWPACKS_", "AWS_"))}
    # The embedded default lives in the per-user data directory: give the demo a directory of its own.
    env.update(PYTHONPATH=f"{hooks}{os.pathsep}{ROOT}", COLUMNS="200", XDG_DATA_HOME=str(tmp_path / "data"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "demo", "--findings", "10", "--timeout", "120"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "worker failed" in result.stderr and "status 3" in result.stderr
    assert "simulated broken worker" in result.stderr
    assert time.monotonic() - started < 60


def test_expire_on_a_terminal_asks_first_and_a_no_changes_nothing(cli_env, pg_url, ids):
    import pty

    from sqlalchemy import func, select

    from storage.models import AuditLog

    pack_id = json.loads(_cli(cli_env, "request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id),
                              "--json").stdout)["pack"]["id"]

    def audit_rows() -> int:
        with runtime.session_factory(pg_url)() as session:
            return session.execute(select(func.count()).select_from(AuditLog).where(AuditLog.resource_id == pack_id)).scalar_one()

    before = audit_rows()
    primary, secondary = pty.openpty()
    try:
        os.write(primary, b"n\n")
        result = subprocess.run(
            [sys.executable, "-m", "workers.cli", "expire", str(pack_id), "--actor", str(ids.manager_id)],
            cwd=ROOT, env=cli_env, stdin=secondary, capture_output=True, text=True, timeout=60,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"Expire pack {pack_id}" in result.stdout and "nothing changed" in result.stderr
    assert audit_rows() == before


def test_an_unreachable_database_is_one_line_without_its_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    env.update(REVIEWPACKS_HOME=str(tmp_path), REVIEWPACKS_DATABASE_URL="postgresql+psycopg://app:pa55word@127.0.0.1:9/packs")
    result = _cli(env, "status", "1", "--actor", "1")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "database unavailable" in result.stderr
    assert "pa55word" not in result.stderr and "127.0.0.1" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
