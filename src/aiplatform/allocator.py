"""The C allocator of the API process, set for a server that streams large request bodies.

An upload arrives as 256 KiB chunks, gathered into batches of a few MiB that threads hash and
write, then free. glibc's defaults hand such memory back to the kernel as soon as a batch is
freed (the top of the heap is trimmed past 128 KiB to 512 KiB), so the next batch has the
kernel map and zero fresh pages again: 22,000 to 30,000 page faults per 256 MiB uploaded, and
0.62 s of the server's CPU against 0.55 s with the memory kept (bench/dataset_upload.py
reports both). Kept for reuse, the same few batches' memory serves the whole upload.
"""

from __future__ import annotations

import ctypes
import sys

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Free memory at the top of the heap kept for reuse: a few uploads' batches in flight.
TRIM_THRESHOLD_BYTES = 64 << 20
# Larger blocks still get memory of their own, handed back as soon as they are freed: a
# one-off allocation of hundreds of MiB must not stay in the heap.
MMAP_THRESHOLD_BYTES = 16 << 20


def keep_freed_memory_for_reuse() -> bool:
    """Sets the thresholds where the C library is glibc; returns whether it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # absent from other C libraries (musl)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
