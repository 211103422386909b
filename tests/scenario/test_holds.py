"""Holds through a real watcher and the fake Airflow (issue 51): a hold keeps dependents back while its root reruns,
a release starts each held run once, a kill -9 while holding changes nothing, and retract holds and lists."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.scenario.conftest import DOWNSTREAM, FAN_IN, LAST, PIPELINE, ROOT_DAG, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario


def ops(stack: Stack, *words: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``coordinator <words>`` of a command that reads no dependencies file (``holds``, ``history``,
    ``release-hold``)."""
    result = stack.command(*words, "--etcd", stack.endpoint, "--prefix", stack.prefix)
    if check:
        assert result.returncode == 0, (words, result.stdout, result.stderr)
    return result


def hold_id(output: str) -> str:
    first = output.splitlines()[0]
    assert first.startswith("hold h-"), output
    return first.split()[1].rstrip(":")


def test_hold_downstream_keeps_dependents_back_while_root_reruns_and_release_starts_each_once(stack: Stack) -> None:
    """With a --downstream hold on 01 for P, two successes of 01 start none of 02..07; the release starts each once."""
    p, other = new_partition(), new_partition()
    stack.start_watcher()
    held = hold_id(stack.cli("hold", ROOT_DAG, "--downstream", "--from", p, "--to", p, "--reason", "bad data in 01",
                             "--by", "alice").stdout)  # fmt: skip
    stack.trigger_root(p)
    stack.wait_success(ROOT_DAG, p)
    stack.settle()
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")  # the root reruns while held
    stack.wait_success(ROOT_DAG, p, attempt=1)
    stack.settle()
    assert [stack.fake.creates(d) + stack.fake.clears(d) for d in DOWNSTREAM] == [0] * 6
    assert all(stack.ledger(d, p) is None for d in DOWNSTREAM)
    # Another partition is not held: it cascades as usual.
    stack.trigger_root(other)
    stack.wait_success(LAST, other)
    watcher = stack.watchers[0]
    assert watcher.lines(rf"hold\.held dag=default/{FAN_IN[0]} partition={p} hold={held}")
    assert len(watcher.lines(rf"hold\.held dag=default/{FAN_IN[0]} partition={p} ")) == 1  # once per key and hold
    listed = json.loads(ops(stack, "holds", "--format", "json").stdout)
    assert [h["id"] for h in listed] == [held]

    ops(stack, "release-hold", held, "--reason", "fixed", "--by", "alice")
    stack.wait_success(LAST, p)
    stack.settle()
    for dag in DOWNSTREAM:
        runs = [r for r in stack.fake_runs(dag, p)]
        assert len(runs) == 1, (dag, runs)
        assert len([e for e in stack.executions(dag, p)]) == 1, dag
    assert json.loads(ops(stack, "holds", "--format", "json").stdout) == []
    trail = json.loads(ops(stack, "history", "--format", "json").stdout)
    assert [(e["action"], e["hold"], e["by"]) for e in trail] == [("hold", held, "alice"), ("release", held, "alice")]


def test_kill9_while_holding_changes_nothing(stack: Stack) -> None:
    """A leader killed with kill -9 while a hold stands: the next leader holds the same runs, and releases them once."""
    p = new_partition()
    first = stack.start_watcher("w1")
    held = hold_id(stack.cli("hold", ROOT_DAG, "--downstream", "--reason", "bad data", "--by", "bob").stdout)
    stack.trigger_root(p)
    stack.wait_success(ROOT_DAG, p)
    stack.settle()
    first.kill9()
    stack.start_watcher("w2")
    stack.settle()
    assert [stack.fake.creates(d) + stack.fake.clears(d) for d in DOWNSTREAM] == [0] * 6
    ops(stack, "release-hold", held)
    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)


def test_retract_holds_dependents_not_started_and_lists_those_that_ran(stack: Stack) -> None:
    """retract of a hand-marked success of 02 lists 02's runs below it that ran, and holds what has not started."""
    p = new_partition()
    stack.start_watcher()
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.settle()
    before = {d: stack.fake.creates(d) + stack.fake.clears(d) for d in PIPELINE}
    out = stack.cli("retract", FAN_IN[0], "-p", p, "--reason", "empty file", "--by", "carol").stdout
    assert "retracted default/02_pipeline" in out
    assert "default/06_pipeline" in out and "default/07_pipeline" in out  # they ran on it
    record = stack.run_record(FAN_IN[0], p)
    assert record is not None and record["state"] == "failed" and record["source"] == "retract:carol"
    # The fix: 02 succeeds again (a new attempt); 06 and 07 do not rerun while the retract's hold stands.
    stack.fake.clear_run(FAN_IN[0], stack.fake_runs(FAN_IN[0], p)[0].run_id)
    wait_for(lambda: (stack.run_record(FAN_IN[0], p) or {}).get("state") == "success", "02 fixed")
    stack.settle()
    assert {d: stack.fake.creates(d) + stack.fake.clears(d) for d in PIPELINE} == {**before, FAN_IN[0]: 2}
    hold = json.loads(ops(stack, "holds", "--format", "json").stdout)[0]
    assert hold["retracted"] == f"default/{FAN_IN[0]}@{p}"
    ops(stack, "release-hold", hold["id"])
    wait_for(lambda: stack.fake.clears(LAST) == 1, "07 reran once after the release")
    stack.settle()
    assert stack.fake.clears("06_pipeline") == 1 and stack.fake.clears(LAST) == 1


