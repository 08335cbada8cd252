"""Every REVIEWPACKS_* setting, its default, its bounds and its variable name, defined once.

Each field of :class:`Settings` is declared with one of the small helpers below,
which record the variable that sets it, its default, its bounds and any old
variable names still accepted.  :meth:`Settings.from_env` reads exactly those
variables; constructing ``Settings(...)`` directly reads no ``REVIEWPACKS_*``
variable at all, so a producer that passes its own settings is never surprised
by the environment.  Both paths run the same validation, and a bad value raises
:class:`SettingsError` naming the variable.

Without any variables set, the embedded default keeps everything in one home
directory (SQLite, a filesystem broker and a local artifact folder) so that the
demo runs on a machine with no services.  That home is a per-user data
directory, not the working directory, so a command run from any directory
finds the same database: ``$XDG_DATA_HOME/reviewpacks`` (by default
``~/.local/share/reviewpacks``), or ``%LOCALAPPDATA%\\reviewpacks`` on Windows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.artifacts import MAX_DOWNLOAD_URL_TTL_SECONDS

ENV_PREFIX = "REVIEWPACKS_"
# The store's own limit (presigned URLs cannot outlive 7 days), in the unit of the setting.
MAX_DOWNLOAD_URL_TTL_MINUTES = MAX_DOWNLOAD_URL_TTL_SECONDS // 60
# The hard time limit leaves the soft limit this long to record a timeout before the child is killed.
HARD_LIMIT_GRACE_SECONDS = 300
# A run whose heartbeat is older than this many heartbeats is taken over by the reaper or another worker.
LEASE_HEARTBEATS = 3


class SettingsError(ValueError):
    """A REVIEWPACKS_* variable holds a value the system cannot use."""


def _spec(kind: str, default: Any, *, minimum: float | None = None, maximum: float | None = None,
          choices: tuple[str, ...] = (), aliases: tuple[str, ...] = (), env: str | None = None) -> Any:
    metadata = {"kind": kind, "minimum": minimum, "maximum": maximum, "choices": choices, "aliases": aliases, "env": env}
    return field(default=default, metadata=metadata)


def _int(default: int | None, *, minimum: int | None = None, maximum: int | None = None, aliases: tuple[str, ...] = ()) -> Any:
    return _spec("int", default, minimum=minimum, maximum=maximum, aliases=aliases)


def _float(default: float, *, aliases: tuple[str, ...] = ()) -> Any:
    # Every float setting is a duration or an interval, so zero and below are refused.
    return _spec("float", default, minimum=0.0, aliases=aliases)


def _bool(default: bool) -> Any:
    return _spec("bool", default)


def _str(default: str | None) -> Any:
    return _spec("str", default)


def _url(default: str | None) -> Any:
    return _spec("url", default)


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return _spec("choice", default, choices=choices)


def _path(default: Path | None) -> Any:
    return _spec("path", default)


@dataclass(frozen=True)
class Settings:
    """One process's configuration. Fields left as None are derived in ``__post_init__``."""

    # Where the embedded default keeps its files; see the module docstring for the default.
    # Typed as what they always are once constructed: __post_init__ fills in what is left unset.
    home: Path = _path(None)
    database_url: str = _str(None)
    broker_url: str = _str(None)
    artifact_store: str = _str(None)
    s3_endpoint_url: str | None = _str(None)
    # The endpoint used only to presign URLs that readers outside the stack can reach.
    # Compose, for one: workers reach http://minio:9000, readers on the host http://127.0.0.1:9000.
    s3_public_endpoint_url: str | None = _url(None)
    retention_days: int = _int(90, minimum=1)
    hard_delete_grace_days: int = _int(30, minimum=0)
    download_url_ttl_minutes: int = _int(60, minimum=1, maximum=MAX_DOWNLOAD_URL_TTL_MINUTES)
    include_pii_default: bool = _bool(True)
    include_operations_default: bool = _bool(True)
    stale_after_days: int = _int(7, minimum=1)
    findings_chunk_size: int = _int(5000, minimum=1)
    findings_reader: str = _choice("auto", ("auto", "copy", "portable"))
    # Storage and database faults alike are retried this often, with doubling backoff. The old
    # names spoke only of uploads, which was never the whole story; they are still accepted.
    transient_max_retries: int = _int(5, minimum=0, aliases=("REVIEWPACKS_UPLOAD_MAX_RETRIES",))
    transient_retry_backoff_seconds: float = _float(2.0, aliases=("REVIEWPACKS_UPLOAD_RETRY_BACKOFF_SECONDS",))
    task_soft_time_limit: int = _int(3 * 3600, minimum=1)
    # Defaults to the soft limit plus HARD_LIMIT_GRACE_SECONDS.
    task_time_limit: int | None = _int(None, minimum=1)
    heartbeat_seconds: int = _int(30, minimum=1)
    progress_interval_seconds: float = _float(1.0)
    max_attempts: int = _int(3, minimum=1)
    queued_republish_seconds: int = _int(600, minimum=1)
    reap_interval_seconds: float = _float(60.0)
    prune_batch_size: int = _int(500, minimum=1)
    prune_hard_delete: bool = _bool(False)
    # How often a worker publishes packs whose task the broker did not take when they were requested.
    dispatch_retry_seconds: float = _float(5.0)
    # The worker's Prometheus endpoint (workers/metrics.py); unset turns it off.
    metrics_port: int | None = _int(None, minimum=1, maximum=65535)
    metrics_address: str = _str("127.0.0.1")
    log_format: str = _choice("logfmt", ("logfmt", "json"))
    log_level: str = _choice("info", ("debug", "info", "warning", "error"))

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                object.__setattr__(self, spec.name, _check(spec, value))
        self._derive()

    def _derive(self) -> None:
        set_ = object.__setattr__
        needs_home = None in (self.database_url, self.broker_url, self.artifact_store) or self.broker_url.startswith("filesystem://")
        if self.home is not None or needs_home:
            # Only a caller that leaves an embedded piece unset gets the per-user default, so explicit
            # settings for real services never look at the user's directories.
            home = Path(self.home if self.home is not None else default_home(os.environ)).expanduser().resolve()
            set_(self, "home", home)
        if self.database_url is None:
            set_(self, "database_url", f"sqlite:///{self.home / 'reviewpacks.db'}")
        if self.broker_url is None:
            set_(self, "broker_url", "filesystem://")
        if self.artifact_store is None:
            set_(self, "artifact_store", f"file://{self.home / 'artifacts'}")
        if not self.artifact_store.startswith(("file://", "s3://")):
            raise SettingsError(
                f"{env_name('artifact_store')} must be file://PATH or s3://BUCKET/PREFIX, got {_scheme_only(self.artifact_store)}"
            )
        if self.task_time_limit is None:
            set_(self, "task_time_limit", self.task_soft_time_limit + HARD_LIMIT_GRACE_SECONDS)
        if self.task_time_limit <= self.task_soft_time_limit:
            raise SettingsError(f"{env_name('task_time_limit')} must be greater than {env_name('task_soft_time_limit')}")

    # -- derived values -------------------------------------------------------------------------

    @property
    def lease(self) -> dt.timedelta:
        """How old a running attempt's heartbeat may be before another process takes the run over."""
        return dt.timedelta(seconds=self.heartbeat_seconds * LEASE_HEARTBEATS)

    @property
    def retention(self) -> dt.timedelta:
        return dt.timedelta(days=self.retention_days)

    @property
    def hard_delete_grace(self) -> dt.timedelta:
        return dt.timedelta(days=self.hard_delete_grace_days)

    @property
    def download_url_ttl(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.download_url_ttl_minutes)

    @property
    def stale_after(self) -> dt.timedelta:
        return dt.timedelta(days=self.stale_after_days)

    @property
    def broker_transport_options(self) -> dict[str, Any]:
        """Where kombu's filesystem transport keeps its queues; empty for a real broker."""
        if not self.broker_url.startswith("filesystem://"):
            return {}
        return {
            "data_folder_in": str(self.home / "broker"),
            "data_folder_out": str(self.home / "broker"),
            "control_folder": str(self.home / "broker-control"),
            "processed_folder": str(self.home / "broker-processed"),
            "store_processed": False,
        }

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from REVIEWPACKS_* variables (``os.environ`` unless a mapping is given)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            raw = _read(env, spec)
            if raw is not None:
                values[spec.name] = _parse(spec, raw)
        if values.get("home") is None:
            values["home"] = default_home(env)
        return cls(**values)

    def ensure_embedded_dirs(self) -> None:
        """Create the folders the embedded default needs; a no-op for real services."""
        if self.database_url.startswith("sqlite:///"):
            Path(self.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        options = self.broker_transport_options
        for key in ("data_folder_in", "control_folder", "processed_folder"):
            if key in options:
                Path(options[key]).mkdir(parents=True, exist_ok=True)
        if self.artifact_store.startswith("file://"):
            Path(self.artifact_store.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


def default_home(env: Mapping[str, str]) -> Path:
    """The per-user data directory that holds the embedded default when REVIEWPACKS_HOME is unset."""
    if os.name == "nt" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "reviewpacks"
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]) / "reviewpacks"
    base = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return base / ".local" / "share" / "reviewpacks"


