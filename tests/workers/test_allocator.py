"""The worker keeps megabyte buffers in its heap instead of faulting fresh pages in for each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_FAULTS = """
import json, resource, sys
from workers import allocator
tuned = None
if sys.argv[1] == "tuned":
    tuned = allocator.keep_large_buffers()
elif sys.argv[1] == "worker_init":
    # What a starting worker sends; the app module connects the tuning to it.
    from celery.signals import worker_init
    from workers import app
    worker_init.send(sender=None)
data = bytes(1 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    copy = bytes(bytearray(data))  # a fresh 1 MiB buffer, freed on the next round
    del copy
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_with_the_thresholds_set_a_freed_megabyte_buffer_is_reused():
    usual, tuned = _faults("usual"), _faults("tuned")
    assert tuned["tuned"] is True
    # Untuned, each round maps a buffer afresh and faults in its 256 pages at least once.
    assert usual["faults"] > 200 * 100
    assert tuned["faults"] < usual["faults"] / 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_the_worker_sets_them_when_it_starts():
    usual, started = _faults("usual"), _faults("worker_init")
    assert started["faults"] < usual["faults"] / 10
