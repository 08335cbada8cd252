"""`python -m bench`: generation speed and memory against a floor measured in the same run.

On the local PostgreSQL and Redis and a moto S3 server over HTTP, it measures:

1. the floor a user would otherwise run: `psql -c "\\copy (select <the finding columns>
   from findings where tenant_id=… and status in (…) order by id) to stdout with csv header"
   | gzip -6`, plain columns, the same rows; and, labelled as such, the same pipeline
   running the project's own COPY statement;
2. end to end: request_pack -> a real worker process -> pack ready with the object in S3,
   with personal data included on the plain tenant, and without personal data on a tenant
   of the same size where 5 % of the rows carry personal data in their evidence;
3. the worker's peak RSS at a small and at the full size (fresh worker each);
4. small-pack throughput: many tenants requested at once, 2 worker processes;
5. request_pack latency over many calls, and on the large tenant with 1 and 8 producers;
6. redaction micro-benchmarks: a 1 MB string and a 20,000-key object through the
   redaction policy (both export paths run this one implementation), with and without
   personal data (``--micro-only`` runs just these);
7. with ``--scaling``: two large packs requested at once, on 1 and on 2 worker processes.

It prints one table and writes it to bench/results.md. Timing never fails the
run; a broken pipeline (a pack that does not become ready, packs that differ
for the same fingerprint) does, with exit code 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import psycopg
import redis as redis_lib
from moto.server import ThreadedMotoServer
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.producer import produce  # noqa: E402
from domain import layout, redaction  # noqa: E402
from domain.states import TERMINAL_PACK_STATUSES  # noqa: E402
from reviewpacks import runtime  # noqa: E402
from reviewpacks.settings import Settings  # noqa: E402
from storage import db, packs  # noqa: E402
from storage.artifacts import artifact_store_from_settings  # noqa: E402
from storage.demo_data import add_findings, seed_demo  # noqa: E402
from storage.export import copy_params, findings_copy_sql  # noqa: E402
from storage.models import ReviewPack  # noqa: E402
from workers.client import ReviewPackClient  # noqa: E402


class BenchFailure(Exception):
    pass


class _MicroOnly(Exception):
    """Ends the run after the micro-benchmarks."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Environment:
    def __init__(self, args):
        self.args = args
        self.home = Path(tempfile.mkdtemp(prefix="reviewpacks-bench-"))
        self.database = f"reviewpacks_bench_{os.getpid()}"
        admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()
        self.database_url = args.admin_url.rsplit("/", 1)[0] + f"/{self.database}"
        db.upgrade(self.database_url)
        redis_lib.Redis.from_url(args.redis_url).flushdb()
        self.s3_port = free_port()
        self.s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=self.s3_port, verbose=False)
        self.s3.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
        self.env.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            REVIEWPACKS_HOME=str(self.home),
            REVIEWPACKS_DATABASE_URL=self.database_url,
            REVIEWPACKS_BROKER_URL=args.redis_url,
            REVIEWPACKS_ARTIFACT_STORE=f"s3://bench-{uuid.uuid4().hex[:8]}/packs",
            REVIEWPACKS_S3_ENDPOINT_URL=f"http://127.0.0.1:{self.s3_port}",
            PYTHONPATH=str(ROOT),
        )
        os.environ.update({k: self.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        self.settings = Settings.from_env(self.env)
        self.store = artifact_store_from_settings(self.settings)
        self.store.ensure_ready()
        self.client = ReviewPackClient(self.settings)

    def session(self):
        return runtime.session_factory(self.database_url)()

    def close(self):
        self.s3.stop()
        runtime.dispose_engines(close=True)
        admin = create_engine(self.args.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(self.home, ignore_errors=True)


class Worker:
    def __init__(self, env: Environment, *, pool: str, concurrency: int):
        self.log = env.home / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "review_packs,maintenance",
             "-P", pool, "-c", str(concurrency), "--without-gossip", "--without-mingle", "--loglevel=WARNING",
             "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, env=env.env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        app_ready = False
        while time.monotonic() < deadline and not app_ready:
            if self.process.poll() is not None:
                raise BenchFailure(f"worker exited:\n{self.log.read_text()}")
            # Readiness: the worker answers a control ping.
            app_ready = self._ping(env)
            time.sleep(0.2)
        if not app_ready:
            # A worker that never answered must not outlive the run and take the next run's tasks.
            self.stop()
            raise BenchFailure(f"worker not ready:\n{self.log.read_text()}")

    def _ping(self, env: Environment) -> bool:
        from workers.app import make_app

        app = make_app(env.settings)
        try:
            return bool(app.control.ping(timeout=0.5))
        finally:
            app.close()

    def peak_rss_mb(self) -> float:
        """VmHWM of the process that ran the task (the worker itself with the solo pool)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise BenchFailure("no VmHWM")

    def phases(self) -> str:
        """The worker's own account of its packs: median seconds building the ZIP and uploading it."""
        found = re.findall(r"build_s=([0-9.]+) upload_s=([0-9.]+)", self.log.read_text(errors="replace"))
        if not found:
            return "no pack.ready lines in the worker log"
        build, upload = (statistics.median(float(v) for v in column) for column in zip(*found))
        return f"worker: build {build:.2f} s, upload {upload:.2f} s (medians)"

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def seed_tenant(
    env: Environment, findings: int, *, name: str = "Contoso", personal_share: float = 0.0, evidence: str | None = None
):
    """A tenant with ``findings`` findings; ``evidence`` (JSON text), when given, is every finding's evidence."""
    with env.session() as session:
        ids = seed_demo(session, findings=0, name=name)
        add_findings(session, ids.tenant_id, findings, personal_share=personal_share)
    with psycopg.connect(env_url_plain(env.database_url), autocommit=True) as conn:
        if evidence is not None:
            conn.execute("UPDATE findings SET evidence = %s::jsonb WHERE tenant_id = %s", (evidence, ids.tenant_id))
        conn.execute("VACUUM ANALYZE findings")
    return ids


# The columns a user exporting findings by hand would select (the floor), the same rows.
PLAIN_COLUMNS = (
    "id, finding_type, severity, status, subject_type, subject_external_id, subject_display_name, title, evidence, "
    "first_seen_at, last_seen_at"
)


def plain_statement(tenant_id: int) -> str:
    statuses = ", ".join(f"'{s}'" for s in layout.INCLUDED_FINDING_STATUSES)
    return (
        f"\\copy (select {PLAIN_COLUMNS} from findings where tenant_id={int(tenant_id)} and status in ({statuses}) "
        "order by id) to stdout with csv header"
    )


def env_url_plain(url: str) -> str:
    return url.replace("+psycopg", "")


def floor_seconds(env: Environment, tenant_id: int, *, own: bool = False) -> tuple[float, int]:
    """One run of `psql | gzip -6`; returns the seconds and the size of the gzip output."""
    # The statement goes to psql in a file, which no shell quoting can alter.
    script = env.home / "floor.sql"
    if own:
        with psycopg.connect(env_url_plain(env.database_url)) as conn:
            statement = psycopg.ClientCursor(conn).mogrify(findings_copy_sql(), copy_params(tenant_id, True))
        script.write_text(statement + ";\n")
    else:
        script.write_text(plain_statement(tenant_id) + "\n")
    url = env_url_plain(env.database_url)
    out = env.home / "floor.csv.gz"
    started = time.perf_counter()
    subprocess.run(
        ["bash", "-o", "pipefail", "-c", f'psql "{url}" -X -q -f "{script}" | gzip -6 > "{out}"'],
        check=True,
    )
    return time.perf_counter() - started, out.stat().st_size


def wait_ready(env: Environment, pack_id: int, actor: int, timeout: float = 3600):
    """The pack's view once it is final. While the worker builds, the wait reads the status column
    alone on one connection every 20 ms: the full view (its access check, the ORM) read that often
    took CPU from the two cores the build runs on: 0.3 to 0.5 s more for a 1M-findings PII-off
    pack, end to end (bench/results.md)."""
    deadline = time.monotonic() + timeout
    final = tuple(str(s) for s in TERMINAL_PACK_STATUSES)
    with psycopg.connect(env_url_plain(env.database_url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(f"SELECT status FROM {ReviewPack.__tablename__} WHERE id = %s", (pack_id,)).fetchone()
            if row is not None and row[0] in final:
                view = env.client.get_pack(pack_id, actor)
                if view.status != "ready":
                    raise BenchFailure(f"pack {pack_id} ended {view.status} ({view.reason_code})")
                return view
            time.sleep(0.02)
    raise BenchFailure(f"pack {pack_id} not ready after {timeout}s")


def expire(env: Environment, pack_id: int) -> None:
    # Through the one owner of pack state, as an actor's expire would, so the next run generates anew.
    with env.session() as session:
        packs.expire(session, env.store, [pack_id], now=dt.datetime.now(dt.timezone.utc), by="benchmark")


def end_to_end(env: Environment, ids, runs: int, *, include_pii: bool = True) -> tuple[list[float], object]:
    times, digests, view = [], set(), None
    for _ in range(runs):
        started = time.perf_counter()
        result = env.client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=include_pii)
        if result.outcome != "queued":
            raise BenchFailure(f"expected a new generation, got {result.outcome}")
        view = wait_ready(env, result.pack.id, ids.manager_id)
        times.append(time.perf_counter() - started)
        digests.add(content_digest(env, view.id))
        expire(env, view.id)
    if len(digests) != 1:
        raise BenchFailure(f"the same fingerprint gave {len(digests)} different contents")
    return times, view


def content_digest(env: Environment, pack_id: int) -> str:
    """metadata.json's content_sha256: equal for every pack of one fingerprint (the pack's own
    identity and generation time make each archive's bytes differ)."""
    import zipfile

    with env.session() as session:
        key = session.get(ReviewPack, pack_id).file_path
    with tempfile.TemporaryFile() as copy:
        with env.store.open(key) as body:
            shutil.copyfileobj(body, copy, 1 << 20)
        copy.seek(0)
        with zipfile.ZipFile(copy) as archive:
            return json.loads(archive.read("metadata.json"))["content_sha256"]


def peak_rss(env: Environment, ids) -> float:
    worker = Worker(env, pool="solo", concurrency=1)
    try:
        result = env.client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=False)
        view = wait_ready(env, result.pack.id, ids.manager_id)
        expire(env, view.id)
        return worker.peak_rss_mb()
    finally:
        worker.stop()


def wait_all_ready(env: Environment, pack_ids: list[int], timeout: float = 600) -> None:
    """Waits until every pack is final, and fails the run unless all are ready.

    Like :func:`wait_ready`, it reads on one connection every 20 ms, and only the packs not yet
    final: a fresh ORM session and query for all 200 ids at each look cost the benchmark's
    process as much CPU as a fifth of the packs' own generation, taken from the same two cores.
    """
    pending = list(pack_ids)
    final = [str(s) for s in TERMINAL_PACK_STATUSES]
    deadline = time.monotonic() + timeout
    with psycopg.connect(env_url_plain(env.database_url), autocommit=True) as conn:
        while pending and time.monotonic() < deadline:
            done = dict(conn.execute(
                f"SELECT id, status FROM {ReviewPack.__tablename__} WHERE id = ANY(%s) AND status = ANY(%s)",
                (pending, final),
            ).fetchall())
            for pack_id, status in done.items():
                if status != "ready":
                    raise BenchFailure(f"small pack {pack_id} ended {status}")
            pending = [pack_id for pack_id in pending if pack_id not in done]
            time.sleep(0.02)
    if pending:
        raise BenchFailure(f"{len(pending)} small packs not ready")


def small_packs(env: Environment, tenants: int, findings: int, runs: int) -> tuple[list[float], list]:
    """Packs per second for ``tenants`` small tenants requested at once, ``runs`` times.

    Between runs every pack is expired, so each run generates all of them anew; the last
    run's packs stay ready for the latency measurement that follows.
    """
    with env.session() as session:
        seeded = []
        for i in range(tenants):
            ids = seed_demo(session, findings=0, name=f"Small{i}")
            add_findings(session, ids.tenant_id, findings, seed=i)
            seeded.append(ids)
    rates = []
    worker = Worker(env, pool="prefork", concurrency=2)
    try:
        for run in range(runs):
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(lambda ids: env.client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id), seeded))
            if any(r.outcome != "queued" for r in results):
                raise BenchFailure("expected every small pack to be generated anew")
            wait_all_ready(env, [r.pack.id for r in results])
            rates.append(tenants / (time.perf_counter() - started))
            if run < runs - 1:
                with env.session() as session:
                    packs.expire(session, env.store, [r.pack.id for r in results],
                                 now=dt.datetime.now(dt.timezone.utc), by="benchmark")
    finally:
        worker.stop()
    return rates, seeded


def request_latency(env: Environment, seeded: list, calls: int) -> list[float]:
    latencies = []
    for i in range(calls):
        ids = seeded[i % len(seeded)]
        started = time.perf_counter()
        result = env.client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
        latencies.append((time.perf_counter() - started) * 1000)
        if result.outcome != "reused_ready":
            raise BenchFailure(f"expected reuse, got {result.outcome}")
    return latencies


MICRO_TARGET_S = 1.0
PERSONAL_SHARE = 0.05


def micro_inputs() -> dict[str, object]:
    """The inputs the redaction policy must handle in under a second each."""
    mixed = (
        "Guest alias_contoso.com#EXT#@fabrikam.onmicrosoft.com signed in from 203.0.113.7 and 2001:db8::7; "
        "call +44 20 7946 0958; token eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln; "
        "AccountKey=abc==; https://a.blob.core.windows.net/c?sv=1&sig=x; role Global Administrator. "
    )
    wide = {}
    for i in range(20_000):
        wide[f"setting{i:05d}"] = ("enabled", f"owner{i}@contoso.com", f"10.0.{i % 256}.{i % 200}", "Jane Doe")[i % 4]
    return {
        "1 MB string, mixed personal data and secrets": (mixed * (1_000_000 // len(mixed) + 1))[:1_000_000],
        "1 MB string, one run of address characters": ("a." * 500_000),
        "20,000-key object": wide,
    }


def _best_of_three(call, *args) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        call(*args)
        best = min(best, time.perf_counter() - started)
    return best


def _python_redaction(value: object, include_pii: bool) -> None:
    if isinstance(value, str):
        redaction.redact_text(value, include_pii=include_pii)
    else:
        redaction.scrub(value, include_pii=include_pii)


def redaction_micro(env: Environment) -> list[tuple[str, str, str]]:
    """Each input through the policy, PII off and on; the best of three runs each.

    Both export paths run this implementation: the COPY path passes the rows that need it
    through the same functions (storage/export.py).
    """
    rows = []
    for name, value in micro_inputs().items():
        for include_pii in (False, True):
            seconds = _best_of_three(_python_redaction, value, include_pii)
            verdict = "ok" if seconds < MICRO_TARGET_S else "OVER"
            rows.append((
                f"redact {name}, PII {'on' if include_pii else 'off'}",
                f"{seconds:.3f} s",
                f"both paths; target < {MICRO_TARGET_S:.0f} s: {verdict}",
            ))
    return rows


def personal_data_off(env: Environment, personal, runs: int) -> list[tuple[str, str, str]]:
    """The tenant whose evidence holds personal data, packed without it, against its own floor."""
    plain = [floor_seconds(env, personal.tenant_id)[0] for _ in range(runs)]
    worker = Worker(env, pool="prefork", concurrency=2)
    try:
        e2e, view = end_to_end(env, personal, runs, include_pii=False)
    finally:
        worker.stop()
    floor, ours = statistics.median(plain), statistics.median(e2e)
    return [
        (f"floor on the tenant with {PERSONAL_SHARE:.0%} personal rows (median)", f"{floor:.2f} s",
         f"runs {', '.join(f'{v:.2f}' for v in plain)}"),
        (f"end to end, {view.rows_written:,} rows, {PERSONAL_SHARE:.0%} personal, PII off (median)", f"{ours:.2f} s",
         f"runs {', '.join(f'{v:.2f}' for v in e2e)}; worker -c 2; {worker.phases()}"),
        ("end to end PII off / floor", f"{ours / floor:.2f}x", "target <= 1.2x"),
    ]


# Evidence one rule's findings share: a policy's conditions, 2.2 KB, which the first look matches
# ("authentication") and the policy changes without personal data (free text under unknown keys).
SHARED_EVIDENCE = json.dumps({
    "policy": {
        "id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "state": "enabled",
        "conditions": {
            f"rule_{i}": {
                "status": "enabled",
                "count": i,
                "description": f"Requires multifactor authentication for group {i} when signing in from an unmanaged device",
            }
            for i in range(14)
        },
    }
})


def evidence_shapes(env: Environment, findings: int, runs: int) -> list[tuple[str, str, str]]:
    """Two shapes of evidence the demo data does not have, each against its own floor: findings
    without evidence, and findings that all carry one long evidence value. No target: they show
    that neither shape sends every row through the policy."""
    shapes = [
        ("no evidence ({})", seed_tenant(env, findings, name="Bare", evidence="{}"), (False,)),
        ("one shared 2.2 KB evidence", seed_tenant(env, findings // 5, name="Shared", evidence=SHARED_EVIDENCE), (True, False)),
    ]
    rows = []
    for label, ids, modes in shapes:
        plain = [floor_seconds(env, ids.tenant_id)[0] for _ in range(runs)]
        floor = statistics.median(plain)
        rows.append((f"floor, {label} (median)", f"{floor:.2f} s", f"runs {', '.join(f'{v:.2f}' for v in plain)}"))
        for include_pii in modes:
            worker = Worker(env, pool="prefork", concurrency=2)
            try:
                e2e, view = end_to_end(env, ids, runs, include_pii=include_pii)
            finally:
                worker.stop()
            ours = statistics.median(e2e)
            rows.append((
                f"end to end, {view.rows_written:,} rows, {label}, PII {'on' if include_pii else 'off'} (median)",
                f"{ours:.2f} s ({ours / floor:.2f}x)",
                f"runs {', '.join(f'{v:.2f}' for v in e2e)}; {worker.phases()}; no target",
            ))
    return rows


def scaling(env: Environment, tenants: list) -> list[tuple[str, str, str]]:
    """Two large packs requested at once: the time until both are ready, on 1 and on 2 worker processes."""
    rows = []
    for processes in (1, 2):
        worker = Worker(env, pool="prefork", concurrency=processes)
        try:
            started = time.perf_counter()
            results = [env.client.request_pack(tenant_id=t.tenant_id, actor_id=t.manager_id, include_pii=True) for t in tenants]
            views = [wait_ready(env, r.pack.id, t.manager_id) for r, t in zip(results, tenants)]
            elapsed = time.perf_counter() - started
        finally:
            worker.stop()
        for view in views:
            expire(env, view.id)
        rows.append((f"two large packs at once, {processes} worker process{'es' if processes > 1 else ''}", f"{elapsed:.2f} s",
                     f"{sum(v.rows_written for v in views):,} rows in all"))
    return rows


def concurrent_latency(env: Environment, ids, producers: int, calls: int, expected: str) -> tuple[list[float], float]:
    """Latencies of ``calls`` requests shared by ``producers`` processes calling at once, and the load average."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=producers, mp_context=context) as pool:
        # Every producer starts at the same moment, once all of them have started and warmed up.
        start_at = time.time() + 5 + producers
        futures = [
            pool.submit(produce, env.env, ids.tenant_id, ids.manager_id, max(1, calls // producers), start_at)
            for _ in range(producers)
        ]
        results = [future.result() for future in futures]
    unexpected = {outcome for _, outcomes in results for outcome in outcomes} - {expected}
    if unexpected:
        raise BenchFailure(f"expected {expected}, got {', '.join(sorted(unexpected))}")
    return [ms for latencies, _ in results for ms in latencies], os.getloadavg()[0]


def big_tenant_latency(env: Environment, ids, findings: int, calls: int) -> list[tuple[str, str, str]]:
    """request_pack on a large tenant, answered by an active pack and then by a ready one, with 1 and 8 producers."""
    queued = env.client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    if queued.outcome != "queued":
        raise BenchFailure(f"expected a new generation, got {queued.outcome}")
    rows = []
    measured = [(outcome, producers) for outcome in ("reused_active", "reused_ready") for producers in (1, 8)]
    for outcome, producers in measured:
        if outcome == "reused_ready" and producers == 1:
            # No worker ran so far: the pack stayed queued while the active path was measured. The
            # worker takes it at once, so a prefork parent answers the readiness ping meanwhile.
            worker = Worker(env, pool="prefork", concurrency=1)
            try:
                wait_ready(env, queued.pack.id, ids.manager_id)
            except BenchFailure:
                # The run's folder goes with the run: the worker's own account of the failure is kept here.
                print(worker.log.read_text()[-4000:], file=sys.stderr)
                raise
            finally:
                worker.stop()
        latencies, load = concurrent_latency(env, ids, producers, calls, outcome)
        rows.append(
            (
                f"request_pack, {findings:,} findings, {outcome}, {producers} producer{'s' if producers > 1 else ''}",
                f"p95 {percentile(latencies, 95):.1f} ms",
                f"p50 {percentile(latencies, 50):.1f} ms over {len(latencies):,} calls; load {load:.1f}; target p95 <= 15 ms",
            )
        )
    expire(env, queued.pack.id)
    return rows


class Rows(list):
    """The table's rows, each printed as it is measured: a long run shows its figures as it goes."""

    def append(self, row) -> None:
        print(" | ".join(row), flush=True)
        super().append(row)

    def extend(self, rows) -> None:
        for row in rows:
            self.append(row)

    def __iadd__(self, rows):
        self.extend(rows)
        return self


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def machine() -> str:
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores, {memory / 1024 / 1024:.1f} GiB, Python {platform.python_version()}, PostgreSQL local"


def main(argv=None) -> int:
    import logging

    # moto's HTTP server logs every request; the figures are what this command is for.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=1_000_000)
    parser.add_argument("--small-rss-findings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small-tenants", type=int, default=200)
    parser.add_argument("--small-findings", type=int, default=1_000)
    parser.add_argument("--request-calls", type=int, default=1_000)
    parser.add_argument("--skip-small", action="store_true", help="only the large pack (for the 10M run)")
    parser.add_argument("--skip-personal", action="store_true", help="no PII-off tenant (for the 10M run)")
    parser.add_argument("--scaling", action="store_true", help="also two large packs at once on 1 and 2 processes")
    parser.add_argument(
        "--evidence-shapes", action="store_true",
        help="also findings without evidence, and findings sharing one long evidence (a fifth as many)",
    )
    parser.add_argument("--micro-only", action="store_true", help="only the redaction micro-benchmarks")
    parser.add_argument(
        "--requests-only", action="store_true", help="only request_pack latency on the large tenant (1 and 8 producers)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--admin-url", default=os.environ.get("REVIEWPACKS_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("REVIEWPACKS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"))
    args = parser.parse_args(argv)

    env = Environment(args)
    rows: list[tuple[str, str, str]] = Rows()
    try:
        rows.extend(redaction_micro(env))
        if args.micro_only:
            raise _MicroOnly
        print(f"seeding {args.findings:,} findings ...", flush=True)
        big = seed_tenant(env, args.findings)
        if args.requests_only:
            rows += big_tenant_latency(env, big, args.findings, args.request_calls)
            return _report(args, argv, rows)
        small = seed_tenant(env, args.small_rss_findings, name="Small")
        personal = None
        if not args.skip_personal:
            print(f"seeding {args.findings:,} findings, {PERSONAL_SHARE:.0%} with personal data ...", flush=True)
            personal = seed_tenant(env, args.findings, name="Personal", personal_share=PERSONAL_SHARE)

        plain = [floor_seconds(env, big.tenant_id) for _ in range(args.runs)]
        own = [floor_seconds(env, big.tenant_id, own=True) for _ in range(args.runs)]
        worker = Worker(env, pool="prefork", concurrency=2)
        try:
            e2e, view = end_to_end(env, big, args.runs)
        finally:
            worker.stop()
        floor = statistics.median(t for t, _ in plain)
        gzip_size = statistics.median(size for _, size in plain)
        ours = statistics.median(e2e)
        runs = lambda values: f"runs {', '.join(f'{v:.2f}' for v in values)}"  # noqa: E731
        rows.append(("floor: psql \\copy plain columns \\| gzip -6 (median)", f"{floor:.2f} s", runs(t for t, _ in plain)))
        rows.append(("floor, the project's own COPY statement \\| gzip -6 (median)", f"{statistics.median(t for t, _ in own):.2f} s",
                     runs(t for t, _ in own)))
        rows.append((f"end to end, {view.rows_written:,} rows, PII on (median)", f"{ours:.2f} s",
                     f"{runs(e2e)}; worker -c 2; {worker.phases()}"))
        target = "target <= 1.1x" if args.findings >= 10_000_000 else "target <= 1.0x (stretch 0.75x)"
        rows.append(("end to end / floor", f"{ours / floor:.2f}x", target))
        rows.append(("pack size / gzip -6 output", f"{view.file_size / gzip_size:.2f}x",
                     f"{view.file_size / 1e6:.1f} MB / {gzip_size / 1e6:.1f} MB; target <= 1.10x"))
        if personal is not None:
            rows += personal_data_off(env, personal, args.runs)
            if args.scaling:
                rows += scaling(env, [big, personal])
        if args.evidence_shapes:
            rows += evidence_shapes(env, args.findings, args.runs)

        rss_small = peak_rss(env, small)
        rss_big = peak_rss(env, big)
        rows.append((f"worker peak RSS at {args.small_rss_findings:,} findings", f"{rss_small:.0f} MB", "VmHWM, solo pool"))
        rows.append((f"worker peak RSS at {args.findings:,} findings", f"{rss_big:.0f} MB", f"+{rss_big - rss_small:.0f} MB; target <= 150 MB, <= +30 MB"))

        if not args.skip_small:
            rates, seeded = small_packs(env, args.small_tenants, args.small_findings, args.runs)
            rows.append((f"small packs: {args.small_tenants} x {args.small_findings:,} findings, 2 processes (median)",
                         f"{statistics.median(rates):.1f} packs/s",
                         f"runs {', '.join(f'{r:.1f}' for r in rates)}; target >= 40"))
            latencies = request_latency(env, seeded, args.request_calls)
            rows.append((f"request_pack over {args.request_calls:,} calls", f"p95 {percentile(latencies, 95):.1f} ms",
                         f"p50 {percentile(latencies, 50):.1f} ms; target p95 <= 15 ms"))
        rows += big_tenant_latency(env, big, args.findings, args.request_calls)
    except _MicroOnly:
        pass
    except BenchFailure as exc:
        # The run's folder goes with the run: the workers' own account of the failure is kept here.
        for log in sorted(env.home.glob("worker-*.log")):
            print(f"--- {log.name}\n{log.read_text()[-6000:]}", file=sys.stderr)
        print(f"bench: pipeline broken: {exc}", file=sys.stderr)
        return 1
    finally:
        env.close()
    return _report(args, argv, rows)


def _report(args, argv, rows: list[tuple[str, str, str]]) -> int:
    width = max(len(r[0]) for r in rows)
    table = [f"| {'measure'.ljust(width)} | value | notes |", f"| {'-' * width} | --- | --- |"]
    table += [f"| {name.ljust(width)} | {value} | {notes} |" for name, value, notes in rows]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = "\n".join(
        ["# Benchmark results", "", f"{stamp}; {machine()}; `python -m bench {' '.join(argv or sys.argv[1:])}`", "", *table, ""]
    )
    print(report)
    args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
