"""`reviewpacks`: the command line over the same client and settings.

Exit codes: 0 ok, 2 usage or invalid request, 3 not found, 4 forbidden, 5 conflict (a generation
with other options is in progress for the tenant), 1 any other failure.
A failure prints one line on stderr; `--debug` adds the traceback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from reviewpacks.settings import Settings, SettingsError

if TYPE_CHECKING:
    from workers.client import PackView, ReviewPackClient

EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_FORBIDDEN, EXIT_CONFLICT = 0, 1, 2, 3, 4, 5

WORKER_COMMAND = "celery -A workers.app worker -Q review_packs,maintenance"
# How long a pack may sit in `queued` before the CLI asks the broker whether any worker consumes
# the queue; together with the one-second inspect round trip, a missing worker is reported within 5 s.
CONSUMER_CHECK_AFTER_SECONDS = 1.0
CONSUMER_CHECK_EVERY_SECONDS = 5.0
INSPECT_TIMEOUT_SECONDS = 1.0
# The demo's own worker may take this long to start before its absence is an error.
DEMO_WORKER_START_SECONDS = 90.0

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Deterministic review pack exports."
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
storage_app = typer.Typer(no_args_is_help=True, help="Artifact store.")
app.add_typer(storage_app, name="storage")
console = Console()
err = Console(stderr=True)


class _State:
    debug = False


state = _State()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"reviewpacks {version('reviewpacks')}")
        except PackageNotFoundError:
            console.print("reviewpacks (not installed)")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of a failure."),
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    state.debug = debug
    # The one line of a failure says it all; the structured log lines behind it show only with --debug.
    handler = logging.StreamHandler()
    handler.setLevel(logging.DEBUG if debug else logging.CRITICAL)
    logging.getLogger().addHandler(handler)


def _fail(code: int, label: str, message: str) -> typer.Exit:
    """One line on stderr, the traceback only with --debug; returns the Exit to raise."""
    if state.debug and sys.exc_info()[0] is not None:
        err.print(traceback.format_exc(), markup=False, highlight=False)
    err.print(f"[red]{label}:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise _fail(EXIT_INVALID, "configuration error", str(exc)) from None
    settings.ensure_embedded_dirs()
    return settings


def _client(settings: Settings | None = None) -> ReviewPackClient:
    """A client on a database migrated to this version; otherwise one line that says what to run."""
    from storage import db
    from workers.client import ReviewPackClient

    client = ReviewPackClient(settings or _settings())
    with _errors():
        db.check_schema(client.engine)
    return client


def _endpoint(url: str) -> str:
    from workers.dispatch import broker_label

    return broker_label(url)


@contextmanager
def _errors() -> Iterator[None]:
    """Map the client's errors to exit codes and one clear line on stderr."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from storage.db import SchemaNotReady
    from workers.client import Conflict, DispatchFailed, Forbidden, InvalidRequest, NotFound, WaitTimeout

    try:
        yield
    except NotFound as exc:
        raise _fail(EXIT_NOT_FOUND, "not found", str(exc)) from None
    except Forbidden as exc:
        raise _fail(EXIT_FORBIDDEN, "forbidden", str(exc)) from None
    except InvalidRequest as exc:
        raise _fail(EXIT_INVALID, "invalid request", str(exc)) from None
    except Conflict as exc:
        raise _fail(EXIT_CONFLICT, "conflict", str(exc)) from None
    except WaitTimeout as exc:
        raise _fail(EXIT_FAILURE, "timed out", str(exc)) from None
    except DispatchFailed as exc:
        raise _fail(EXIT_FAILURE, "not dispatched", str(exc)) from None
    except SchemaNotReady as exc:
        raise _fail(EXIT_FAILURE, "database not ready", str(exc)) from None
    except (OperationalError, ProgrammingError) as exc:
        # Never the driver's text: it carries the SQL, and often the host and user.
        if _looks_unmigrated(exc):
            raise _fail(EXIT_FAILURE, "database not ready", "tables are missing: run `reviewpacks db upgrade`") from None
        raise _fail(EXIT_FAILURE, "database unavailable", "the database could not be reached or refused the query") from None


