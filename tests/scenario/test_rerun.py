"""``plan rerun`` and ``rerun`` (issue 51) on the seven-DAG example across two deployments (``default`` holds 01..04,
``team_b`` 05..07, each its own fake Airflow), through a real watcher: the preview lists exactly the runs a real rerun
then clears or creates; ``--no-cascade`` reruns the root and nothing downstream; without it the cascade follows once."""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from coordinator.core.model import NodeId, canonical_partition
from tests.scenario.conftest import ROOT, ROOT_DAG, Stack, new_partition, wait_for
from tests.support.fake_airflow import FakeAirflow

pytestmark = pytest.mark.scenario

B = "team_b"
HERE = ("01_pipeline", "02_pipeline", "03_pipeline", "04_pipeline")
THERE = ("05_pipeline", "06_pipeline", "07_pipeline")
SPEC: dict[str, Any] = {
    "version": 1,
    "instances": {B: {}},
    "dags": {
        **{dag: {"upstreams": [ROOT_DAG]} for dag in HERE[1:]},
        f"{B}/05_pipeline": {"upstreams": [f"default/{ROOT_DAG}"]},
        f"{B}/06_pipeline": {"upstreams": [*(f"default/{d}" for d in HERE[1:]), f"{B}/05_pipeline"]},
        f"{B}/07_pipeline": {"upstreams": [f"{B}/06_pipeline"]},
    },
}
#: Every (instance, dag) of the example.
EVERY = [("default", d) for d in HERE] + [(B, d) for d in THERE]


@pytest.fixture
def team_b(stack: Stack) -> Iterator[FakeAirflow]:
    """The second deployment, whose plugin records its runs under ``runs/team_b/``, and the deps across both."""

    def on_state(dag_id: str, run_id: str, logical_date: datetime | None, state: str, clear_number: int) -> None:
        assert logical_date is not None
        key = stack.keys.run_key(NodeId(B, dag_id), canonical_partition(logical_date))
        record = {"state": state, "run_id": run_id, "clear_number": clear_number, "source": "fake"}
        stack.etcd.put(key, json.dumps(record), retry_s=30.0)

    fake = FakeAirflow(THERE, on_state=on_state, queue_delay_s=0.01, run_duration_s=0.05).start()
    stack.add_cleanup(fake.stop)
    stack.set_deps(SPEC)
    instances = stack.tmp_path / "instances.json"
    instances.write_text(json.dumps({B: {"url": fake.url, "username": "admin", "password_env": "B_PASSWORD"}}))
    yield fake


def start(stack: Stack) -> None:
    stack.start_watcher(COORDINATOR_INSTANCES_FILE=str(stack.tmp_path / "instances.json"), B_PASSWORD="admin")


def attempt(stack: Stack, instance: str, dag: str, partition: str) -> int | None:
    """The clear number of the success recorded for (instance/dag, partition), None while it is not a success."""
    raw = stack.etcd.get(stack.keys.run_key(NodeId(instance, dag), partition))
    record = json.loads(raw) if raw is not None else None
    return record["clear_number"] if record is not None and record["state"] == "success" else None


def wait_attempt(stack: Stack, instance: str, dag: str, partition: str, n: int) -> None:
    wait_for(lambda: attempt(stack, instance, dag, partition) == n, f"{instance}/{dag} attempt {n} for {partition}")


def cascaded(stack: Stack) -> str:
    p = new_partition()
    start(stack)
    stack.trigger_root(p)
    wait_attempt(stack, B, "07_pipeline", p, 0)
    stack.settle()
    return p


def effects(stack: Stack, fake_b: FakeAirflow) -> dict[tuple[str, str], tuple[int, int]]:
    """(instance, dag) -> (creates, clears) in its Airflow so far."""
    fakes = {"default": stack.fake, B: fake_b}
    return {(i, d): (fakes[i].creates(d), fakes[i].clears(d)) for i, d in EVERY}


