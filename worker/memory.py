"""Process memory tuning for workers.

Effects allocate image-sized buffers (tens of MB) per step. glibc serves blocks that large with mmap
and returns them to the OS on free, so every new buffer page-faults again: measured at 1024², the
13-effect chain took 154 ms with the default allocator and 97 ms with these settings, and a batch of
8 became faster per image than a batch of 1 instead of slower; peak memory did not change.

Until 2026-12-04 the trim threshold was passed as 16 GiB, which ctypes cut to 0 (mallopt takes a C
int): glibc then trimmed the top of the heap on every free, and buffers there faulted in again. With
the threshold that was meant (the largest a C int holds), ``benchmarks/effects.py``'s chain row went
from 46-50 ms to 30 ms and the conversions from 3.9-4.1 ms to 2.5 ms in the same sitting.

Blocks above glibc's largest mmap threshold (32 MiB: a batch of three 1024² images) are still mapped
and unmapped each time; a worker-like run of 1024² jobs measured no gain from serving them from the
heap (``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0``), so that stays as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
# mallopt takes a C int: the largest trim threshold it can express is 2 GiB - 1 (free memory at the top
# of the heap is kept up to that). A larger Python int would be cut to its low 32 bits by ctypes: 16 GiB
# became 0, which trims the heap on every free, so each new image-sized buffer page-faulted again
# (a fresh 1024² float image: 3.4 ms instead of 0.17 ms).
TRIM_THRESHOLD = 2**31 - 1


def tune_malloc() -> bool:
    """Keep freed large blocks in the heap (glibc only); True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = _mallopt(libc, M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        ok = ok and _mallopt(libc, M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError) as exc:
        log.info("malloc tuning not available: %s", exc)
        return False
    return bool(ok)


def _mallopt(libc: ctypes.CDLL, param: int, value: int) -> bool:
    """``mallopt(param, value)``; a value that does not fit a C int is refused (ctypes would wrap it)."""
    if ctypes.c_int(value).value != value:
        raise ValueError(f"mallopt value {value} does not fit a C int")
    return bool(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)))
