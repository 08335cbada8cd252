"""README's "Using it from your application" example, run as written against a real worker."""

from __future__ import annotations

import json
import re

import pytest
import requests
from sqlalchemy import create_engine

from tests.conftest import ROOT
from tests.support.packs import open_zip, seed

pytestmark = pytest.mark.e2e


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using it from your application", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_exports_a_pack_with_the_host_engine(stack, worker, monkeypatch):
    for key, value in stack.env.items():
        if key.startswith(("REVIEWPACKS_", "AWS_")):
            monkeypatch.setenv(key, value)
    namespace: dict = {}
    exec(compile(_example(), "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    ids = seed(stack, findings=30)
    host_engine = create_engine(stack.settings.database_url, pool_size=2)
    try:
        url = namespace["export_tenant"](host_engine, ids.tenant_id, ids.manager_id)
        # The host's engine is still usable after the client's `with` block closed.
        with host_engine.connect():
            pass
    finally:
        host_engine.dispose()
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    archive = open_zip(response.content)
    assert "executive-summary.html" in archive.namelist()
    assert json.loads(archive.read("metadata.json"))["options"]["include_pii"] is False