def changed(before: dict[tuple[str, str], tuple[int, int]], after: dict[tuple[str, str], tuple[int, int]]) -> set[
    tuple[str, str, str]
]:  # fmt: skip
    """(instance, dag, create|clear) for every DAG whose counters moved, once per step it took."""
    found = set()
    for at, (creates, clears) in after.items():
        if creates > before[at][0]:
            found.add((*at, "create"))
        if clears > before[at][1]:
            found.add((*at, "clear"))
    return found


def plan_json(stack: Stack, p: str, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        stack.cli("plan", "rerun", ROOT_DAG, "--from", p, "--to", p, "--format", "json", *extra).stdout
    )
    return data


def rerun(stack: Stack, p: str, *extra: str, check: bool = True) -> Any:
    return stack.cli("rerun", ROOT_DAG, "--from", p, "--to", p, *extra, airflow=True, check=check)


def test_plan_rerun_lists_exactly_the_runs_a_real_rerun_clears_and_triggers(stack: Stack, team_b: FakeAirflow) -> None:
    """The preview's runs (instance, DAG, step, depth) are the clears and creates both Airflows then saw, each once."""
    p = cascaded(stack)
    planned = plan_json(stack, p)
    listed = {(r["instance"], r["dag"], r["step"]) for r in planned["runs"]}
    assert {(r["dag"], r["depth"]) for r in planned["runs"]} == {
        ("01_pipeline", 0), ("02_pipeline", 1), ("03_pipeline", 1), ("04_pipeline", 1), ("05_pipeline", 1),
        ("06_pipeline", 2), ("07_pipeline", 3),
    }  # fmt: skip
    assert planned["counts"] == {"default": 4, B: 3}
    before = effects(stack, team_b)
    rerun(stack, p, "--yes")
    wait_attempt(stack, B, "07_pipeline", p, 1)
    stack.settle()
    assert changed(before, effects(stack, team_b)) == listed
    after = effects(stack, team_b)
    assert all(after[at][1] - before[at][1] == 1 for at in EVERY), "each run cleared exactly once"


def test_rerun_no_cascade_reruns_the_root_only_and_a_later_rerun_cascades_once(
    stack: Stack, team_b: FakeAirflow
) -> None:
    """--no-cascade: the preview lists the root only, the root reruns and nothing downstream in either deployment;
    a rerun without it afterwards cascades once through both."""
    p = cascaded(stack)
    planned = plan_json(stack, p, "--no-cascade")
    assert [(r["dag"], r["step"]) for r in planned["runs"]] == [(ROOT_DAG, "clear")]
    before = effects(stack, team_b)
    out = rerun(stack, p, "--no-cascade", "--yes").stdout
    assert "its dependents stay as they are" in out
    wait_attempt(stack, "default", ROOT_DAG, p, 1)
    stack.settle()
    assert changed(before, effects(stack, team_b)) == {("default", ROOT_DAG, "clear")}
    record = json.loads(stack.etcd.get(stack.keys.no_cascade_key(NodeId("default", ROOT_DAG), p)) or b"{}")
    assert record["run_id"] == f"scheduled__{p}" and record["clear_number"] == 0, record
    # Without --no-cascade the next rerun cascades, once.
    before = effects(stack, team_b)
    rerun(stack, p, "--yes")
    wait_attempt(stack, B, "07_pipeline", p, 1)
    stack.settle()
    after = effects(stack, team_b)
    assert {at: after[at][1] - before[at][1] for at in EVERY} == dict.fromkeys(EVERY, 1)


