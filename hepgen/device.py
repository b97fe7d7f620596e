"""Where tensors go, and how the CPU process keeps its memory.

* :func:`default_device`: the first CUDA GPU when one is present, else the CPU.
* :func:`keep_freed_memory`: tell glibc's allocator to keep freed blocks for reuse.

Why the second: on the CPU every new tensor of more than 128 kB (glibc's default mmap
threshold, adjusted upwards only one size at a time) comes fresh from the kernel, and
each 4 kB page of it costs a page fault at first touch (~2-3 us). A generator pass over
256 jets makes tens of such tensors per block; session 9 counted 3600 faults per pass of
MDMA-GAN, a fifth of its sampling time, and the same pattern in every trainer step. The
remedy PyTorch's performance guide gives is a caching allocator (jemalloc, tcmalloc via
``LD_PRELOAD``), which a Python package cannot install into a running process; glibc's own
``mallopt`` settings give the same effect: blocks up to 32 MB come from the heap and
freed memory is not handed back, so the next pass reuses pages that are already mapped.
The process keeps its peak memory (as with those allocators). No effect off glibc;
``HEPGEN_KEEP_MEMORY=0`` switches it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_kept = False


def default_device() -> torch.device:
    """``cuda`` if available (override with HEPGEN_DEVICE=cpu|cuda[:N]), else ``cpu``."""
    forced = os.environ.get("HEPGEN_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (module docstring); True when in effect.
    Called by the CLI, the samplers and the trainers; safe to call any number of times."""
    global _kept
    if _kept or os.environ.get("HEPGEN_KEEP_MEMORY", "1") == "0":
        return _kept
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mmap only above 32 MB (glibc's maximum); never trim the heap
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _kept
