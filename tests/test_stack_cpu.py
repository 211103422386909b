"""The idle-stack CPU meter (devtools/stack_cpu.py): what it counts of a component, and its refusal of a bad --set.
No Airflow here: a stand-in process tree that burns a known amount of CPU."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from devtools.stack_cpu import parse_settings, tree_cpu_s

# A process that burns 0.3 s of CPU in a child it then reaps, starts a child in a session of its own (as PostgreSQL
# starts its backends; Airflow 2's scheduler moves its DAG processor into a group of its own) that burns 0.2 s and
# stays, burns 0.3 s itself, and says "ready" and the PID of that child. CPU time, not wall time: a loaded machine
# changes when, not how much.
STAND_IN = textwrap.dedent(
    """
    import os, subprocess, sys, time
    BURN = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < {s}: pass\\n"
    subprocess.run([sys.executable, "-c", BURN.format(s=0.3)], check=True)
    stays = subprocess.Popen(
        [sys.executable, "-c", BURN.format(s=0.2) + "print('burnt', flush=True)\\ntime.sleep(60)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    stays.stdout.readline()
    exec(BURN.format(s=0.3))
    print("ready", stays.pid, flush=True)
    time.sleep(60)
    """
)


def test_a_components_cpu_counts_its_process_its_reaped_children_and_descendants_in_other_sessions() -> None:
    """tree_cpu_s of the stand-in is at least the 0.8 s its three processes burnt: its own, the reaped child's
    (through its cutime) and that of a live child in a session of its own."""
    leader = subprocess.Popen(
        [sys.executable, "-c", STAND_IN], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    other = 0
    try:
        assert leader.stdout is not None
        ready, pid = leader.stdout.readline().split()
        other = int(pid)
        assert ready == "ready"
        assert tree_cpu_s(leader.pid) >= 0.8
    finally:
        for group in (leader.pid, other):
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(group, signal.SIGKILL)
        leader.wait(10)


def test_a_set_without_an_equals_sign_is_refused_naming_it_and_the_form() -> None:
    """--set FOO stops with an error that names the word and shows a complete KEY=VALUE command."""
    assert parse_settings(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(SystemExit, match=r"--set 'FOO': expected KEY=VALUE, e\.g\. python -m devtools\.stack_cpu "):
        parse_settings(["FOO"])
