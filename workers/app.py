"""The Celery application: `celery -A workers.app worker -Q review_packs,maintenance`.

This module is the composition root. It names the task modules, adds the beat
schedule, and builds Celery's configuration from a Settings object when the
app first reads its configuration, never at import. The
module-level ``app`` that ``celery -A workers.app`` finds takes its settings
from the process runtime (the REVIEWPACKS_* environment); a producer that calls
``make_app(settings)`` gets an app built from its own settings and the
environment is not read.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

from celery import Celery
from celery.signals import after_setup_logger, worker_init, worker_process_init

from domain import executive_summary
from reviewpacks import logs, runtime
from reviewpacks.settings import Settings
from scheduler.schedule import beat_schedule
from workers import allocator

# Every task the workers run is registered by importing one of these modules.
TASK_MODULES = ("workers.tasks", "scheduler.tasks", "workers.dispatch")
# celeryconfig.py sits next to the packages, wherever they are installed.
_CELERYCONFIG_PATH = Path(__file__).resolve().parent.parent / "celeryconfig.py"
_CELERYCONFIG_MODULE = "reviewpacks._celeryconfig"


def _celeryconfig() -> ModuleType:
    """Our celeryconfig.py, loaded from its file: a host's celeryconfig.py on sys.path must not answer instead."""
    module = sys.modules.get(_CELERYCONFIG_MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(_CELERYCONFIG_MODULE, _CELERYCONFIG_PATH)
        if spec is None or spec.loader is None or not _CELERYCONFIG_PATH.is_file():
            raise ImportError("the review packs Celery configuration (celeryconfig.py) is missing from the installation")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_CELERYCONFIG_MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            # A half-executed module must not be found by the next call.
            del sys.modules[_CELERYCONFIG_MODULE]
            raise
    return module


def celery_config(settings: Settings) -> dict:
    """Celery's whole configuration for ``settings``, beat schedule included."""
    return {**_celeryconfig().celery_config(settings), "beat_schedule": beat_schedule(settings)}


class _LazyConfig(Mapping):
    """A configuration source Celery reads on first use; building it reads the settings.

    Celery's ``on_configure`` signal would be the obvious hook, but Celery logs and swallows a
    receiver's exception, and a bad REVIEWPACKS_* value would then leave the app on Celery's defaults.
    An error raised while this mapping is read reaches the caller instead.
    """

    def __init__(self, settings: Settings | None):
        self._settings = settings
        self._config: dict | None = None

    def _load(self) -> dict:
        if self._config is None:
            settings = self._settings if self._settings is not None else runtime.current().settings
            settings.ensure_embedded_dirs()
            self._config = celery_config(settings)
        return self._config

    def __getitem__(self, key: str):
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def make_app(settings: Settings | None = None) -> Celery:
    """The worker's app (settings from the environment, read on first use), or a producer's app for ``settings``."""
    celery_app = Celery("reviewpacks", include=list(TASK_MODULES))
    celery_app.config_from_object(_LazyConfig(settings))
    return celery_app


app = make_app()


@worker_init.connect
def _keep_large_buffers(**_kwargs: object) -> None:
    # Set before the pool forks its children, which inherit it (workers/allocator.py).
    allocator.keep_large_buffers()


@worker_init.connect
def _compile_templates(**_kwargs: object) -> None:
    # Compiled once before the pool forks, the summary templates are every child's from its first pack on.
    executive_summary.load_templates()


@worker_process_init.connect
def _fresh_connections(**_kwargs: object) -> None:
    # A forked child must not reuse the parent's pooled database sockets or its S3 client.
    runtime.after_fork()
    # The child's own S3 client is built now, not by its first pack: building one reads the
    # service's models (tens of milliseconds, more on a busy machine). It sends no request, so
    # storage that is down delays nothing; settings it cannot use fail the first pack, as before.
    try:
        _ = runtime.current().store
    except Exception as exc:  # noqa: BLE001 - the first pack reports it with a reason code
        logs.get_logger("reviewpacks.worker").warning("worker.store_not_built", error=type(exc).__name__)


@after_setup_logger.connect
def _structured_logs(**_kwargs: object) -> None:
    # Sent in worker and beat processes only, once Celery has set up its own logging.
    settings = runtime.current().settings
    logs.configure(log_format=settings.log_format, level=settings.log_level)
