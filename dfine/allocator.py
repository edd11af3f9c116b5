"""Keep freed tensor memory in the process, so that CPU inference does not page-fault on every pass.

glibc's ``malloc`` gives large blocks their own ``mmap`` (above a threshold that it moves between
128 KiB and 32 MiB) and hands freed memory at the top of its heap back to the operating system. A
D-FINE forward pass allocates and frees tens of MiB of feature maps, so every pass touches fresh
pages that the kernel must fault in and zero: about 16,600 page faults (65 MiB) in one 640x640
pass of D-FINE-S, some 10% of its time on one core. Fixing both thresholds high keeps that memory in
the heap, where the next pass finds it. The cost: the process keeps its peak memory (the freed
blocks stay mapped, up to ``trim_mb`` of them).

It is process-wide, so dfine sets it only where it runs the inference itself: ``Detector`` with the
PyTorch backend on the CPU, which the CLI's predict / track / benchmark use. ``DFINE_KEEP_MEMORY=0``
in the environment leaves the allocator as it is. Other C libraries (musl, macOS, Windows) are left
alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(mmap_mb: int = 512, trim_mb: int = 1024) -> bool:
    """Make glibc serve blocks below ``mmap_mb`` MiB from its heap and keep up to ``trim_mb`` MiB of
    freed heap; once per process. Returns whether the setting is in force (False: not glibc, or
    turned off by ``DFINE_KEEP_MEMORY=0``)."""
    global _done
    if _done:
        return True
    if os.environ.get("DFINE_KEEP_MEMORY", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, trim_mb << 20) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
