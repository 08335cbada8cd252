"""The per-host scratch directory: one place for pack files, swept once they outlive the lease."""

from __future__ import annotations

import datetime as dt
import os
import stat
import tempfile
import time

import pytest

from storage import scratch


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _aged(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_files_live_in_one_private_directory_under_the_temp_dir(tmp_root):
    fd, path = scratch.new_file(7)
    os.close(fd)
    assert path.parent == tmp_root / "reviewpacks"
    assert path.name.startswith("review-pack-7-") and path.suffix == ".zip"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_sweep_deletes_only_files_older_than_the_lease(tmp_root):
    old_fd, old = scratch.new_file(1)
    new_fd, new = scratch.new_file(2)
    os.close(old_fd)
    os.close(new_fd)
    other = scratch.directory() / "not-a-pack.txt"
    other.write_text("kept")
    _aged(old, 120)
    _aged(other, 120)

    assert scratch.sweep(older_than=dt.timedelta(seconds=90)) == 1
    assert (old.exists(), new.exists(), other.exists()) == (False, True, True)


def test_a_claimed_pack_removes_its_earlier_attempts_files(tmp_root):
    for pack_id in (5, 5, 6):
        fd, _ = scratch.new_file(pack_id)
        os.close(fd)
    assert len(scratch.remove_pack_files(5)) == 2
    assert [p.name.split("-")[2] for p in scratch.directory().iterdir()] == ["6"]