def test_bad_input_is_refused_with_what_is_wrong(stack: Stack) -> None:
    """A hold on an unknown DAG, a reversed range or a release of no hold exits 2 naming the problem."""
    p = new_partition()
    unknown = stack.cli("hold", "nope", "--reason", "x", check=False)
    assert unknown.returncode == 2 and "'nope' is not in the graph" in unknown.stderr
    reversed_range = stack.cli("hold", ROOT_DAG, "--from", "2031-02-01", "--to", "2031-01-01", "--reason", "x",
                               check=False)  # fmt: skip
    assert reversed_range.returncode == 2 and "swap them" in reversed_range.stderr
    missing = ops(stack, "release-hold", "h-00000000", check=False)
    assert missing.returncode == 2 and "there is no hold h-00000000" in missing.stderr
    nothing = stack.cli("retract", ROOT_DAG, "-p", p, "--reason", "x", check=False)
    assert nothing.returncode == 1 and "not a success: nothing to retract" in nothing.stderr


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "howto" / "incidents.md"
#: The guide's example hold ids, in the order its commands create them.
GUIDE_IDS = ("h-3fa2c1d0", "h-77d0e1a2")


def guide_commands() -> list[list[str]]:
    """The commands of the block after ``<!-- incidents-commands -->`` in docs/howto/incidents.md."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(r"<!-- incidents-commands -->\n```bash\n(.*?)```", text, re.S)
    assert found, "docs/howto/incidents.md lost its incidents-commands block"
    lines = [shlex.split(line) for line in found.group(1).splitlines() if line.strip()]
    assert all(words[0] == "coordinator" for words in lines), lines
    # Every command the guide shows elsewhere is one of the block's.
    shown = {line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()}
    assert {shlex.join(words) for words in lines} >= {shlex.join(shlex.split(line)) for line in shown if line}, shown
    return [words[1:] for words in lines]


def test_the_incidents_guide_runs_as_written(stack: Stack) -> None:
    """Each command of docs/howto/incidents.md, in order, against a watcher: the hold keeps 02..07 back for 01's
    success on 2026-03-02, retract withdraws it and holds again, the two releases start each dependent once, and the
    history lists the four actions."""
    p = "2026-03-02T00:00:00Z"
    stack.start_watcher()
    env = {"COORDINATOR_ETCD_ENDPOINTS": stack.endpoint, "COORDINATOR_PREFIX": stack.prefix,
           "COORDINATOR_DEPS": str(stack.deps)}  # fmt: skip
    made: list[str] = []
    for words in guide_commands():
        if words[0] == "release-hold":
            words = [made[GUIDE_IDS.index(w)] if w in GUIDE_IDS else w for w in words]
        if words[0] == "retract":  # the bad success the guide takes back has landed meanwhile
            stack.trigger_root(p)
            stack.wait_success(ROOT_DAG, p)
            stack.settle()
            assert [stack.fake.creates(d) for d in DOWNSTREAM] == [0] * 6
        done = stack.command(*words, **env)
        assert done.returncode == 0, (words, done.stdout, done.stderr)
        for line in done.stdout.splitlines():
            if line.startswith("hold h-"):
                made.append(line.split()[1].rstrip(":"))
        if words[0] == "release-hold" and words[1] == made[0]:
            stack.settle()
            assert [stack.fake.creates(d) for d in DOWNSTREAM] == [0] * 6, "the retract's hold still holds"
    assert len(made) == 2
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")  # the fix: 01 succeeds again
    stack.wait_success(LAST, p)
    stack.settle()
    assert [stack.fake.creates(d) + stack.fake.clears(d) for d in DOWNSTREAM] == [1] * 6
    trail = json.loads(ops(stack, "history", "--format", "json").stdout)
    assert [e["action"] for e in trail] == ["hold", "retract", "release", "release"]


def test_an_expired_hold_lets_the_runs_start_at_its_until_with_nothing_written(stack: Stack) -> None:
    """A hold with --until a few seconds ahead keeps 02..07 back until then; at expiry they start once, with no
    release written."""
    p = new_partition()
    stack.start_watcher()
    until = (datetime.now(UTC) + timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.cli("hold", ROOT_DAG, "--downstream", "--until", until, "--reason", "wait for the reload")
    stack.trigger_root(p)
    stack.wait_success(ROOT_DAG, p)
    stack.settle()
    assert datetime.now(UTC) < datetime.fromisoformat(until), "the machine was too slow to see the hold hold"
    assert [stack.fake.creates(d) for d in DOWNSTREAM] == [0] * 6
    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)
    assert [e["action"] for e in json.loads(ops(stack, "history", "--format", "json").stdout)] == ["hold"]
