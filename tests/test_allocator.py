"""The process's allocator keeps what a load frees (``coordinator.runtime.allocator``), and leaves the operator's
settings and other C libraries alone."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from coordinator.runtime import allocator
from coordinator.runtime.allocator import Allocator, keep_freed_memory, operator_tuned

ROOT = Path(__file__).resolve().parents[1]

# A load's pattern in small: a page's buffers (the response, its parse, its triples: here three of 2 MB) made, then
# freed when the next page comes; by default glibc gives the freed top of its heap back to the kernel each time (more
# than twice its largest recent chunk is free there). Prints what ``keep_freed_memory`` said and the minor page faults
# the loop cost.
_PAGES = """
import resource, sys
from coordinator.runtime.allocator import keep_freed_memory
said = keep_freed_memory() if sys.argv[1] == "keep" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    page = [b"x" * (2 << 20) for _ in range(3)]
    del page
print(said.value if said else "-", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _pages(mode: str, **env: str) -> tuple[str, int]:
    clean = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run([sys.executable, "-c", _PAGES, mode], capture_output=True, text=True, env=clean, check=True)
    said, faults = out.stdout.split()
    return said, int(faults)


def test_freed_pages_are_reused_not_faulted_in_again() -> None:
    """With the allocator told to keep freed memory, fifty pages of buffers made and freed in turn cost the faults of
    about one; without, each page faults its memory in again."""
    said, kept = _pages("keep")
    _, returned = _pages("default")
    assert said == "kept"
    assert returned >= 40 * 512  # the default gives each page back: the loop is what this test is about
    assert kept < returned / 10


def test_the_operators_settings_win() -> None:
    """An environment that tunes glibc's malloc is left as it is: nothing is changed and the answer says so."""
    for environ in (
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"},
        {"GLIBC_TUNABLES": "glibc.rtld.nns=2:glibc.malloc.hugetlb=1"},
        {"MALLOC_TRIM_THRESHOLD_": "1048576"},
        {"MALLOC_MMAP_THRESHOLD_": "1048576"},
    ):
        assert operator_tuned(environ)
        assert keep_freed_memory(environ) is Allocator.OPERATOR
    assert not operator_tuned({"GLIBC_TUNABLES": "glibc.rtld.nns=2"})


def test_the_operators_tunable_is_kept_in_a_real_process() -> None:
    """A process started with a malloc tunable says ``operator`` and its allocator behaves as the tunable says."""
    said, _ = _pages("keep", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1048576")
    assert said == "operator"


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C library without glibc's symbols (musl) gets no mallopt call: the answer is ``libc-default``."""
    called: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        called.append((param, value))
        return 1

    musl = types.SimpleNamespace(mallopt=mallopt)  # no gnu_get_libc_version
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: musl)
    assert keep_freed_memory({}) is Allocator.LIBC_DEFAULT
    assert called == []