def test_rerun_repeated_while_under_way_clears_once(stack: Stack, team_b: FakeAirflow) -> None:
    """A second `rerun --no-cascade` while the first one's run is under way (a repeat after a crash) clears nothing
    more, and the history holds one entry for the clear."""
    p = cascaded(stack)
    stack.fake.set_paused(ROOT_DAG, True)  # the cleared run stays queued: the rerun is under way
    rerun(stack, p, "--no-cascade", "--yes")
    again = rerun(stack, p, "--no-cascade", "--yes")
    assert "not cleared again" in again.stdout or "not cleared" in again.stdout, again.stdout
    assert stack.fake.clears(ROOT_DAG) == 1
    stack.fake.set_paused(ROOT_DAG, False)
    wait_attempt(stack, "default", ROOT_DAG, p, 1)
    stack.settle()
    assert sum(stack.fake.clears(d) for d in HERE) + sum(team_b.clears(d) for d in THERE) == 1
    entries = [json.loads(v) for v in stack.etcd.items(stack.keys.history).values()]
    assert [(e["action"], len(e["affected"])) for e in entries] == [("rerun", 1)], entries


def test_rerun_without_a_terminal_and_without_yes_refuses_and_clears_nothing(stack: Stack, team_b: FakeAirflow) -> None:
    """Not a terminal, no --yes: the preview is shown, exit 2 with a message naming --yes, and nothing is cleared."""
    p = cascaded(stack)
    result = rerun(stack, p, check=False)
    assert result.returncode == 2, result
    assert "add --yes" in result.stderr
    assert "depth 3" in result.stdout  # the preview came first
    stack.settle()
    assert stack.fake.clears(ROOT_DAG) == 0


