"""The idle-stack CPU meter (devtools/stack_cpu.py): what it counts of a session, and its refusal of a bad --set.
No Airflow here: a stand-in session of processes that burn a known amount of CPU."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from devtools.stack_cpu import parse_settings, session_cpu_s

# A session leader that burns 0.3 s of CPU in a child it then reaps, starts a child in a process group of its own
# (as Airflow 2's scheduler moves its DAG processor manager) that burns 0.2 s and stays, burns 0.3 s itself, and
# says "ready" and the PID of that group. CPU time, not wall time: a loaded machine changes when, not how much.
SESSION = textwrap.dedent(
    """
    import os, subprocess, sys, time
    BURN = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < {s}: pass\\n"
    subprocess.run([sys.executable, "-c", BURN.format(s=0.3)], check=True)
    stays = subprocess.Popen(
        [sys.executable, "-c", BURN.format(s=0.2) + "print('burnt', flush=True)\\ntime.sleep(60)"],
        stdout=subprocess.PIPE, process_group=0,
    )
    stays.stdout.readline()
    exec(BURN.format(s=0.3))
    print("ready", stays.pid, flush=True)
    time.sleep(60)
    """
)


def test_a_sessions_cpu_counts_its_leader_its_other_groups_and_the_children_they_reaped() -> None:
    """session_cpu_s of the stand-in session is at least the 0.8 s its three processes burnt: the leader's own, the
    reaped child's (through the leader's cutime) and that of a live process in another process group."""
    leader = subprocess.Popen(
        [sys.executable, "-c", SESSION], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    other_group = 0
    try:
        assert leader.stdout is not None
        ready, pid = leader.stdout.readline().split()
        other_group = int(pid)
        assert ready == "ready"
        assert session_cpu_s(leader.pid) >= 0.8
    finally:
        for group in (leader.pid, other_group):
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(group, signal.SIGKILL)
        leader.wait(10)


def test_a_set_without_an_equals_sign_is_refused_naming_it_and_the_form() -> None:
    """--set FOO stops with an error that names the word and shows a complete KEY=VALUE command."""
    assert parse_settings(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(SystemExit, match=r"--set 'FOO': expected KEY=VALUE, e\.g\. python -m devtools\.stack_cpu "):
        parse_settings(["FOO"])
