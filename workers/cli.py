"""`reviewpacks`: the command line over the same client and settings.

Exit codes: 0 ok, 2 usage or invalid request, 3 not found, 4 forbidden, 5 conflict (a generation
with other options is in progress for the tenant), 1 any other failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from settings import Settings, SettingsError

EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_FORBIDDEN, EXIT_CONFLICT = 0, 1, 2, 3, 4, 5

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Deterministic review pack exports.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
storage_app = typer.Typer(no_args_is_help=True, help="Artifact store.")
app.add_typer(storage_app, name="storage")
console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    settings.ensure_embedded_dirs()
    return settings


def _client():
    from workers.client import ReviewPackClient

    return ReviewPackClient(_settings())


@contextmanager
def _errors():
    """Map the client's errors to exit codes and one clear line on stderr."""
    from workers.client import Conflict, Forbidden, InvalidRequest, NotFound, WaitTimeout

    try:
        yield
    except NotFound as exc:
        err.print(f"[red]not found:[/red] {exc}")
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except Forbidden as exc:
        err.print(f"[red]forbidden:[/red] {exc}")
        raise typer.Exit(EXIT_FORBIDDEN) from None
    except InvalidRequest as exc:
        err.print(f"[red]invalid request:[/red] {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    except Conflict as exc:
        err.print(f"[red]conflict:[/red] {exc}")
        raise typer.Exit(EXIT_CONFLICT) from None
    except WaitTimeout as exc:
        err.print(f"[red]timed out:[/red] {exc}")
        raise typer.Exit(EXIT_FAILURE) from None


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations."""
    from storage import db

    settings = _settings()
    db.upgrade(settings.database_url, revision)
    console.print(f"database upgraded to {revision}")


@storage_app.command("init")
def storage_init() -> None:
    """Create the bucket (private, public access blocked, encrypted by default) or the local folder."""
    from storage.artifacts import artifact_store_from_settings

    settings = _settings()
    artifact_store_from_settings(settings).ensure_ready()
    console.print(f"artifact store ready: {settings.artifact_store}")


@app.command("seed-demo")
def seed_demo(findings: int = typer.Option(250, min=0, help="Number of findings to create.")) -> None:
    """Create a demo workspace, tenant, users, findings, reports, operations and a published review."""
    from storage import db
    from storage.demo_data import seed_demo as seed

    settings = _settings()
    with db.session_factory(settings.database_url)() as session:
        ids = seed(session, findings=findings)
    console.print(
        f"workspace {ids.workspace_id}, tenant {ids.tenant_id}, manager (actor) {ids.manager_id}, "
        f"viewer {ids.viewer_id}, published review {ids.review_id}"
    )


def _status_table(view) -> Table:
    table = Table(show_header=False, box=None)
    for label, value in (
        ("pack", view.id),
        ("kind", view.kind),
        ("status", view.status),
        ("tenant", view.tenant_id),
        ("rows", view.rows_written),
        ("bytes", view.file_size if view.file_size is not None else view.bytes_written),
        ("sha256", view.sha256 or "-"),
        ("fingerprint", view.fingerprint or "-"),
        ("generated at", view.generated_at.isoformat() if view.generated_at else "-"),
        ("expires at", view.expires_at.isoformat() if view.expires_at else "-"),
        ("reason", view.reason_code or "-"),
    ):
        table.add_row(label, str(value))
    return table


def _wait_with_progress(client, pack_id: int, actor: int, timeout: float):
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        TextColumn("{task.fields[rows]} rows, {task.fields[nbytes]} bytes"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("pack", total=None, state="queued", rows=0, nbytes=0)

        def update(view) -> None:
            total = view.summary.get("counts", {}).get("findings", {}).get("total") if view.summary else None
            progress.update(
                task,
                state=view.status,
                rows=view.rows_written,
                nbytes=view.bytes_written,
                total=total,
                completed=view.rows_written if total else None,
            )

        view = client.wait(pack_id, actor, timeout=timeout, on_progress=update)
        if view.status == "ready":
            progress.update(task, total=1, completed=1)
        return view


@app.command("request")
def request(
    tenant: int = typer.Option(..., "--tenant", help="Tenant id."),
    actor: int = typer.Option(..., "--actor", help="Acting user id."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Replace names and e-mail addresses with a placeholder."),
    no_operations: bool = typer.Option(False, "--no-operations", help="Leave operations.csv out."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the pack, showing progress."),
    timeout: float = typer.Option(600, help="Seconds to wait with --wait."),
) -> None:
    """Request a tenant review pack."""
    client = _client()
    with _errors():
        result = client.request_pack(
            tenant_id=tenant,
            actor_id=actor,
            include_pii=False if no_pii else None,
            include_operations=False if no_operations else None,
        )
        messages = {
            "queued": f"pack {result.pack.id} queued for generation",
            "reused_ready": f"pack {result.pack.id} already available for the same data; no new generation was started",
            "reused_active": f"pack {result.pack.id} is already being generated for the same data",
        }
        console.print(messages[result.outcome])
        if not wait:
            return
        view = result.pack if result.pack.is_final else _wait_with_progress(client, result.pack.id, actor, timeout)
        if view.status != "ready":
            err.print(f"[red]pack {view.id} {view.status}[/red]: {view.reason_code or ''}")
            raise typer.Exit(EXIT_FAILURE)
        console.print(f"ready: {view.file_size} bytes, sha256 {view.sha256}")
        console.print(client.download_url(view.id, actor), soft_wrap=True)


@app.command("status")
def status(pack: int = typer.Argument(..., metavar="PACK", help="Pack id."), actor: int = typer.Option(..., "--actor")) -> None:
    """Show a pack's state."""
    client = _client()
    with _errors():
        console.print(_status_table(client.get_pack(pack, actor)))


@app.command("review-status")
def review_status(
    review: int = typer.Argument(..., metavar="REVIEW", help="Review id."), actor: int = typer.Option(..., "--actor")
) -> None:
    """Print whether a review's pack is available, generating, unavailable or expired."""
    client = _client()
    with _errors():
        console.print(client.review_pack_status(review, actor))


@app.command("url")
def url(pack: int = typer.Argument(..., metavar="PACK"), actor: int = typer.Option(..., "--actor")) -> None:
    """Print a short-lived download URL for a ready pack."""
    client = _client()
    with _errors():
        console.print(client.download_url(pack, actor), soft_wrap=True)


@app.command("expire")
def expire(pack: int = typer.Argument(..., metavar="PACK"), actor: int = typer.Option(..., "--actor")) -> None:
    """Expire a ready pack now and delete its file."""
    client = _client()
    with _errors():
        view = client.expire_pack(pack, actor)
        console.print(f"pack {view.id} {view.status}")


@app.command("prune")
def prune(
    hard_delete: bool = typer.Option(False, "--hard-delete", help="Also delete rows of packs expired past the grace period."),
) -> None:
    """Expire packs past retention now (what beat runs daily)."""
    import datetime as dt

    from scheduler.retention import prune as run_prune
    from storage.artifacts import artifact_store_from_settings

    settings = _settings()
    result = run_prune(
        settings, artifact_store_from_settings(settings), now=dt.datetime.now(dt.timezone.utc), hard_delete=hard_delete or None
    )
    console.print(str(result))


def _start_worker(settings: Settings) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "review_packs,maintenance",
         "-P", "solo", "--loglevel=WARNING"],
        env={**os.environ, "REVIEWPACKS_HOME": str(settings.home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@app.command("demo")
def demo(
    findings: int = typer.Option(2000, min=0, help="Findings to seed for the demo tenant."),
    timeout: float = typer.Option(300, help="Seconds to wait for the pack."),
) -> None:
    """Seed a demo tenant, start a worker, generate a pack and show what is inside."""
    from storage import db
    from storage.demo_data import seed_demo as seed
    from workers.client import ReviewPackClient

    settings = _settings()
    console.print(f"[bold]database[/bold] {settings.database_url}")
    console.print(f"[bold]broker[/bold]   {settings.broker_url}")
    console.print(f"[bold]store[/bold]    {settings.artifact_store}")
    db.upgrade(settings.database_url)
    with db.session_factory(settings.database_url)() as session:
        ids = seed(session, findings=findings)
    console.print(f"seeded tenant {ids.tenant_id} with {findings} findings; actor {ids.manager_id}")

    worker = _start_worker(settings)
    try:
        client = ReviewPackClient(settings)
        with _errors():
            result = client.request_pack(ids.tenant_id, ids.manager_id)
            console.print(f"request: {result.outcome} (pack {result.pack.id})")
            view = _wait_with_progress(client, result.pack.id, ids.manager_id, timeout)
            if view.status != "ready":
                err.print(f"[red]pack {view.status}[/red] {view.reason_code or ''}")
                raise typer.Exit(EXIT_FAILURE)
            location = client.download_url(view.id, ids.manager_id)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()

    console.print(_status_table(view))
    console.print(f"[bold]pack file[/bold] {location}", soft_wrap=True)
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
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        sys.exit(EXIT_FAILURE)


if __name__ == "__main__":
    main()