def mod_revision(stack: Stack, key: str) -> int:
    kvs = stack.etcd.call("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()}).get("kvs", [])
    return int(kvs[0]["mod_revision"]) if kvs else 0


def test_a_crash_between_the_record_and_the_clear_is_finished_by_repeating_the_command(
    stack: Stack, team_b: FakeAirflow
) -> None:
    """The record of a try that died before its clear is kept as it is by the repeat, which clears once: the root
    reruns once and nothing downstream does (semantics `no-cascade-once`)."""
    p = cascaded(stack)
    root = NodeId("default", ROOT_DAG)
    run_key = stack.keys.run_key(root, p)
    left = {"run_id": f"scheduled__{p}", "clear_number": 0, "replaces": mod_revision(stack, run_key), "by": "crashed"}
    key = stack.keys.no_cascade_key(root, p)
    written = stack.etcd.put(key, json.dumps(left))  # what the first try wrote before it died
    before = effects(stack, team_b)
    rerun(stack, p, "--no-cascade", "--yes")
    wait_attempt(stack, "default", ROOT_DAG, p, 1)
    stack.settle()
    assert mod_revision(stack, key) == written, "the repeat kept the first try's record"
    assert changed(before, effects(stack, team_b)) == {("default", ROOT_DAG, "clear")}
    assert stack.fake.clears(ROOT_DAG) == 1


def test_plan_rerun_names_the_holds_in_the_way(stack: Stack, team_b: FakeAirflow) -> None:
    """A hold on team_b/06 with --downstream is named on 06 and 07 in the preview, not on the others."""
    p = cascaded(stack)
    stack.cli("hold", f"{B}/06_pipeline", "--downstream", "--reason", "bad customer data", "--by", "alice")
    planned = plan_json(stack, p)
    held = {r["dag"]: r["held_by"] for r in planned["runs"] if r["held_by"]}
    assert set(held) == {"06_pipeline", "07_pipeline"}, planned["runs"]
    assert "by alice: bad customer data" in held["06_pipeline"]
    text = stack.cli("plan", "rerun", ROOT_DAG, "--from", p, "--to", p).stdout
    assert "held: 2 run(s) would wait for a release" in text


HOWTO = ROOT / "docs" / "howto" / "rerun.md"


def howto_commands() -> list[tuple[list[str], list[str]]]:
    """Each ``$ coordinator ...`` line of the how-to's console blocks, with the lines it shows after it."""
    found: list[tuple[list[str], list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", HOWTO.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            if line.startswith("$ coordinator "):
                found.append((shlex.split(line[2:])[1:], []))
            else:
                found[-1][1].append(line)
    return found


def test_the_howto_commands_run_as_shown(stack: Stack, team_b: FakeAirflow) -> None:
    """docs/howto/rerun.md: every command it shows runs on this two-deployment example and prints what it shows
    (its date and the store's revision aside); the --no-cascade rerun after the full one reruns only the root."""
    p = cascaded(stack)
    shown = howto_commands()
    assert [words[:2] for words, _ in shown] == [["plan", "rerun"], ["rerun", "01_pipeline"]] * 2
    for words, lines in shown:
        args = [w.replace("2031-01-02", p[:10]) for w in words]
        printed = stack.cli(*args, airflow=args[0] == "rerun").stdout
        expected = [line.replace("2031-01-02", p[:10]) for line in lines]
        assert [re.sub(r"store revision \d+", "store revision N", x) for x in printed.splitlines()] == [
            re.sub(r"store revision \d+", "store revision N", x) for x in expected
        ], printed
        if args[0] == "rerun":
            wait_attempt(stack, "default", ROOT_DAG, p, 1 if "--no-cascade" not in args else 2)
            wait_attempt(stack, B, "07_pipeline", p, 1)
            stack.settle()
    assert [team_b.clears(d) for d in THERE] == [1, 1, 1]
    assert [stack.fake.clears(d) for d in HERE] == [2, 1, 1, 1]


def test_a_lost_clear_answer_counts_as_the_clear(stack: Stack, team_b: FakeAirflow) -> None:
    """Airflow clears the run but the answer is lost: rerun looks (queued_at moved), reports it cleared, exit 0; the
    root reran once and nothing downstream did."""
    p = cascaded(stack)
    stack.fake.drop_next(1, endpoint="clear", dag_id=ROOT_DAG)
    done = rerun(stack, p, "--no-cascade", "--yes")
    assert f"cleared {ROOT_DAG} {p}" in done.stdout, done.stdout
    wait_attempt(stack, "default", ROOT_DAG, p, 1)
    stack.settle()
    assert stack.fake.clears(ROOT_DAG) == 1
    assert sum(stack.fake.clears(d) for d in HERE[1:]) + sum(team_b.clears(d) for d in THERE) == 0


def test_a_failed_clear_stops_lists_what_was_done_and_the_repeat_finishes(stack: Stack, team_b: FakeAirflow) -> None:
    """Over two partitions, Airflow refuses the second one's clear: the first is listed, exit 1 saying to repeat;
    the repeat clears the second and not the first again."""
    p1, p2 = new_partition(), new_partition()
    start(stack)
    for p in (p1, p2):
        stack.trigger_root(p)
        wait_attempt(stack, B, "07_pipeline", p, 0)
    stack.settle()
    stack.fake.set_paused(ROOT_DAG, True)  # the cleared runs stay queued while the command is repeated
    rerun(stack, p1, "--no-cascade", "--yes")  # p1 is under way
    stack.fake.fail_next(1, 409, endpoint="clear", dag_id=ROOT_DAG)  # the next clear (p2's) is refused
    both = ("rerun", ROOT_DAG, "--from", p1, "--to", p2, "--no-cascade", "--yes")
    first = stack.cli(*both, airflow=True, check=False)
    assert first.returncode == 1, first
    assert f"rerunning {ROOT_DAG} {p1}" in first.stdout and "repeat the command" in first.stderr, first
    again = stack.cli(*both, airflow=True)
    assert f"rerunning {ROOT_DAG} {p1}" in again.stdout and f"cleared {ROOT_DAG} {p2}" in again.stdout, again.stdout
    assert [[r.clear_number for r in stack.fake_runs(ROOT_DAG, p)] for p in (p1, p2)] == [[1], [1]]
    assert stack.fake.clears(ROOT_DAG) == 2
