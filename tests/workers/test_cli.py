"""`reviewpacks` as a user runs it: a subprocess, real PostgreSQL and Redis, exit codes per the contract."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from storage import db
from storage.demo_data import seed_demo
from tests.conftest import ROOT

CLI_REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def run(pg_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    env.update(REVIEWPACKS_DATABASE_URL=pg_url, REVIEWPACKS_BROKER_URL=CLI_REDIS, REVIEWPACKS_HOME=str(tmp_path), COLUMNS="200")

    def invoke(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    return invoke


@pytest.fixture
def ids(pg_url):
    with db.session_factory(pg_url)() as session:
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
        (("request", "--tenant", "1"), 2, "Missing option"),
        (("status", "not-a-number", "--actor", "1"), 2, "valid integer"),
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
