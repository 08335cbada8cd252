"""Earlier revisions as modules, for a revision that reuses or restores what one of them wrote."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

VERSIONS = Path(__file__).with_name("versions")


def revision_module(name: str) -> ModuleType:
    """The revision file ``versions/<name>.py`` loaded as a module (revision files are not a package)."""
    spec = importlib.util.spec_from_file_location(f"_reviewpacks_revision_{name}", VERSIONS / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no revision file {name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
