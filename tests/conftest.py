"""Shared fixtures: a real PostgreSQL migrated by Alembic, real Redis, S3 over HTTP, real workers.

PostgreSQL: one database per test session, created fresh and migrated once with
Alembic (never create_all); a module whose beat sweeps every queued pack it finds
gets one of its own (tests/e2e/test_recovery.py). Tests that only need the schema get a connection in
a transaction that is rolled back; flows that involve a worker process commit
and use their own workspaces, so they never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage import db

pytest_plugins = ["tests.support.s3", "tests.support.reliability"]

ROOT = Path(__file__).resolve().parent.parent
# The embedded default lives in the per-user data directory; no test (nor a process a test starts)
# may touch the real one, so the whole session gets a directory of its own.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="reviewpacks-test-data-")
PG_ADMIN_URL = os.environ.get("REVIEWPACKS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REVIEWPACKS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _recreate_database(name: str) -> str:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def migrated_database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head by Alembic, dropped afterwards."""
    url = _recreate_database(name)
    db.upgrade(url)
    try:
        yield url
    finally:
        runtime.dispose_engines(close=True)
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, migrated to head by Alembic."""
    with migrated_database(f"reviewpacks_test_{os.getpid()}") as url:
        yield url


@pytest.fixture
def pg_session(pg_url: str) -> Iterator[Session]:
    """A session whose work is rolled back after the test (commits become savepoints)."""
    engine = runtime.engine_for(pg_url)
    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis_lib.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


@dataclass
class Stack:
    """Everything a flow test needs: settings and environment shared by the test and its workers."""

    settings: Settings
    env: dict[str, str]
    bucket: str
    home: Path

    def client(self, **kwargs):
        from workers.client import ReviewPackClient

        # The suite's clients share the session's engine, as a host application shares its own.
        kwargs.setdefault("engine", runtime.engine_for(self.settings.database_url))
        return ReviewPackClient(self.settings, **kwargs)

    def store(self):
        from storage.artifacts import artifact_store_from_settings

        return artifact_store_from_settings(self.settings)

    def session(self) -> Session:
        return runtime.session_factory(self.settings.database_url)()


def stack_env(*, pg_url: str, redis_url: str, s3_env: dict, bucket: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    env.update(s3_env)
    env.update(
        REVIEWPACKS_HOME=str(home),
        REVIEWPACKS_DATABASE_URL=pg_url,
        REVIEWPACKS_BROKER_URL=redis_url,
        REVIEWPACKS_ARTIFACT_STORE=f"s3://{bucket}/review-packs",
        REVIEWPACKS_TRANSIENT_MAX_RETRIES="2",
        REVIEWPACKS_TRANSIENT_RETRY_BACKOFF_SECONDS="0.5",
        REVIEWPACKS_HEARTBEAT_SECONDS="2",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def stack(pg_url: str, redis_url: str, s3_server, tmp_path_factory) -> Stack:
    # Messages a previous module left behind must not reach this module's workers.
    redis_lib.Redis.from_url(redis_url).flushdb()
    bucket = f"packs-{uuid.uuid4().hex[:12]}"
    home = tmp_path_factory.mktemp("stack")
    (home / "tmp").mkdir()
    # TMPDIR is the workers' own, so a test can prove that no temp file outlives a generation.
    env = stack_env(
        pg_url=pg_url, redis_url=redis_url, s3_env=s3_server.env, bucket=bucket, home=home, TMPDIR=str(home / "tmp")
    )
    settings = Settings.from_env(env)
    os.environ.update(s3_server.env)  # boto3 in this process reads the standard AWS_* variables
    built = Stack(settings=settings, env=env, bucket=bucket, home=home)
    built.store().ensure_ready()
    return built


class Worker:
    """A real `celery worker` process on the test broker."""

    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int = 2, pool: str = "prefork", cwd: Path = ROOT):
        self.env = env
        self.log_path = log_path
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "review_packs,maintenance",
             "-c", str(concurrency), "-P", pool, "-n", self.name, "--loglevel=INFO", "--without-gossip",
             "--without-mingle"],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group, so a test can SIGKILL the whole worker (parent and children).
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Beat:
    """A real `celery beat` process."""

    def __init__(self, env: dict, home: Path):
        self.log_path = home / "beat.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--schedule", str(home / "beat-schedule"),
             "--loglevel=INFO"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory) -> Iterator[Worker]:
    proc = Worker(stack.env, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
