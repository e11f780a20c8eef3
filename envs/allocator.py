"""Keep freed array memory in the process heap, so the simulator's per-step temporaries do not page-fault.

Every simulator step allocates and frees arrays of 0.1-20 MB. Under glibc's start-up settings, blocks
above the ``mmap`` threshold (128 KiB, raised only when a larger mapped block is freed) come fresh from
the kernel, and freed memory at the top of the heap beyond the trim threshold goes back to it; the next
step then page-faults the same memory in again. With the four trained arms this cost about a third of
the simulator's time, and how much depended on which arrays happened to be freed first.

:func:`reuse_freed_memory` sets the mmap threshold once to 32 MiB, the ceiling glibc's own adjustment
reaches on 64-bit machines, and the trim threshold to twice that, as glibc's adjustment does. Blocks
under 32 MiB are then reused from the heap, and up to 64 MiB of free heap top is kept; larger blocks
still come from and go back to the kernel. Settings given through ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` are left alone, and so is any C library other than glibc.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES


@functools.cache
def reuse_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (once per process); True if they are set."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it
    except (OSError, AttributeError):
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