def env_name(name: str) -> str:
    """The variable that sets the field ``name``."""
    spec = _FIELDS[name]
    return spec.metadata["env"] or ENV_PREFIX + spec.name.upper()


def variables() -> list[tuple[str, tuple[str, ...], Any]]:
    """(variable, old names, default) for every setting, in declaration order; documentation is checked against it."""
    return [(env_name(spec.name), spec.metadata["aliases"], spec.default) for spec in dataclasses.fields(Settings)]


def _read(env: Mapping[str, str], spec: dataclasses.Field) -> str | None:
    """The raw value of a setting; an empty variable counts as unset. An old name may stand in for the new one."""
    name = env_name(spec.name)
    found = {key: env[key].strip() for key in (name, *spec.metadata["aliases"]) if (env.get(key) or "").strip()}
    if len(set(found.values())) > 1:
        raise SettingsError(f"{' and '.join(found)} are set to different values; set only {name}")
    return next(iter(found.values()), None)


def _parse(spec: dataclasses.Field, raw: str) -> Any:
    name, kind = env_name(spec.name), spec.metadata["kind"]
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {_shown(raw)}") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {_shown(raw)}") from None
    if kind == "bool":
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be true or false, got {_shown(raw)}")
    if kind == "choice":
        return raw.lower()
    if kind == "path":
        return Path(raw)
    return raw


