"""The one place that reads the REVIEWPACKS_* environment.

Every process (producer, worker, beat, CLI) builds a :class:`Settings` from the
environment; nothing else reads os.environ for these values.  Without any
variables set, the embedded default keeps everything under ``./.reviewpacks``
(SQLite, a filesystem broker and a local artifact directory) so that the demo
runs on a machine with no services.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

EMBEDDED_HOME_VAR = "REVIEWPACKS_HOME"
MAX_DOWNLOAD_URL_TTL_MINUTES = 7 * 24 * 60  # S3 SigV4 presigned URLs cannot outlive 7 days.


class SettingsError(ValueError):
    """A REVIEWPACKS_* variable holds a value the system cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or "").strip().lower() or default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    artifact_store: str
    s3_endpoint_url: str | None = None
    retention_days: int = 90
    hard_delete_grace_days: int = 30
    download_url_ttl_minutes: int = 60
    include_pii_default: bool = True
    include_operations_default: bool = True
    # A source older than this many days is called stale in the pack (summary.json and the page).
    stale_after_days: int = 7
    findings_chunk_size: int = 5000
    upload_max_retries: int = 5
    upload_retry_backoff_seconds: float = 2.0
    task_soft_time_limit: int = 3 * 3600
    task_time_limit: int = 3 * 3600 + 300
    heartbeat_seconds: int = 30
    progress_interval_seconds: float = 1.0
    max_attempts: int = 3
    queued_republish_seconds: int = 600
    reap_interval_seconds: float = 60.0
    prune_batch_size: int = 500
    prune_hard_delete: bool = False
    findings_reader: str = "auto"
    broker_transport_options: dict = field(default_factory=dict)

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get(EMBEDDED_HOME_VAR) or "./.reviewpacks").resolve()

        database_url = env.get("REVIEWPACKS_DATABASE_URL") or f"sqlite:///{home / 'reviewpacks.db'}"
        broker_url = env.get("REVIEWPACKS_BROKER_URL") or "filesystem://"
        artifact_store = env.get("REVIEWPACKS_ARTIFACT_STORE") or f"file://{home / 'artifacts'}"
        if not artifact_store.startswith(("file://", "s3://")):
            raise SettingsError(
                f"REVIEWPACKS_ARTIFACT_STORE must be file://PATH or s3://BUCKET/PREFIX, got {artifact_store!r}"
            )

        ttl = _int(env, "REVIEWPACKS_DOWNLOAD_URL_TTL_MINUTES", 60, minimum=1)
        if ttl > MAX_DOWNLOAD_URL_TTL_MINUTES:
            raise SettingsError(
                f"REVIEWPACKS_DOWNLOAD_URL_TTL_MINUTES is at most {MAX_DOWNLOAD_URL_TTL_MINUTES} (7 days), got {ttl}"
            )

        soft_limit = _int(env, "REVIEWPACKS_TASK_SOFT_TIME_LIMIT", 3 * 3600, minimum=1)
        hard_limit = _int(env, "REVIEWPACKS_TASK_TIME_LIMIT", soft_limit + 300, minimum=1)
        if hard_limit <= soft_limit:
            raise SettingsError("REVIEWPACKS_TASK_TIME_LIMIT must be greater than REVIEWPACKS_TASK_SOFT_TIME_LIMIT")

        transport_options: dict = {}
        if broker_url.startswith("filesystem://"):
            queue_dir = home / "broker"
            transport_options = {
                "data_folder_in": str(queue_dir),
                "data_folder_out": str(queue_dir),
                "control_folder": str(home / "broker-control"),
                "processed_folder": str(home / "broker-processed"),
                "store_processed": False,
            }

        return cls(
            home=home,
            database_url=database_url,
            broker_url=broker_url,
            artifact_store=artifact_store,
            s3_endpoint_url=env.get("REVIEWPACKS_S3_ENDPOINT_URL") or None,
            retention_days=_int(env, "REVIEWPACKS_RETENTION_DAYS", 90, minimum=1),
            hard_delete_grace_days=_int(env, "REVIEWPACKS_HARD_DELETE_GRACE_DAYS", 30),
            download_url_ttl_minutes=ttl,
            include_pii_default=_bool(env, "REVIEWPACKS_INCLUDE_PII_DEFAULT", True),
            include_operations_default=_bool(env, "REVIEWPACKS_INCLUDE_OPERATIONS_DEFAULT", True),
            stale_after_days=_int(env, "REVIEWPACKS_STALE_AFTER_DAYS", 7),
            findings_chunk_size=_int(env, "REVIEWPACKS_FINDINGS_CHUNK_SIZE", 5000, minimum=1),
            upload_max_retries=_int(env, "REVIEWPACKS_UPLOAD_MAX_RETRIES", 5),
            upload_retry_backoff_seconds=_float(env, "REVIEWPACKS_UPLOAD_RETRY_BACKOFF_SECONDS", 2.0),
            task_soft_time_limit=soft_limit,
            task_time_limit=hard_limit,
            heartbeat_seconds=_int(env, "REVIEWPACKS_HEARTBEAT_SECONDS", 30, minimum=1),
            progress_interval_seconds=_float(env, "REVIEWPACKS_PROGRESS_INTERVAL_SECONDS", 1.0),
            max_attempts=_int(env, "REVIEWPACKS_MAX_ATTEMPTS", 3, minimum=1),
            queued_republish_seconds=_int(env, "REVIEWPACKS_QUEUED_REPUBLISH_SECONDS", 600, minimum=1),
            reap_interval_seconds=_float(env, "REVIEWPACKS_REAP_INTERVAL_SECONDS", 60.0),
            prune_batch_size=_int(env, "REVIEWPACKS_PRUNE_BATCH_SIZE", 500, minimum=1),
            prune_hard_delete=_bool(env, "REVIEWPACKS_PRUNE_HARD_DELETE", False),
            findings_reader=_choice(env, "REVIEWPACKS_FINDINGS_READER", ("auto", "copy", "portable"), "auto"),
            broker_transport_options=transport_options,
        )

    def ensure_embedded_dirs(self) -> None:
        """Create the folders the embedded default needs; a no-op for real services."""
        if self.database_url.startswith("sqlite:///"):
            Path(self.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        for key in ("data_folder_in", "control_folder", "processed_folder"):
            if key in self.broker_transport_options:
                Path(self.broker_transport_options[key]).mkdir(parents=True, exist_ok=True)
        if self.artifact_store.startswith("file://"):
            Path(self.artifact_store.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
