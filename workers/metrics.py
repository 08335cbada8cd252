"""The worker's own Prometheus endpoint: what happened to packs, not to Celery tasks.

Flower's ``/metrics`` counts Celery task events (received, started, succeeded,
failed, runtime) as the broker's event stream shows them, for every worker at
once.  This endpoint counts packs as the pipeline saw them: outcomes with their
reason code, retries by reason, build and upload seconds, rows and bytes written.
A pack that is skipped because another attempt owns it is a successful task to
Flower and an outcome ``skipped`` here.

With the prefork pool the work happens in child processes, so the counters live
in prometheus_client's multiprocess mode: each child writes its values to files
under ``PROMETHEUS_MULTIPROC_DIR`` and the parent's HTTP server sums them.  The
variable must be set before prometheus_client is first imported in any process,
which is why this module imports it only inside functions, and why the parent
sets it in ``worker_init``, before the pool forks its children (and re-chooses
prometheus_client's value class, see :func:`start`).

Nothing here runs unless ``REVIEWPACKS_METRICS_PORT`` is set.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from celery.signals import worker_init, worker_process_shutdown

from reviewpacks import logs, runtime
from reviewpacks.settings import Settings

log = logs.get_logger("reviewpacks.metrics")

MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: small packs take well under a second, the largest ones most of the soft time limit.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800)


def enabled(settings: Settings) -> bool:
    return settings.metrics_port is not None


def start(settings: Settings) -> int | None:
    """Prepare the multiprocess directory and serve /metrics; returns the bound port, or None when off."""
    if not enabled(settings):
        return None
    directory = os.environ.get(MULTIPROC_VAR) or tempfile.mkdtemp(prefix="reviewpacks-metrics-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    # Files a previous worker left behind would be summed into this one's figures.
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_VAR] = directory

    from prometheus_client import CollectorRegistry, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    # The `celery` command loads Flower's command plugin, which imports prometheus_client
    # before any of our code runs, so the value class was chosen without the variable.
    # Metrics look the class up when they are created, and none exist yet: choose again.
    values.ValueClass = values.get_value_class()

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_address, registry=registry)
    port = server.server_address[1]
    log.info("metrics.serving", port=port)
    return port


@functools.cache
def _metrics() -> SimpleNamespace:
    from prometheus_client import Counter, Histogram

    return SimpleNamespace(
        packs=Counter("reviewpacks_packs", "Generation attempts that ended, by outcome and reason code.", ["outcome", "reason"]),
        retries=Counter("reviewpacks_pack_retries", "Attempts handed back for a retry, by reason code.", ["reason"]),
        build=Histogram("reviewpacks_pack_build_seconds", "Seconds from claim to a finished ZIP on disk.", buckets=DURATION_BUCKETS),
        upload=Histogram("reviewpacks_pack_upload_seconds", "Seconds to upload a finished ZIP.", buckets=DURATION_BUCKETS),
        rows=Counter("reviewpacks_pack_rows", "Rows written into ready packs."),
        bytes=Counter("reviewpacks_pack_bytes", "Bytes of ready packs uploaded."),
    )


def record_outcome(settings: Settings, *, outcome: str, reason: str | None, rows: int, size: int, build_seconds: float, upload_seconds: float) -> None:
    if not enabled(settings):
        return
    metrics = _metrics()
    metrics.packs.labels(outcome=outcome, reason=reason or "").inc()
    if outcome == "ready":
        metrics.build.observe(build_seconds)
        metrics.upload.observe(upload_seconds)
        metrics.rows.inc(rows)
        metrics.bytes.inc(size)


def record_retry(settings: Settings, reason: str) -> None:
    if enabled(settings):
        _metrics().retries.labels(reason=reason).inc()


@worker_init.connect
def _serve(**_kwargs) -> None:
    start(runtime.current().settings)


@worker_process_shutdown.connect
def _child_exit(pid: int | None = None, **_kwargs) -> None:
    # Counters and histograms of a dead child stay counted; only live gauges would need
    # its files gone, and there are none.  mark_process_dead keeps the directory tidy anyway.
    if MULTIPROC_VAR in os.environ and "prometheus_client" in sys.modules:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
