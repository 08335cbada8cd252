"""The worker's C allocator keeps the megabyte buffers of a build instead of mapping each afresh.

A build passes every 1 MiB block of findings through a handful of buffers (read, settled,
deflated). glibc serves any allocation of 128 KiB or more from pages mapped for it alone
(at first; its threshold then adapts, but trimming the heap's top gives the pages back), so
each new buffer faults its pages in again: about 200,000 page faults and 0.4 s of CPU in the
build of a million findings. With the thresholds below, buffers of up to 4 MiB come from the
heap and up to 16 MiB of freed heap is kept for the next one; the build's peak memory does
not grow (bench/results.md).

Only the worker process sets this (workers/app.py, at ``worker_init``, before the pool forks its
children, which inherit it); a host application that embeds the client keeps its own allocator
settings.
"""

from __future__ import annotations

import ctypes
import sys

MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20
# mallopt's parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_large_buffers() -> bool:
    """Set the thresholds when the C library is glibc; whether it was."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    # musl and other C libraries have no gnu_get_libc_version; their mallopt is not glibc's.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
