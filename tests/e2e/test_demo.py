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
    env["COLUMNS"] = "200"
    script = Path(sys.executable).with_name("reviewpacks")

    result = subprocess.run(
        [str(script), "demo", "--findings", "400"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sqlite:///{tmp_path}/.reviewpacks/reviewpacks.db" in result.stdout
    assert "filesystem://" in result.stdout
    packs = list((tmp_path / ".reviewpacks" / "artifacts" / "packs").glob("*.zip"))
    assert len(packs) == 1
    assert f"file://{packs[0]}" in result.stdout
    with zipfile.ZipFile(packs[0]) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    assert names[0] == "executive-summary.html" and "findings.csv" in names
    for name in names:
        assert name in result.stdout
