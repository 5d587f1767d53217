"""worker.memory: glibc malloc tuning keeps freed image-sized buffers in the heap.

Checked through glibc's own accounting (``mallinfo2``) in a fresh process: after an image-sized block
is freed, the heap keeps it (``keepcost``, the releasable top of the heap) instead of handing it back
to the OS, which would make the next buffer of that size fault its pages in again."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

from worker import memory


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")  # glibc 2.33 and later
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc's mallopt and mallinfo2"
)

CHILD = """
import ctypes, json, sys
from worker import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
tuned = sys.argv[1] == "tuned" and memory.tune_malloc()
size = int(sys.argv[2])
block = libc.malloc(size)
mmapped = libc.mallinfo2().hblkhd
libc.free(block)
print(json.dumps({"tuned": bool(tuned), "mmapped": mmapped, "kept": libc.mallinfo2().keepcost}))
"""
IMAGE_BYTES = 12 * 1024 * 1024  # a 1024² RGB float32 image
LARGE_BYTES = 48 * 1024 * 1024  # 2048²: above glibc's largest mmap threshold (32 MiB)


def freed_image_block(mode: str, size: int = IMAGE_BYTES) -> dict:
    cmd = [sys.executable, "-c", CHILD, mode, str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("size", [IMAGE_BYTES, LARGE_BYTES], ids=["1024²", "2048²"])
def test_tuned_heap_keeps_a_freed_image_buffer(size):
    got = freed_image_block("tuned", size)
    assert got["tuned"] is True
    assert got["mmapped"] < size, got  # served from the heap, not by its own mmap
    assert got["kept"] >= size, got  # and kept there once freed (0 as trim threshold: ~128 KB)


def test_untuned_glibc_hands_the_block_back():
    """The control: glibc's defaults map the block by itself and unmap it on free."""
    got = freed_image_block("default")
    assert got["tuned"] is False
    assert got["mmapped"] >= IMAGE_BYTES and got["kept"] < IMAGE_BYTES, got


def test_thresholds_fit_mallopts_int_parameter():
    for value in (memory.MMAP_THRESHOLD, memory.TRIM_THRESHOLD):
        assert ctypes.c_int(value).value == value


def test_a_value_too_large_for_a_c_int_is_refused_not_wrapped():
    libc = ctypes.CDLL("libc.so.6")
    with pytest.raises(ValueError, match="does not fit a C int"):
        memory._mallopt(libc, memory.M_TRIM_THRESHOLD, 16 * 1024**3)  # would wrap to 0: trim on every free
