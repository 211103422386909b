"""The reaper stops what a killed test process started (devtools/reaper.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devtools import reaper
from devtools.procs import is_alive, stop_child
from tests.conftest import ROOT

#: A stand-in for a pytest process: starts its reaper and a real etcd (as the session fixture does, not detached),
#: prints the etcd's PID, then waits to be killed.
PARENT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from devtools import reaper
    from devtools.etcd_server import EtcdServer

    registry = Path(sys.argv[1])
    os.environ[reaper.REGISTRY_ENV] = str(registry)
    keep = reaper.start(registry)
    server = EtcdServer(data_dir=Path(sys.argv[2]), unsafe_no_fsync=True)
    server.start()
    print(server.pid, flush=True)
    time.sleep(600)
    """
)


def wait_gone(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_sigkilled_parent_s_etcd_is_stopped_by_its_reaper(tmp_path: Path) -> None:
    """A process that started a real etcd is killed with SIGKILL (no finally runs): its reaper stops that etcd."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "registry.tsv"), str(tmp_path / "etcd")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    etcd_pid = 0
    try:
        assert parent.stdout is not None
        etcd_pid = int(parent.stdout.readline())
        assert is_alive(etcd_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_gone(etcd_pid), f"etcd pid {etcd_pid} outlived its killed parent"
    finally:
        stop_child(parent, 10)
        if etcd_pid and is_alive(etcd_pid):
            os.kill(etcd_pid, signal.SIGKILL)


def test_a_recorded_pid_whose_command_line_changed_is_left_alone(tmp_path: Path) -> None:
    """A ``pid`` entry whose process no longer holds the recorded needle (a recycled PID) is not signalled; a
    matching one is stopped."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # reaper-needle"])
    try:
        # Popen returns once the child is forked, maybe before its exec: until then its command line is this one's.
        deadline = time.monotonic() + 10
        while b"reaper-needle" not in Path(f"/proc/{mine.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        entries = [reaper.Entry("pid", other.pid, "etcd"), reaper.Entry("pid", mine.pid, "reaper-needle")]
        assert reaper.reap(entries) == [mine.pid]
        assert mine.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        stop_child(other, 5)
        stop_child(mine, 5)


def test_a_registry_line_cut_short_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's lines are read back as written; a partial last line (a death mid-write) is skipped."""
    registry = tmp_path / "r.tsv"
    monkeypatch.setenv(reaper.REGISTRY_ENV, str(registry))
    reaper.record(123, "airflow", group=True)
    reaper.record(456, "etcd", group=False)
    with registry.open("a") as out:
        out.write("group\t78")
    assert reaper.read_registry(registry) == [reaper.Entry("group", 123, "airflow"), reaper.Entry("pid", 456, "etcd")]