def _looks_unmigrated(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _tenant_id(client: ReviewPackClient, tenant: str, actor: int) -> int:
    """`--tenant` takes the tenant's id or its external UUID."""
    if tenant.strip().isdigit():
        return int(tenant)
    try:
        external = uuid.UUID(tenant.strip())
    except ValueError:
        raise _fail(EXIT_INVALID, "invalid request", f"--tenant must be a tenant id or its external UUID, got {tenant!r}") from None
    return client.tenant_id_for(external, actor)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _pack_dict(view: PackView) -> dict[str, Any]:
    from domain.reasons import USER_MESSAGES, ReasonCode

    data = dataclasses.asdict(view)
    for key, value in data.items():
        if isinstance(value, dt.datetime):
            data[key] = value.isoformat()
    data["status"] = str(view.status)
    data["failure_message"] = USER_MESSAGES.get(ReasonCode(view.reason_code)) if view.reason_code in set(ReasonCode) else None
    return data


def _print_json(value: object) -> None:
    # Plain print: rich would wrap long lines and colour the keys.
    print(json.dumps(value, indent=2, sort_keys=True))


def _status_table(view: PackView) -> Table:
    from domain.reasons import USER_MESSAGES, ReasonCode

    table = Table(show_header=False, box=None)
    options = ", ".join(f"{k}={v}" for k, v in sorted(view.options.items())) or "-"
    rows: list[tuple[str, object]] = [
        ("pack", view.id),
        ("kind", view.kind),
        ("status", view.status),
        ("tenant", view.tenant_id),
        ("review", view.tenant_review_id if view.tenant_review_id is not None else "-"),
        ("options", options),
        ("rows", view.rows_written),
        ("bytes", view.file_size if view.file_size is not None else view.bytes_written),
        ("sha256", view.sha256 or "-"),
        ("fingerprint", view.fingerprint or "-"),
        ("created at", _iso(view.created_at)),
        ("generated at", _iso(view.generated_at) or "-"),
        ("expires at", _iso(view.expires_at) or "-"),
        ("expired at", _iso(view.expired_at) or "-"),
    ]
    if view.dispatch_pending_since:
        rows.append(("dispatch", f"awaiting the broker since {_iso(view.dispatch_pending_since)}; sent again automatically"))
    freshness = (view.summary or {}).get("data_freshness") or {}
    if view.summary.get("data_as_of"):
        rows.append(("data as of", view.summary["data_as_of"]))
    for source, entry in sorted(freshness.items()):
        if isinstance(entry, dict):
            rows.append((f"  {source}", f"{entry.get('status', '-')} (as of {entry.get('as_of') or '-'})"))
    if view.reason_code:
        message = USER_MESSAGES.get(ReasonCode(view.reason_code)) if view.reason_code in set(ReasonCode) else None
        rows.append(("reason", view.reason_code))
        rows.append(("what happened", message or "-"))
    for label, value in rows:
        table.add_row(label, escape(str(value)))
    return table


class NoConsumer(Exception):
    """No worker answered for the generation queue."""


class WorkerDied(Exception):
    """The worker that the demo started exited."""

    def __init__(self, code: int | None, output: str):
        self.code, self.output = code, output
        super().__init__(f"the worker exited with status {code}")


def _queue_has_consumer(settings: Settings) -> bool | None:
    """Ask the broker whether a worker consumes the generation queue; None when it cannot be asked."""
    from workers.app import make_app
    from workers.client import GENERATE_QUEUE

    celery_app = make_app(settings)
    try:
        replies = celery_app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).active_queues() or {}
    except Exception:  # noqa: BLE001 - a transport without broadcast support cannot tell; keep waiting
        return None
    finally:
        celery_app.close()
    return any(queue.get("name") == GENERATE_QUEUE for queues in replies.values() for queue in queues or [])


def _liveness_check(
    settings: Settings, *, worker: subprocess.Popen[bytes] | None = None, worker_log: Path | None = None
) -> Callable[[PackView], None]:
    """A progress hook that notices a pack no worker will take: no consumer, or the demo's worker gone."""
    started = time.monotonic()
    next_check = started + CONSUMER_CHECK_AFTER_SECONDS

    def check(view: PackView) -> None:
        nonlocal next_check
        if worker is not None and worker.poll() is not None:
            output = worker_log.read_text(errors="replace") if worker_log and worker_log.exists() else ""
            raise WorkerDied(worker.returncode, output)
        now = time.monotonic()
        if view.status != "queued" or now < next_check:
            return
        next_check = now + CONSUMER_CHECK_EVERY_SECONDS
        if _queue_has_consumer(settings) is False:
            if worker is not None and now - started < DEMO_WORKER_START_SECONDS:
                return  # the demo's own worker is still starting
            raise NoConsumer()

    return check


