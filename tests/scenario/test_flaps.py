"""Semantics `flap-held` through a real watcher, a real etcd and the fake Airflow: an outside writer that alternates
the root's run-state key between two run ids (no ``run_after``: the run order cannot order it) reruns the dependents
once more, then the leader holds the key; ``status``, ``why``, ``doctor`` and the metric name it; a new leader after
a kill -9 holds it too; the release command ``doctor`` prints reruns each dependent once; audit and planner passes
move nothing in between or after."""

from __future__ import annotations

import json
import re
import shlex
import urllib.request

import pytest

from coordinator.core.flaps import release_command
from coordinator.core.model import NodeId
from tests.scenario.conftest import DOWNSTREAM, FAN_IN, ROOT_DAG, Stack, WatcherProc, new_partition, wait_for

pytestmark = pytest.mark.scenario

ROOT = NodeId("default", ROOT_DAG)


def outside_write(stack: Stack, partition: str, run_id: str) -> int:
    """What an outside writer (another team's job) writes: a success of its run, attempt 0, no ``run_after``."""
    record = {"state": "success", "run_id": run_id, "clear_number": 0, "source": "my-spark-job"}
    return stack.etcd.put(stack.run_key(ROOT_DAG, partition), json.dumps(record))


def audit_rounds(stack: Stack, watcher: WatcherProc, more: int) -> None:
    """Until the leader's audit has made ``more`` further rounds, then until nothing moves."""
    rounds = len(watcher.lines(r"audit checked="))
    wait_for(lambda: len(watcher.lines(r"audit checked=")) >= rounds + more, f"{more} more audit rounds")
    stack.settle()


def counts(stack: Stack) -> dict[str, int]:
    """Runs created and cleared per dependent, as the fake Airflow saw the calls."""
    return {d: stack.fake.creates(d) + stack.fake.clears(d) for d in DOWNSTREAM}


def flaps_gauge(watcher: WatcherProc) -> float:
    with urllib.request.urlopen(watcher.http_url() + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^coordinator_flaps_held (\S+)$", text, re.M)
    assert found, "coordinator_flaps_held is not served"
    return float(found.group(1))


def flap_check(stack: Stack) -> tuple[int, dict[str, object]]:
    result = stack.cli("doctor", "--format", "json", airflow=True, check=False)
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "flapping run states")
    return result.returncode, check


def test_an_outside_writer_alternating_two_runs_is_held_named_and_released_once(stack: Stack) -> None:
    """A, B reruns 02..07 once more; A again is held (no further run whatever the writer goes on writing, over
    audit rounds, and after the leader is killed with kill -9 and another leads); status, why, doctor (fail) and
    coordinator_flaps_held name it; doctor's release command reruns each dependent once; then nothing moves."""
    p = new_partition()
    leader = stack.start_watcher("w1", COORDINATOR_AUDIT_INTERVAL_S="1")
    outside_write(stack, p, "spark_A")
    stack.wait_success(DOWNSTREAM[-1], p)
    stack.settle()
    outside_write(stack, p, "spark_B")
    stack.wait_success(DOWNSTREAM[-1], p, attempt=1)
    stack.settle()
    assert counts(stack) == dict.fromkeys(DOWNSTREAM, 2)

    outside_write(stack, p, "spark_A")  # A, B, A: the same attempt of A again
    stack.settle()
    assert counts(stack) == dict.fromkeys(DOWNSTREAM, 2), "A, B, A reran the dependents again"
    key = stack.keys.flap_key(ROOT, p)
    wait_for(lambda: stack.etcd.get(key), "the leader to record the flap")
    for run_id in ("spark_B", "spark_A", "spark_B"):  # the writer goes on
        outside_write(stack, p, run_id)
        stack.settle()
    audit_rounds(stack, leader, 3)
    stack.assert_once(p, clears=1)  # the dependents ran for A and once more for B, then were held
    assert counts(stack) == dict.fromkeys(DOWNSTREAM, 2)
    assert len(leader.lines(rf"flap\.held dag=default/{ROOT_DAG} partition={p} runs=spark_A,spark_B ")) == 1
    record = json.loads(stack.etcd.get(key) or b"{}")
    assert record["run_ids"] == ["spark_A", "spark_B"] and record["by"] == "w1" and "released_at" not in record

    command = release_command(ROOT, p)
    status = stack.status_json(p)
    assert [(f["dag"], f["partition"], f["run_ids"]) for f in status["flaps"]] == [
        (f"default/{ROOT_DAG}", p, ["spark_A", "spark_B"])
    ]
    row = next(r for r in status["rows"] if r["dag"] == FAN_IN[0])
    assert f"{ROOT_DAG} for {p} is held" in row["summary"] and command in row["summary"]
    text = stack.cli("status", "-p", p).stdout
    assert "flapping:" in text
    assert command in " ".join(stack.cli("why", FAN_IN[0], "-p", p).stdout.split())
    assert "flapping:" in stack.cli("why", ROOT_DAG, "-p", p).stdout
    code, check = flap_check(stack)
    assert code == 1 and check["status"] == "fail"
    assert f"`{command}`" in str(check["fix"])
    assert flaps_gauge(leader) == 1.0

    leader.kill9()  # the record outlives the leader: the next one holds from etcd, with no memory of the successes
    leader = stack.start_watcher("w2", COORDINATOR_AUDIT_INTERVAL_S="1")
    outside_write(stack, p, "spark_A")
    stack.settle()
    audit_rounds(stack, leader, 2)
    assert counts(stack) == dict.fromkeys(DOWNSTREAM, 2)
    assert flaps_gauge(leader) == 1.0

    words = shlex.split(command)  # the command doctor prints, as an operator types it
    assert words[:2] == ["coordinator", "release-flap"]
    done = stack.command(*words[1:], "--by", "alice", "--etcd", stack.endpoint, "--prefix", stack.prefix)
    assert done.returncode == 0, done.stderr
    assert "released the flap of" in done.stdout
    stack.wait_success(DOWNSTREAM[-1], p, attempt=2)
    stack.settle()
    audit_rounds(stack, leader, 3)
    stack.assert_once(p, clears=2)  # each dependent once on the generation that stood at the release
    assert counts(stack) == dict.fromkeys(DOWNSTREAM, 3)
    assert stack.status_json(p)["flaps"] == []
    assert flap_check(stack)[1]["status"] == "ok"
    assert flaps_gauge(leader) == 0.0
    trail = json.loads(stack.command("history", "--format", "json", "--etcd", stack.endpoint, "--prefix",
                                     stack.prefix).stdout)  # fmt: skip
    entries = [(e["action"], e["target"], e["by"]) for e in trail]
    assert entries == [("release", f"flap default/{ROOT_DAG}@{p}", "alice")]
    again = stack.command(*words[1:], "--etcd", stack.endpoint, "--prefix", stack.prefix)
    assert again.returncode == 0 and "released already" in again.stdout


def test_release_flap_of_nothing_held_exits_2_naming_where_to_look(stack: Stack) -> None:
    """release-flap of a DAG and partition with no record, or of a bad partition, exits 2 saying what is wrong."""
    p = new_partition()
    none = stack.command("release-flap", ROOT_DAG, "-p", p, "--etcd", stack.endpoint, "--prefix", stack.prefix)
    assert none.returncode == 2 and f"no flap is recorded for {ROOT_DAG} {p}" in none.stderr
    bad = stack.command("release-flap", ROOT_DAG, "-p", "not a date", "--etcd", stack.endpoint)
    assert bad.returncode == 2 and "not a date" in bad.stderr
