"""README's first command: the demo on the embedded default, with no services configured."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWPACKS_", "AWS_"))}
    env.update(COLUMNS="200", XDG_DATA_HOME=str(tmp_path / "data"))
    script = Path(sys.executable).with_name("reviewpacks")
    workdir = tmp_path / "work"
    workdir.mkdir()

    result = subprocess.run(
        [str(script), "demo", "--findings", "400"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stdout + result.stderr
    # The embedded default lives in the per-user data directory, which the demo names; the working
    # directory is left alone.
    home = tmp_path / "data" / "reviewpacks"
    assert f"home     {home}  (REVIEWPACKS_HOME)" in result.stdout
    assert f"sqlite:///{home}/reviewpacks.db" in result.stdout
    assert "filesystem://" in result.stdout
    assert list(workdir.iterdir()) == []
    packs = list((home / "artifacts" / "packs").glob("*.zip"))
    assert len(packs) == 1
    assert f"file://{packs[0]}" in result.stdout
    with zipfile.ZipFile(packs[0]) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    assert names[0] == "executive-summary.html" and "findings.csv" in names
    for name in names:
        assert name in result.stdout