def _wait_with_progress(
    client: ReviewPackClient, pack_id: int, actor: int, timeout: float, liveness: Callable[[PackView], None]
) -> PackView:
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        TextColumn("{task.fields[rows]} rows, {task.fields[nbytes]} bytes"),
        TimeElapsedColumn(),
        # stderr, so that stdout carries only the result (and nothing but JSON with --json).
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task("pack", total=None, state="queued", rows=0, nbytes=0)

        def update(view: PackView) -> None:
            total = view.summary.get("counts", {}).get("findings", {}).get("total") if view.summary else None
            progress.update(
                task,
                state=str(view.status),
                rows=view.rows_written,
                nbytes=view.bytes_written,
                total=total,
                completed=view.rows_written if total else None,
            )
            liveness(view)

        view = client.wait(pack_id, actor, timeout=timeout, on_progress=update)
        if view.status == "ready":
            progress.update(task, total=1, completed=1)
        return view


def _finish_wait(client: ReviewPackClient, view: PackView, actor: int, timeout: float, as_json: bool) -> None:
    """The shared tail of `request --wait` and `request-review --wait`."""
    settings = client.settings
    if not view.is_final:
        try:
            view = _wait_with_progress(client, view.id, actor, timeout, _liveness_check(settings))
        except NoConsumer:
            raise _fail(
                EXIT_FAILURE,
                "no worker",
                f"no worker consumes the review_packs queue at {_endpoint(settings.broker_url)}; pack {view.id} stays "
                f"queued until one starts: {WORKER_COMMAND}",
            ) from None
    if view.status != "ready":
        from domain.reasons import USER_MESSAGES, ReasonCode

        message = USER_MESSAGES.get(ReasonCode(view.reason_code)) if view.reason_code in set(ReasonCode) else None
        if as_json:
            _print_json({"pack": _pack_dict(view)})
        raise _fail(EXIT_FAILURE, f"pack {view.id} {view.status}", message or view.reason_code or "")
    location = client.download_url(view.id, actor)
    if as_json:
        _print_json({"pack": _pack_dict(view), "url": location})
        return
    console.print(f"ready: {view.file_size} bytes, sha256 {view.sha256}")
    console.print(location, soft_wrap=True, markup=False, highlight=False)


REQUEST_MESSAGES = {
    "queued": "pack {id} queued for generation",
    "reused_ready": "pack {id} already available for the same data; no new generation was started",
    "reused_active": "pack {id} is already being generated for the same data",
}


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations."""
    from storage import db

    settings = _settings()
    with _errors():
        db.upgrade(settings.database_url, revision)
    console.print(f"database upgraded to {revision}")


@storage_app.command("init")
def storage_init() -> None:
    """Create and configure the bucket (or the local folder), then verify what the provider really does.

    Every line names a check and its outcome.  A bucket API the provider does not implement
    is a warning saying what stands in for it; the exit code is 0 when the store accepts an
    object and refuses anonymous reads, 1 when privacy could not be verified or the store
    cannot be reached ("storage unavailable").
    """
    from storage.artifacts import ArtifactStoreError, StorageUnavailable, artifact_store_from_settings

    settings = _settings()
    try:
        report = artifact_store_from_settings(settings).initialize()
    except StorageUnavailable as exc:
        err.print(f"[red]storage unavailable:[/red] {exc}")
        raise typer.Exit(EXIT_FAILURE) from None
    except ArtifactStoreError as exc:
        err.print(f"[red]storage refused:[/red] {exc}")
        raise typer.Exit(EXIT_FAILURE) from None
    colours = {"ok": "green", "warning": "yellow", "failed": "red"}
    for check in report.checks:
        console.print(f"[{colours[check.status]}]{check.status:<7}[/] {escape(check.name)}: {escape(check.detail)}", soft_wrap=True)
    if not report.ok:
        err.print("[red]storage init failed:[/red] the store is not verified private and usable")
        raise typer.Exit(EXIT_FAILURE)
    console.print(f"artifact store ready ({len(report.warnings)} warning(s))")


@app.command("seed-demo")
def seed_demo(findings: int = typer.Option(250, min=0, help="Number of findings to create.")) -> None:
    """Create a demo workspace, tenant, users, findings, reports, operations and a published review."""
    from reviewpacks.runtime import engine_for, session_factory
    from storage import db
    from storage.demo_data import seed_demo as seed

    settings = _settings()
    with _errors():
        db.check_schema(engine_for(settings.database_url))
        with session_factory(settings.database_url)() as session:
            ids = seed(session, findings=findings)
    console.print(
        f"workspace {ids.workspace_id}, tenant {ids.tenant_id}, manager (actor) {ids.manager_id}, "
        f"viewer {ids.viewer_id}, published review {ids.review_id}"
    )


TENANT_HELP = "Tenant id, or the tenant's external UUID."
JSON_HELP = "Print JSON instead of text."


@app.command("request")
def request(
    tenant: str = typer.Option(..., "--tenant", help=TENANT_HELP),
    actor: int = typer.Option(..., "--actor", help="Acting user id."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Replace personal data with a placeholder."),
    no_operations: bool = typer.Option(False, "--no-operations", help="Leave operations.csv out."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the pack, showing progress."),
    timeout: float = typer.Option(600, help="Seconds to wait with --wait."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Request a tenant review pack."""
    client = _client()
    with client, _errors():
        result = client.request_pack(
            tenant_id=_tenant_id(client, tenant, actor),
            actor_id=actor,
            include_pii=False if no_pii else None,
            include_operations=False if no_operations else None,
        )
        _report_request(client, result, actor, wait, timeout, as_json)