def _check(spec: dataclasses.Field, value: Any) -> Any:
    """Validate one value whether it came from the environment or from a caller; return it normalised."""
    name, meta = env_name(spec.name), spec.metadata
    kind = meta["kind"]
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str, "choice": str, "path": (str, Path), "url": str}[kind]
    # bool is a subclass of int; True is not a number of days.
    if not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool)):
        raise SettingsError(f"{name} must be {_KIND_WORDS[kind]}, got a {type(value).__name__}")
    if kind == "float":
        value = float(value)
        if not value == value or value in (float("inf"), float("-inf")):
            raise SettingsError(f"{name} must be a finite number, got {value}")
    if kind == "path":
        value = Path(value)
    if kind == "url":
        if not value.startswith(("http://", "https://")) or "?" in value or "#" in value:
            raise SettingsError(f"{name} must be an http:// or https:// base URL, got {_shown(value)}")
        value = value.rstrip("/")
    if kind in ("int", "float"):
        if meta["minimum"] is not None:
            if kind == "float" and value <= meta["minimum"]:
                raise SettingsError(f"{name} must be positive, got {value}")
            if value < meta["minimum"]:
                raise SettingsError(f"{name} must be at least {meta['minimum']}, got {value}")
        if meta["maximum"] is not None and value > meta["maximum"]:
            raise SettingsError(f"{name} is at most {meta['maximum']}{_MAX_NOTES.get(spec.name, '')}, got {value}")
    if kind == "choice" and value not in meta["choices"]:
        raise SettingsError(f"{name} must be one of {', '.join(meta['choices'])}, got {_shown(value)}")
    return value


def _shown(raw: str) -> str:
    # Echo short values so the operator sees the typo; a long value may be a pasted secret and is not repeated.
    return repr(raw) if len(raw) <= 40 else f"a value of {len(raw)} characters"


def _scheme_only(url: str) -> str:
    # A mistyped store URL may carry credentials; name only its scheme.
    scheme, sep, _ = url.partition("://")
    return f"a {scheme}:// URL" if sep and scheme.isascii() and scheme.isalnum() else "a value that is not a URL"


_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
               "choice": "text", "path": "a path", "url": "a URL"}
_MAX_NOTES = {"download_url_ttl_minutes": " (7 days)"}
_FIELDS = {spec.name: spec for spec in dataclasses.fields(Settings)}
