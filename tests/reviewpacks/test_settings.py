"""Settings: one definition per variable, derived values, old names, and errors that name the variable."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest

from reviewpacks import settings as settings_module
from reviewpacks.settings import MAX_DOWNLOAD_URL_TTL_MINUTES, Settings, SettingsError, default_home, env_name, variables
from tests.conftest import ROOT


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "user"), **values}


def test_defaults_keep_the_embedded_default_in_a_per_user_data_directory(tmp_path):
    settings = Settings.from_env(_env(tmp_path))
    home = tmp_path / "user" / ".local" / "share" / "reviewpacks"
    assert settings.home == home
    assert settings.database_url == f"sqlite:///{home / 'reviewpacks.db'}"
    assert settings.broker_url == "filesystem://"
    assert settings.artifact_store == f"file://{home / 'artifacts'}"
    assert settings.broker_transport_options["data_folder_in"] == str(home / "broker")
    assert (settings.retention_days, settings.download_url_ttl_minutes, settings.stale_after_days) == (90, 60, 7)
    assert settings.log_format == "logfmt" and settings.metrics_port is None and settings.s3_public_endpoint_url is None


def test_xdg_data_home_and_reviewpacks_home_choose_the_home(tmp_path):
    assert Settings.from_env(_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"))).home == tmp_path / "data" / "reviewpacks"
    chosen = Settings.from_env(_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"), REVIEWPACKS_HOME=str(tmp_path / "mine")))
    assert chosen.home == tmp_path / "mine"
    assert default_home({"HOME": "/home/ann"}) == Path("/home/ann/.local/share/reviewpacks")


def test_reading_settings_touches_no_file(tmp_path):
    Settings.from_env(_env(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_derived_values_are_properties_of_the_settings(tmp_path):
    settings = Settings.from_env(_env(tmp_path, REVIEWPACKS_HEARTBEAT_SECONDS="7", REVIEWPACKS_TASK_SOFT_TIME_LIMIT="100"))
    assert settings.lease == dt.timedelta(seconds=21)
    assert settings.task_time_limit == 400
    assert settings.retention == dt.timedelta(days=90)
    assert settings.hard_delete_grace == dt.timedelta(days=30)
    assert settings.download_url_ttl == dt.timedelta(minutes=60)
    assert settings.stale_after == dt.timedelta(days=7)
    assert MAX_DOWNLOAD_URL_TTL_MINUTES == 7 * 24 * 60
    redis = Settings.from_env(_env(tmp_path, REVIEWPACKS_BROKER_URL="redis://127.0.0.1:6379/0"))
    assert redis.broker_transport_options == {}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REVIEWPACKS_RETENTION_DAYS", "ninety", "REVIEWPACKS_RETENTION_DAYS must be a whole number, got 'ninety'"),
        ("REVIEWPACKS_RETENTION_DAYS", "0", "REVIEWPACKS_RETENTION_DAYS must be at least 1, got 0"),
        ("REVIEWPACKS_HARD_DELETE_GRACE_DAYS", "-1", "REVIEWPACKS_HARD_DELETE_GRACE_DAYS must be at least 0, got -1"),
        ("REVIEWPACKS_DOWNLOAD_URL_TTL_MINUTES", "10081", "REVIEWPACKS_DOWNLOAD_URL_TTL_MINUTES is at most 10080 (7 days), got 10081"),
        ("REVIEWPACKS_STALE_AFTER_DAYS", "0", "REVIEWPACKS_STALE_AFTER_DAYS must be at least 1, got 0"),
        ("REVIEWPACKS_METRICS_PORT", "70000", "REVIEWPACKS_METRICS_PORT is at most 65535, got 70000"),
        ("REVIEWPACKS_TRANSIENT_RETRY_BACKOFF_SECONDS", "0", "REVIEWPACKS_TRANSIENT_RETRY_BACKOFF_SECONDS must be positive, got 0.0"),
        ("REVIEWPACKS_REAP_INTERVAL_SECONDS", "nan", "REVIEWPACKS_REAP_INTERVAL_SECONDS must be a finite number, got nan"),
        ("REVIEWPACKS_PROGRESS_INTERVAL_SECONDS", "soon", "REVIEWPACKS_PROGRESS_INTERVAL_SECONDS must be a number, got 'soon'"),
        ("REVIEWPACKS_INCLUDE_PII_DEFAULT", "maybe", "REVIEWPACKS_INCLUDE_PII_DEFAULT must be true or false, got 'maybe'"),
        ("REVIEWPACKS_FINDINGS_READER", "fast", "REVIEWPACKS_FINDINGS_READER must be one of auto, copy, portable, got 'fast'"),
        ("REVIEWPACKS_LOG_FORMAT", "xml", "REVIEWPACKS_LOG_FORMAT must be one of logfmt, json, got 'xml'"),
        ("REVIEWPACKS_TASK_TIME_LIMIT", "10800",
         "REVIEWPACKS_TASK_TIME_LIMIT must be greater than REVIEWPACKS_TASK_SOFT_TIME_LIMIT"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_naming_the_variable(tmp_path, variable, value, message):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(_env(tmp_path, **{variable: value}))
    assert str(refused.value) == message


def test_a_long_or_credential_bearing_value_is_not_echoed(tmp_path):
    secret = "s3cr3t" * 20
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(_env(tmp_path, REVIEWPACKS_PRUNE_BATCH_SIZE=secret))
    assert secret not in str(refused.value) and "120 characters" in str(refused.value)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(_env(tmp_path, REVIEWPACKS_ARTIFACT_STORE="https://key:secret@example.test/bucket"))
    assert "secret" not in str(refused.value) and "example.test" not in str(refused.value)
    assert str(refused.value).startswith("REVIEWPACKS_ARTIFACT_STORE must be file://PATH or s3://BUCKET/PREFIX")


def test_old_names_are_accepted_for_the_renamed_retry_settings(tmp_path):
    old = Settings.from_env(_env(tmp_path, REVIEWPACKS_UPLOAD_MAX_RETRIES="4", REVIEWPACKS_UPLOAD_RETRY_BACKOFF_SECONDS="0.5"))
    assert (old.transient_max_retries, old.transient_retry_backoff_seconds) == (4, 0.5)
    both = Settings.from_env(_env(tmp_path, REVIEWPACKS_UPLOAD_MAX_RETRIES="4", REVIEWPACKS_TRANSIENT_MAX_RETRIES="4"))
    assert both.transient_max_retries == 4
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(_env(tmp_path, REVIEWPACKS_UPLOAD_MAX_RETRIES="4", REVIEWPACKS_TRANSIENT_MAX_RETRIES="6"))
    assert str(refused.value) == (
        "REVIEWPACKS_TRANSIENT_MAX_RETRIES and REVIEWPACKS_UPLOAD_MAX_RETRIES are set to different values; "
        "set only REVIEWPACKS_TRANSIENT_MAX_RETRIES"
    )


def test_an_empty_variable_counts_as_unset(tmp_path):
    assert Settings.from_env(_env(tmp_path, REVIEWPACKS_RETENTION_DAYS="", REVIEWPACKS_DATABASE_URL=" ")).retention_days == 90


def test_explicit_settings_read_no_reviewpacks_variable(monkeypatch):
    for name, _aliases, _default in variables():
        monkeypatch.setenv(name, "not a usable value")
    settings = Settings(database_url="postgresql+psycopg://db/packs", broker_url="redis://broker/0", artifact_store="s3://bucket/packs")
    assert settings.retention_days == 90 and settings.home is None
    assert settings.broker_transport_options == {}


def test_explicit_settings_are_validated_like_the_environment(tmp_path):
    with pytest.raises(SettingsError, match="^REVIEWPACKS_RETENTION_DAYS must be at least 1, got 0$"):
        Settings(home=tmp_path, retention_days=0)
    with pytest.raises(SettingsError, match="^REVIEWPACKS_RETENTION_DAYS must be a whole number, got a bool$"):
        Settings(home=tmp_path, retention_days=True)
    with pytest.raises(SettingsError, match="^REVIEWPACKS_HEARTBEAT_SECONDS must be a whole number, got a str$"):
        Settings(home=tmp_path, heartbeat_seconds="30")
    settings = Settings(home=tmp_path)
    with pytest.raises(SettingsError, match="^REVIEWPACKS_PRUNE_BATCH_SIZE must be at least 1"):
        dataclasses.replace(settings, prune_batch_size=0)


def test_every_setting_has_one_definition_and_one_variable():
    names = [name for name, _aliases, _default in variables()]
    assert len(names) == len(set(names))
    assert all(name.startswith("REVIEWPACKS_") for name in names)
    assert env_name("transient_max_retries") == "REVIEWPACKS_TRANSIENT_MAX_RETRIES"
    # No module outside the settings module reads a REVIEWPACKS_* variable from the environment.
    reads = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["']REVIEWPACKS_""")
    readers = [
        str(path.relative_to(ROOT))
        for path in ROOT.glob("**/*.py")
        if not {".venv", "tests", "bench", "build"} & set(path.relative_to(ROOT).parts)
        and path != Path(settings_module.__file__)
        and reads.search(path.read_text())
    ]
    assert readers == []


@pytest.mark.parametrize("document", ["README.md", "docs/CONTRACT.md"])
def test_every_variable_is_documented(document):
    text = (ROOT / document).read_text()
    missing = [name for name, _aliases, _default in variables() if name not in text]
    assert missing == []