def _report_request(client: ReviewPackClient, result: Any, actor: int, wait: bool, timeout: float, as_json: bool) -> None:
    if not wait:
        if as_json:
            _print_json({"outcome": str(result.outcome), "pack": _pack_dict(result.pack)})
        else:
            console.print(REQUEST_MESSAGES[result.outcome].format(id=result.pack.id))
        return
    if not as_json:
        console.print(REQUEST_MESSAGES[result.outcome].format(id=result.pack.id))
    _finish_wait(client, result.pack, actor, timeout, as_json)


@app.command("request-review")
def request_review(
    review: int = typer.Option(..., "--review", help="Published tenant review id."),
    actor: int = typer.Option(..., "--actor", help="Acting user id."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Replace personal data with a placeholder."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the pack, showing progress."),
    timeout: float = typer.Option(600, help="Seconds to wait with --wait."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Request a pack derived from a published tenant review."""
    client = _client()
    with client, _errors():
        result = client.request_review_pack(review, actor, include_pii=False if no_pii else None)
        _report_request(client, result, actor, wait, timeout, as_json)


@app.command("status")
def status(
    pack: int = typer.Argument(..., metavar="PACK", help="Pack id."),
    actor: int = typer.Option(..., "--actor"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a pack's state, options, data freshness and, for a failed pack, what happened."""
    client = _client()
    with client, _errors():
        view = client.get_pack(pack, actor)
    if as_json:
        _print_json(_pack_dict(view))
    else:
        console.print(_status_table(view))


@app.command("list")
def list_packs(
    tenant: str = typer.Option(..., "--tenant", help=TENANT_HELP),
    actor: int = typer.Option(..., "--actor"),
    status_filter: str | None = typer.Option(None, "--status", help="queued, generating, ready, failed or expired."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List a tenant's packs, newest first."""
    client = _client()
    with client, _errors():
        views = client.list_packs(_tenant_id(client, tenant, actor), actor, status=status_filter)
    if as_json:
        _print_json([_pack_dict(view) for view in views])
        return
    table = Table("pack", "status", "created at", "expires at", "size", "review")
    for view in views:
        table.add_row(
            str(view.id),
            str(view.status),
            _iso(view.created_at) or "-",
            _iso(view.expires_at) or "-",
            str(view.file_size) if view.file_size is not None else "-",
            str(view.tenant_review_id) if view.tenant_review_id is not None else "-",
        )
    console.print(table if views else "no packs")


@app.command("review-status")
def review_status(
    review: int = typer.Argument(..., metavar="REVIEW", help="Review id."), actor: int = typer.Option(..., "--actor")
) -> None:
    """Print whether a review's pack is available, generating, unavailable or expired."""
    client = _client()
    with client, _errors():
        console.print(client.review_pack_status(review, actor))


@app.command("url")
def url(
    pack: int = typer.Argument(..., metavar="PACK"),
    actor: int = typer.Option(..., "--actor"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a short-lived download URL for a ready pack."""
    client = _client()
    with client, _errors():
        location = client.download_url(pack, actor)
    if as_json:
        _print_json({"pack_id": pack, "url": location})
    else:
        console.print(location, soft_wrap=True, markup=False, highlight=False)


@app.command("expire")
def expire(
    pack: int = typer.Argument(..., metavar="PACK"),
    actor: int = typer.Option(..., "--actor"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Expire a ready pack now and delete its file (asks first on a terminal)."""
    client = _client()
    with client, _errors():
        if not yes and sys.stdin.isatty():
            view = client.get_pack(pack, actor)
            if not typer.confirm(f"Expire pack {view.id} ({view.status}) and delete its file?", default=False):
                err.print("nothing changed")
                raise typer.Exit(EXIT_FAILURE)
        view = client.expire_pack(pack, actor)
        console.print(f"pack {view.id} {view.status}")


@app.command("prune")
def prune(
    hard_delete: bool = typer.Option(False, "--hard-delete", help="Also delete rows of packs expired past the grace period."),
) -> None:
    """Expire packs past retention now (what beat runs daily)."""
    from reviewpacks.runtime import engine_for
    from scheduler.retention import prune as run_prune
    from storage import db
    from storage.artifacts import artifact_store_from_settings

    settings = _settings()
    with _errors():
        db.check_schema(engine_for(settings.database_url))
        result = run_prune(
            settings,
            artifact_store_from_settings(settings),
            now=dt.datetime.now(dt.timezone.utc),
            hard_delete=hard_delete or None,
        )
    console.print(str(result))


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    # The worker's output goes to a file, not a pipe nobody reads: a full pipe would stall the worker,
    # and the file is what the demo shows when the worker dies.
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "review_packs,maintenance",
             "-P", "solo", "--loglevel=WARNING"],
            env={**os.environ, "REVIEWPACKS_HOME": str(settings.home)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@app.command("demo")
def demo(
    findings: int = typer.Option(2000, min=0, help="Findings to seed for the demo tenant."),
    timeout: float = typer.Option(300, help="Seconds to wait for the pack."),
) -> None:
    """Seed a demo tenant, start a worker, generate a pack and show what is inside."""
    from reviewpacks.runtime import session_factory
    from storage import db
    from storage.demo_data import seed_demo as seed

    settings = _settings()
    console.print(f"[bold]home[/bold]     {settings.home}  (REVIEWPACKS_HOME)")
    console.print(f"[bold]database[/bold] {_endpoint(settings.database_url) if '@' in settings.database_url else settings.database_url}")
    console.print(f"[bold]broker[/bold]   {_endpoint(settings.broker_url)}")
    console.print(f"[bold]store[/bold]    {settings.artifact_store}")
    with _errors():
        db.upgrade(settings.database_url)
        with session_factory(settings.database_url)() as session:
            ids = seed(session, findings=findings)
    console.print(f"seeded tenant {ids.tenant_id} with {findings} findings; actor {ids.manager_id}")

    worker_log = settings.home / "demo-worker.log"
    worker = _start_worker(settings, worker_log)
    try:
        with _client(settings) as client, _errors():
            result = client.request_pack(ids.tenant_id, ids.manager_id)
            console.print(f"request: {result.outcome} (pack {result.pack.id})")
            try:
                view = _wait_with_progress(
                    client, result.pack.id, ids.manager_id, timeout, _liveness_check(settings, worker=worker, worker_log=worker_log)
                )
            except WorkerDied as died:
                output = died.output.strip().splitlines()[-20:]
                err.print(f"[red]worker failed:[/red] {died} (its output, from {worker_log}):")
                err.print("\n".join(output) or "(no output)", markup=False, highlight=False)
                raise typer.Exit(EXIT_FAILURE) from None
            except NoConsumer:
                raise _fail(EXIT_FAILURE, "no worker", f"the demo's worker did not start consuming; see {worker_log}") from None
            if view.status != "ready":
                raise _fail(EXIT_FAILURE, f"pack {view.status}", view.reason_code or "")
            location = client.download_url(view.id, ids.manager_id)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()

    console.print(_status_table(view))
    console.print(f"[bold]pack file[/bold] {escape(location)}", soft_wrap=True)
    if location.startswith("file://"):
        path = Path(location.removeprefix("file://"))
        listing = Table("file", "size", title="contents")
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                listing.add_row(info.filename, str(info.file_size))
        console.print(listing)
        console.print(f"open {path.name} and start with executive-summary.html")


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a CLI
        if state.debug:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        # The type only: a library's message may carry a URL, a host or a credential.
        err.print(f"[red]error:[/red] {type(exc).__name__} (run with --debug for the details)")
        sys.exit(EXIT_FAILURE)


if __name__ == "__main__":
    main()
