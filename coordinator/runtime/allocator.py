"""The process's C allocator told to keep the memory a load frees for the next page, not give it back to the kernel.

A load of the store (a watcher's start, a relist, ``coordinator reconcile``) reads it in pages of thousands of keys:
each page's response (a megabyte or more), its parse and its triples are freed when the next page arrives. glibc gives
freed memory at the top of its heap back to the kernel once more than its trim threshold is free (by default twice the
largest chunk it lately served by ``mmap``: a few megabytes), and serves a chunk above its mmap threshold from a fresh
mapping, unmapped again when freed. Either way the next page's buffers are new pages, which the kernel hands out one
fault at a time, each zeroed: at the estate (3.47 M keys) a quarter to a third of a start's CPU was the kernel's,
mostly zeroing pages, and one fault in eight was memory the load had just given back
(``docs/explanation/performance.md``, the start-up read).

Rules:
- **Kept, within a bound.** The trim threshold becomes :data:`TRIM_BYTES`: at most that much free memory stays at the
  heap's top; a chunk up to :data:`MMAP_BYTES` (glibc's own ceiling for the threshold on 64-bit) comes from the heap,
  so it is reused instead of mapped and unmapped for each page. What the view holds is unchanged; the peak grows by at
  most the memory kept.
- **The operator's settings win.** An environment that already tunes glibc's malloc (``GLIBC_TUNABLES`` naming a
  ``glibc.malloc`` tunable, or ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_``) is left as it is.
- **glibc or nothing.** Another C library (musl in an Alpine image) is left alone: its ``mallopt`` does nothing, and the
  start only pays the faults.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping
from enum import Enum

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Free memory glibc may keep at the top of its heap: more than a page's transient buffers (a 5,000-key page of
#: 300-byte values is 1.5 MB as received, about as much again parsed), few enough not to matter beside the view.
TRIM_BYTES = 64 * 1024 * 1024
#: Chunks up to this size come from the heap (glibc's ceiling for the mmap threshold on 64-bit systems).
MMAP_BYTES = 32 * 1024 * 1024

_OPERATOR_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


class Allocator(Enum):
    """What :func:`keep_freed_memory` did (the ``allocator`` of the ``watcher.start`` log line)."""

    KEPT = "kept"  # glibc keeps freed memory for reuse (**Kept, within a bound**)
    OPERATOR = "operator"  # the environment tunes glibc's malloc (**The operator's settings win**)
    LIBC_DEFAULT = "libc-default"  # not glibc, or glibc refused (**glibc or nothing**)


def operator_tuned(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` already tunes glibc's malloc (**The operator's settings win**)."""
    return any(name in environ for name in _OPERATOR_VARIABLES) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> Allocator:
    """Tell glibc to keep what a load frees (the module's rules); once, before the first load of the process."""
    if operator_tuned(environ):
        return Allocator.OPERATOR
    if not sys.platform.startswith("linux"):
        return Allocator.LIBC_DEFAULT
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  # glibc's own symbol: musl has a mallopt that does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return Allocator.LIBC_DEFAULT
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt answers 1 when it took the value; glibc takes both on every platform it runs on.
    if mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) != 1:
        return Allocator.LIBC_DEFAULT
    return Allocator.KEPT
