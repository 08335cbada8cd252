"""The staleness threshold is read like every other setting: a default, a value, a clear error."""

from __future__ import annotations

import pytest

from reviewpacks.settings import Settings, SettingsError


def test_stale_after_days_defaults_to_seven_and_reads_the_variable(tmp_path):
    base = {"REVIEWPACKS_HOME": str(tmp_path)}
    assert Settings.from_env(base).stale_after_days == 7
    assert Settings.from_env({**base, "REVIEWPACKS_STALE_AFTER_DAYS": "30"}).stale_after_days == 30
    # Empty means unset, as for every other variable.
    assert Settings.from_env({**base, "REVIEWPACKS_STALE_AFTER_DAYS": ""}).stale_after_days == 7


@pytest.mark.parametrize("value", ["-1", "seven", "1.5"])
def test_a_bad_stale_after_days_names_the_variable(tmp_path, value):
    with pytest.raises(SettingsError, match="REVIEWPACKS_STALE_AFTER_DAYS"):
        Settings.from_env({"REVIEWPACKS_HOME": str(tmp_path), "REVIEWPACKS_STALE_AFTER_DAYS": value})
