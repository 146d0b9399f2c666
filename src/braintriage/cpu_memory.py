"""Keep freed memory for reuse while training on a CPU (glibc's malloc, Linux).

PyTorch's CPU tensors come from malloc. glibc serves every block over 32 MB with a fresh mmap and unmaps it on
free, so each large activation map of a training step (EfficientNet-Lite0 at 160 px, batch 64: 59 MB) is
page-faulted in and zeroed by the kernel again, step after step. On a 2-core machine that took half of a
training step (benchmarks/README.md). Told to take no blocks from mmap and to never trim the heap, malloc
reuses the same memory instead: the process keeps its peak size, which a training run reaches anyway.
Elsewhere (macOS, Windows, musl) this is a no-op: their allocators differ.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
_done = False


def keep_freed_memory() -> bool:
    """Switch glibc's malloc to reuse large freed blocks (once per process). Returns whether it applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
