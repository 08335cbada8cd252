"""The import graph: domain -> storage -> reviewpacks (settings, runtime, logs) -> scheduler -> workers, no arrow back up."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# What each layer must never import, at module level or inside a function.
FORBIDDEN = {
    "domain": {"workers", "storage", "scheduler", "reviewpacks", "celeryconfig", "celery", "kombu", "sqlalchemy", "boto3"},
    "storage": {"workers", "scheduler", "reviewpacks", "celeryconfig", "celery", "kombu"},
    "reviewpacks": {"workers", "scheduler", "celeryconfig", "celery", "kombu"},
    "scheduler": {"workers", "celeryconfig"},
    "celeryconfig.py": {"workers", "scheduler", "storage"},
}
# Alembic runs this file as a script (never imported by the package); it reads the URL from the
# settings only when `alembic` is run by hand without one.
SCRIPTS = {"storage/migrations/env.py"}


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_a_layer_above_it(layer):
    files = [ROOT / layer] if layer.endswith(".py") else sorted((ROOT / layer).glob("**/*.py"))
    assert files
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[layer])
        for path in files
        if str(path.relative_to(ROOT)) not in SCRIPTS
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_importing_the_client_the_app_and_the_tasks_reads_no_setting_and_writes_no_file(tmp_path):
    # Every REVIEWPACKS_* value below would be refused if anything read it during import.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "user"), "PYTHONPATH": str(ROOT),
           "REVIEWPACKS_RETENTION_DAYS": "unreadable", "REVIEWPACKS_HOME": str(tmp_path / "home")}
    code = (
        "import celeryconfig, workers.app, workers.client, workers.tasks, workers.cli, scheduler.tasks, reviewpacks.runtime; "
        "print('imported')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
    assert sorted(p.name for p in tmp_path.iterdir()) == []
