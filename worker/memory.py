"""Process memory tuning for workers.

Effects allocate image-sized buffers (tens of MB) per step. glibc serves blocks that large with mmap
and returns them to the OS on free, so every new buffer page-faults again: measured at 1024², the
13-effect chain took 154 ms with the default allocator and 97 ms with these settings, and a batch of
8 became faster per image than a batch of 1 instead of slower; peak memory did not change.

Until 2026-12-04 the trim threshold was passed as 16 GiB, which ctypes cut to 0 (mallopt takes a C
int): glibc then trimmed the top of the heap on every free, and buffers there faulted in again. With
the threshold that was meant (the largest a C int holds), ``benchmarks/effects.py``'s chain row went
from 46-50 ms to 30 ms and the conversions from 3.9-4.1 ms to 2.5 ms in the same sitting.

Blocks above glibc's largest mmap threshold (32 MiB: one 2048² float image, a batch of three 1024²
ones) were still mapped and faulted in for each use. mmap is now off (``M_MMAP_MAX=0``): the main
thread's heap serves any size, and a job slot's or the batcher's arena up to its 64 MiB heap size
(larger blocks are still mapped). A worker draining 2048² full-chain jobs went from 1.6-1.8 to 3.3-4.0
images/s; 256² jobs, whose buffers were below the threshold anyway, measured within the noise.
Putting every thread on the main arena as well (``M_ARENA_MAX=1``, set before any thread starts) made
2048² jobs faster still (4.7-5.3 images/s) but is left out: one arena's lock for all job slots, and
the 256² pairs with it measured 183 and 200 against 226 and 207 jobs/s.

The price: freed memory stays with the process (its resident size stays near its peak), as the
trim threshold intends for a worker that will need those buffers again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
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
        ok = ok and _mallopt(libc, M_MMAP_MAX, 0)
    except (OSError, AttributeError) as exc:
        log.info("malloc tuning not available: %s", exc)
        return False
    return bool(ok)


def _mallopt(libc: ctypes.CDLL, param: int, value: int) -> bool:
    """``mallopt(param, value)``; a value that does not fit a C int is refused (ctypes would wrap it)."""
    if ctypes.c_int(value).value != value:
        raise ValueError(f"mallopt value {value} does not fit a C int")
    return bool(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)))
