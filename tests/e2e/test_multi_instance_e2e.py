"""Two real Airflow instances with dependencies across them: the session's Airflow (instance ``default``, playing
team A) and a second one (instance ``team_b``, ``tests/e2e/conftest.py``), both writing run states to the same etcd
prefix through their plugins. One watcher reaches both through an instances file (one password from a file, one from
an environment variable) and a dependencies file in the extended form.

The session Airflow keeps the instance name ``default`` because the other e2e modules (shorthand dependencies files,
``source == "airflow-plugin:default"``) rely on it; only the second Airflow carries a team name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.assets import MARKER, AssetKeys
from coordinator.core.model import RunState, canonical_partition, run_id_for
from coordinator.watcher.faults import CRASH_EXIT_CODE
from devtools.airflow_stack import AirflowStack
from tests.e2e.harness import (
    E2E,
    SCHEDULED,
    DagRun,
    assert_started_after,
    parse_time,
    task_runs,
    wait_for,
    wait_for_audit_passes,
)
from tests.e2e.settle import wait_runs_settled, wait_settled

pytestmark = pytest.mark.e2e

GRAPH = {
    "version": 1,
    "instances": {"team_b": {"description": "the second Airflow"}},
    "dags": {
        # default -> team_b -> default: a trigger in each direction.
        "team_b/02_pipeline": {"upstreams": "default/01_pipeline"},
        "e2e_dependent": {"upstreams": "team_b/02_pipeline"},
    },
}
#: The expected-by scenario (tests/e2e/dags/e2e_late.py): a failure in team A two hops before team B's report
#: (``harness.LATE_B``).
LATE_A = ["e2e_late_root", "e2e_late_mid"]
#: Hourly partitions: a gridded DAG's partitions come from its grid, so the report has a deadline for the test's
#: partition although neither it nor its direct upstream ever gets a run there.
HOURLY = {"cron": "0 * * * *"}
#: The report is due three hours after its hour ends: the test's partition is the current hour, so the deadline is
#: at least three hours ahead and everything the test sees happens before it.
DUE_AFTER_END = timedelta(hours=3)


def late_graph(partition: str) -> dict[str, Any]:
    """The scenario's graph; ``from`` is the test's partition, so the report's earlier hours (whose deadlines have
    passed, without any run) are not alerted about: only the partition under test is."""
    return {
        "version": 1,
        "instances": {"team_b": {"description": "the second Airflow"}},
        "dags": {
            "e2e_late_root": {"partitions": HOURLY},
            "e2e_late_mid": {"partitions": HOURLY, "upstreams": "e2e_late_root"},
            "team_b/e2e_late_report": {
                "partitions": HOURLY,
                "upstreams": "default/e2e_late_mid",
                "expected_by": {"after_end": "3h", "warn": "30m", "duration": "1m", "from": partition},
            },
            "team_b/e2e_late_handler": {"on_late_of": "team_b/e2e_late_report"},
        },
    }


#: Seconds between the watcher's deadline passes in the scenario (15 by default), and how long after the handler's
#: success it must stay the only run: several later passes, each of which would alert a transition seen again.
DEADLINE_PASS_S = 1.0
LATE_SETTLE_S = 5 * DEADLINE_PASS_S
#: After the last asset delivery, how long nothing more may happen (see test_cascades_e2e.py).
SETTLE_S = 2.0
#: The two DAGs each attempt of the cross-instance cascade runs, with their instances.
RERUN = [("02_pipeline", "team_b"), ("e2e_dependent", "default")]


def start_two_instance_watcher(
    e2e: E2E, team_b: AirflowStack, deps: Path, watcher_id: str, *args: str, crash_at: str | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """Start a watcher that reaches both Airflows through an instances file only (one password from a file, one
    from an environment variable); ``args``/``env``: more of its options and settings; ``crash_at``: a crash point."""
    instances = e2e.work_dir / "instances.json"
    instances.write_text(
        json.dumps(
            {
                "default": {
                    "url": e2e.stack.url,
                    "username": e2e.stack.username,
                    "password_file": str(e2e.stack.home / "admin_password"),
                },
                "team_b": {"url": team_b.url, "username": team_b.username, "password_env": "E2E_TEAM_B_PASSWORD"},
            }
        ),
        encoding="utf-8",
    )
    return e2e.start_watcher(
        deps,
        "--id",
        watcher_id,
        *args,
        name=f"{watcher_id}-watcher",
        crash_at=crash_at,
        COORDINATOR_INSTANCES_FILE=str(instances),
        COORDINATOR_AIRFLOW_URL="",  # only the instances file says where the Airflows are
        E2E_TEAM_B_PASSWORD=team_b.password,
        **env,
    )


def test_dependencies_across_two_airflow_instances_trigger_and_rerun_once(e2e: E2E, team_b: AirflowStack) -> None:
    """default/01 succeeding runs team_b/02 once, then default/e2e_dependent once; clearing 01 reruns each once.
    Slow by design: two real cascades, each hop a run in a real Airflow."""
    deps = e2e.write_dependencies(GRAPH, name="multi-instance.json")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-multi")
    e2e.wait_for_leader(deps, "e2e-multi")
    partition, run_id = e2e.new_partition(), e2e.run_id("multi")
    started = time.monotonic()
    e2e.stack.trigger("01_pipeline", run_id, partition)

    for attempt in (0, 1):
        if attempt:
            started = time.monotonic()
            e2e.stack.clear("01_pipeline", run_id)
        for dag_id, instance in [("02_pipeline", "team_b"), ("e2e_dependent", "default")]:
            e2e.wait_for_run_record(
                dag_id,
                partition,
                lambda r, n=attempt: r.state is RunState.SUCCESS and r.clear_number == n,
                timeout_s=120,
                what=f"success of attempt {attempt}",
                instance=instance,
            )
        elapsed = time.monotonic() - started
        root, remote, back = (
            e2e.only_run("01_pipeline", partition),
            e2e.only_run("02_pipeline", partition, stack=team_b),
            e2e.only_run("e2e_dependent", partition),
        )
        assert remote.run_id == back.run_id == run_id_for(partition)
        assert remote.state == back.state == "success"
        assert set(remote.conf["coordinator"]["inputs"]) == {"default/01_pipeline"}, remote.conf
        assert_started_after(remote, [root])  # two Airflows, one host clock
        assert_started_after(back, [remote])
        for dag_id, instance in [("02_pipeline", "team_b"), ("e2e_dependent", "default")]:
            ledger = e2e.read_ledger(dag_id, partition, instance)
            assert ledger is not None and ledger.trigger_count == attempt + 1, (instance, dag_id, ledger)
        print(f"\nacross instances, attempt {attempt}: 01 triggered/cleared -> e2e_dependent success {elapsed:.1f} s")

    # The watcher has seen both reruns' successes and planned nothing more: a third run would have been due now.
    last = max(e2e.read_run(dag_id, partition, instance)[1] for dag_id, instance in RERUN)
    wait_settled(e2e.work_dir / "e2e-multi-watcher.log", last)
    for dag_id, instance in RERUN:
        record, _ = e2e.read_run(dag_id, partition, instance)
        assert record is not None and (record.state, record.clear_number) == (RunState.SUCCESS, 1), record
    # The session Airflow's own 02_pipeline is another DAG (default/02_pipeline): not in this graph, never run.
    assert e2e.runs("02_pipeline", partition) == []


def all_runs(stack: AirflowStack, dag_id: str) -> list[DagRun]:
    """Every run of ``dag_id`` in ``stack``, whatever its logical date (Airflow's own count)."""
    status, body = stack.request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns?limit=100")
    assert status == 200, body
    return [DagRun.from_rest(item) for item in body["dag_runs"]]


def test_an_upstream_failure_in_one_instance_alerts_the_late_handler_in_another_once_naming_the_cause(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """default/e2e_late_root failing two hops before team_b/e2e_late_report (expected_by) triggers its on_late_of
    handler once, before the deadline, with state blocked and the failed root (DAG, instance, partition) as cause.
    Slow by design: real runs in two Airflows, then five deadline passes (1 s apart, logged only at DEBUG) showing no
    second alert."""
    e2e.stack.wait_for_dags(LATE_A)
    e2e.stack.unpause(LATE_A)
    # The current hour: a past logical date (Airflow runs it) whose deadline is ahead. Only this test uses these
    # DAGs, so the partition cannot collide with another test's.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    partition = canonical_partition(start)
    deadline = start + timedelta(hours=1) + DUE_AFTER_END
    deps = e2e.write_dependencies(late_graph(partition), name="late.json")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-late", COORDINATOR_DEADLINE_INTERVAL_S=str(DEADLINE_PASS_S))
    e2e.wait_for_leader(deps, "e2e-late")
    e2e.stack.trigger("e2e_late_root", e2e.run_id("late_root"), partition)
    e2e.wait_for_run_record("e2e_late_root", partition, lambda r: r.state is RunState.FAILED, timeout_s=90)

    def handler_done() -> DagRun | None:
        runs = all_runs(team_b, "e2e_late_handler")
        return runs[0] if runs and runs[0].state == "success" else None

    handler = wait_for(handler_done, 90, "the late handler's run in team_b to succeed", interval_s=0.5)
    time.sleep(LATE_SETTLE_S)  # a second alert would come from a later deadline pass
    runs = all_runs(team_b, "e2e_late_handler")
    assert [r.run_id for r in runs] == [handler.run_id], f"the handler ran {len(runs)} times: {runs}"
    assert handler.queued_at is not None and handler.queued_at < deadline, (handler, deadline)

    sent: dict[str, Any] = handler.conf["coordinator"]["deadline"]
    assert (sent["dag"], sent["partition"], sent["state"]) == ("team_b/e2e_late_report", partition, "blocked"), sent
    assert datetime.fromisoformat(sent["deadline"]) == deadline, sent
    # The cause is the failed root, two hops up and in the other instance: DAG, instance, partition and why.
    assert sent["cause"] == f"default/e2e_late_root@{partition} failed", sent
    hops = ["team_b/e2e_late_report", "default/e2e_late_mid", "default/e2e_late_root"]
    assert sent["chain"] == " <- ".join(f"{dag}@{partition}" for dag in hops), sent
    # The transition is recorded once, by the leader, under the documented key (docs/keys.md).
    key = f"{e2e.prefix}/deadlines/team_b/e2e_late_report/{partition}"
    raw = e2e.read_key(key)
    assert raw is not None, f"no transition recorded at {key}"
    recorded = json.loads(raw)
    assert (recorded["state"], recorded["sequence"], recorded["alerted"]) == ("blocked", 1, True), recorded
    # Nothing downstream of the failure ran: the deadline is decided without any run of the late DAG.
    assert e2e.runs("e2e_late_mid", partition) == []
    assert e2e.runs("e2e_late_report", partition, stack=team_b) == []
    assert e2e.read_ledger("e2e_late_report", partition, "team_b") is None
    root = e2e.only_run("e2e_late_root", partition)
    assert root.end_date is not None and handler.start_date is not None
    print(
        f"\nlate handler: root failed -> handler started {(handler.start_date - root.end_date).total_seconds():.1f} s; "
        f"deadline {(deadline - handler.start_date).total_seconds() / 60:.0f} min later"
    )


#: Semantics rules 16-17: default's shared assets go to team_b, whose consumers keep ``schedule=[Asset]``.
ASSET_GRAPH = {
    "version": 1,
    "instances": {"team_b": {"description": "the second Airflow"}},
    "dags": {},
    "assets": [{"asset": "s3://e2e/shared-*", "from": "default", "to": ["team_b"]}],
}
ASSET_TIMEOUT_S = 120.0


def queued_times(stack: AirflowStack, dag_id: str) -> list[datetime]:
    """When each run of an asset consumer was queued (asset-triggered runs have no logical date: all of them)."""
    return sorted(datetime.fromisoformat(str(r["queued_at"])) for r in raw_runs(stack, dag_id))


def raw_runs(stack: AirflowStack, dag_id: str) -> list[dict[str, Any]]:
    """Every run of ``dag_id`` as Airflow's REST API returns it (partition_key and run_type included)."""
    status, body = stack.request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns?limit=100", timeout_s=60)
    assert status == 200, body
    return list(body["dag_runs"])


def delivered_events(stack: AirflowStack, uri: str) -> list[dict[str, Any]]:
    """The events of ``uri`` in ``stack`` that the coordinator created (they carry its marker in ``extra``)."""
    status, body = stack.request("GET", "/api/v2/assets/events?limit=100&order_by=timestamp", timeout_s=60)
    assert status == 200, body
    return [e for e in body["asset_events"] if e["uri"] == uri and MARKER in (e["extra"] or {})]


def produce(e2e: E2E, dag_id: str, label: str, conf: dict[str, Any] | None = None) -> datetime:
    """Run a producer DAG in the session's Airflow to success; returns its publishing task's end."""
    run_id = e2e.run_id(label)
    e2e.stack.trigger(dag_id, run_id, e2e.new_partition(), conf)
    e2e.stack.wait_for_run(dag_id, run_id, ["success"], timeout_s=ASSET_TIMEOUT_S)
    (task,) = task_runs(e2e.stack, dag_id, run_id).values()
    assert task.end_date is not None
    return task.end_date


def test_three_asset_events_in_one_airflow3_run_the_consumer_in_another_three_times_even_with_a_kill(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """Three runs of default's e2e_shared_producer (outlets=[Asset]) give three asset-triggered runs of team_b's
    e2e_shared_consumer (schedule=[Asset]), the third delivered after a watcher was killed (os._exit, like kill -9)
    between the delivery's intent and its POST; a partitioned event reaches team_b's partitioned consumer with its
    partition_key. Slow by design: five real producer and consumer runs across two Airflows and a watcher's crash."""
    assert raw_runs(team_b, "e2e_shared_consumer") == [], "the consumer ran before any producer event"
    deps = e2e.write_dependencies(ASSET_GRAPH, name="assets.json")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-assets")
    e2e.wait_for_leader(deps, "e2e-assets")
    for n in (1, 2):
        task_end = produce(e2e, "e2e_shared_producer", f"shared{n}")
        wait_for(lambda n=n: len(raw_runs(team_b, "e2e_shared_consumer")) == n, ASSET_TIMEOUT_S, f"consumer run {n}")
        native = wait_for(
            lambda n=n: queued_times(e2e.stack, "e2e_shared_consumer")[n - 1 :] or None, ASSET_TIMEOUT_S, "native"
        )
        delivered = queued_times(team_b, "e2e_shared_consumer")[-1]
        # For docs/benchmarks.md, never asserted: producer task end -> consumer run queued, one host clock.
        print(f"\nassets 3.3 -> 3.3, event {n}: producer task end -> consumer queued: native (same Airflow) "
              f"{(native[0] - task_end).total_seconds():.2f} s, delivered (team_b) "
              f"{(delivered - task_end).total_seconds():.2f} s")  # fmt: skip

    e2e.stop_watchers()
    crashing = start_two_instance_watcher(
        e2e, team_b, deps, "e2e-assets", "--leader-ttl", "3", crash_at="asset-after-intent"
    )
    produce(e2e, "e2e_shared_producer", "shared3")
    assert crashing.wait(timeout=ASSET_TIMEOUT_S) == CRASH_EXIT_CODE, "the watcher did not die at the crash point"
    assert len(delivered_events(team_b, "s3://e2e/shared-orders")) == 2, "the killed watcher posted"
    # This route's deliveries only: the session's prefix also holds the Airflow 2 module's (source af2).
    deliveries = [json.loads(v) for v in e2e.read_prefix(AssetKeys(e2e.prefix).deliveries).values()]
    ours = [d for d in deliveries if d["source"] == "default" and d["uri"] == "s3://e2e/shared-orders"]
    assert sorted(d["status"] for d in ours) == ["done", "done", "pending"], deliveries

    start_two_instance_watcher(e2e, team_b, deps, "e2e-assets")
    wait_for(lambda: len(raw_runs(team_b, "e2e_shared_consumer")) == 3, ASSET_TIMEOUT_S, "consumer run 3")

    # A partitioned event: the key travels with it and the partitioned consumer's run carries it.
    key = "2026-01-01T05"
    produce(e2e, "e2e_parted_producer", "parted", {"partition_key": key})
    parted = wait_for(
        lambda: raw_runs(team_b, "e2e_parted_consumer") or None, ASSET_TIMEOUT_S, "the partitioned consumer"
    )
    time.sleep(SETTLE_S)
    runs = raw_runs(team_b, "e2e_shared_consumer")
    assert len(runs) == 3 and {r["run_type"] for r in runs} == {"asset_triggered"}, runs
    copies = delivered_events(team_b, "s3://e2e/shared-orders")
    assert len(copies) == 3 and len({c["extra"][MARKER] for c in copies}) == 3, copies
    assert [r["partition_key"] for r in parted] == [key], parted
    (parted_copy,) = delivered_events(team_b, "s3://e2e/shared-hourly")
    assert parted_copy["partition_key"] == key, parted_copy


# -- condition groups across the two deployments (semantics `condition-groups`) ----------------------------------------

#: The regional loads: two in each Airflow.
REGIONS = ["default/e2e_region_eu", "default/e2e_region_us", "team_b/e2e_region_apac", "team_b/e2e_region_latam"]
#: How long a condition scenario waits for one hop (a run in a real Airflow, triggered by the watcher).
HOP_S = 120.0


def run_in(e2e: E2E, team_b: AirflowStack, qualified: str, partition: str, label: str) -> None:
    """Trigger ``instance/dag`` by hand for ``partition`` and wait for its success record."""
    instance, dag_id = qualified.split("/")
    stack = team_b if instance == "team_b" else e2e.stack
    stack.trigger(dag_id, e2e.run_id(label), partition)
    e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS, HOP_S, "success", instance)


def succeeded(e2e: E2E, dag_id: str, partition: str, attempt: int) -> None:
    """Wait for default's ``dag_id`` to succeed for ``partition`` at clear number ``attempt``."""
    e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS and r.clear_number == attempt,
                            HOP_S, f"success of attempt {attempt}")  # fmt: skip


def test_any_of_two_feeds_in_two_deployments_runs_once_and_reruns_only_for_what_it_consumed(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """``any`` of default/e2e_feed_a and team_b/e2e_feed_b: team_b's feed landing first runs e2e_either once on it
    alone; default's feed landing later reruns nothing (it was not consumed); a rerun of the consumed feed reruns
    e2e_either once, consuming both. Slow by design: four real runs across two Airflows."""
    graph = {
        "version": 1,
        "instances": {"team_b": {"description": "the second Airflow"}},
        "dags": {"e2e_either": {"upstreams": [{"any": ["default/e2e_feed_a", "team_b/e2e_feed_b"]}]}},
    }
    deps = e2e.write_dependencies(graph, name="any-of-two.json")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-any")
    e2e.wait_for_leader(deps, "e2e-any")
    partition = e2e.new_partition()
    feed_b = e2e.run_id("feed_b")
    team_b.trigger("e2e_feed_b", feed_b, partition)
    succeeded(e2e, "e2e_either", partition, 0)
    first = e2e.read_ledger("e2e_either", partition)
    assert first is not None and set(first.inputs) == {"team_b/e2e_feed_b"}, first

    run_in(e2e, team_b, "default/e2e_feed_a", partition, "feed_a")  # lands after the decision: not consumed
    wait_runs_settled(e2e, "e2e-any-watcher", [("e2e_feed_a", partition)])
    assert len(e2e.runs("e2e_either", partition)) == 1
    unmoved = e2e.read_ledger("e2e_either", partition)
    assert unmoved is not None and (unmoved.trigger_count, unmoved.inputs) == (1, first.inputs), unmoved

    team_b.clear("e2e_feed_b", feed_b)  # the consumed member reruns: e2e_either reruns once, on both
    succeeded(e2e, "e2e_either", partition, 1)
    again = e2e.read_ledger("e2e_either", partition)
    assert again is not None and again.trigger_count == 2, again
    assert set(again.inputs) == {"team_b/e2e_feed_b", "default/e2e_feed_a"}, again
    wait_runs_settled(e2e, "e2e-any-watcher", [("e2e_either", partition)])
    record, _ = e2e.read_run("e2e_either", partition)
    assert record is not None and record.clear_number == 1 and len(e2e.runs("e2e_either", partition)) == 1


def test_three_of_four_regions_roll_up_and_the_late_fourth_reruns_one_rollup_once_and_the_other_never(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """Four regional loads (two per Airflow) under a cutoff long past with ``min`` 3: the first three run both rollups
    once; the late fourth reruns e2e_rollup (``late: rerun``) exactly once and e2e_rollup_quiet (``late: ignore``)
    never. Slow by design: seven real runs and a rerun across two Airflows."""
    group = {"at_least": 4, "of": REGIONS, "cutoff": "PT1S", "min": 3}
    graph = {
        "version": 1,
        "instances": {"team_b": {"description": "the second Airflow"}},
        "dags": {
            "e2e_rollup": {"upstreams": [{**group, "late": "rerun"}]},
            "e2e_rollup_quiet": {"upstreams": [{**group, "late": "ignore"}]},
        },
    }
    deps = e2e.write_dependencies(graph, name="three-of-four.json")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-rollup")
    e2e.wait_for_leader(deps, "e2e-rollup")
    partition = e2e.new_partition()
    for region in REGIONS[:2]:
        run_in(e2e, team_b, region, partition, "region")
    wait_runs_settled(e2e, "e2e-rollup-watcher", [(r.split("/")[1], partition, r.split("/")[0]) for r in REGIONS[:2]])
    assert e2e.runs("e2e_rollup", partition) == [] and e2e.runs("e2e_rollup_quiet", partition) == [], "below min"

    run_in(e2e, team_b, REGIONS[2], partition, "region")  # the third: min holds past the cutoff
    for dag_id in ("e2e_rollup", "e2e_rollup_quiet"):
        succeeded(e2e, dag_id, partition, 0)
        ledger = e2e.read_ledger(dag_id, partition)
        assert ledger is not None and set(ledger.inputs) == set(REGIONS[:3]), ledger

    run_in(e2e, team_b, REGIONS[3], partition, "late")  # the late fourth
    succeeded(e2e, "e2e_rollup", partition, 1)
    wait_runs_settled(e2e, "e2e-rollup-watcher", [("e2e_rollup", partition)])
    rerun = e2e.read_ledger("e2e_rollup", partition)
    assert rerun is not None and rerun.trigger_count == 2 and set(rerun.inputs) == set(REGIONS), rerun
    quiet = e2e.read_ledger("e2e_rollup_quiet", partition)
    assert quiet is not None and quiet.trigger_count == 1, quiet
    record, _ = e2e.read_run("e2e_rollup_quiet", partition)
    assert record is not None and record.clear_number == 0, record


def test_a_cutoff_fires_at_its_time_with_the_members_present_once_across_a_leader_killed_at_that_instant(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """A rollup of the four regions with a cutoff 90 s after its partition's start and ``min`` 3: three regions
    land before it, nothing runs early; at the cutoff the leader decides the rollup, records its intent and dies there
    (os._exit, like kill -9); the standby takes over and the rollup runs exactly once, on the three, never before the
    cutoff. Slow by design: it waits for a real minute to pass."""
    cutoff = timedelta(seconds=90)
    start = datetime.now(UTC).replace(microsecond=0)
    partition = canonical_partition(start)
    graph = {
        "version": 1,
        "instances": {"team_b": {"description": "the second Airflow"}},
        "dags": {"e2e_rollup_timed": {"upstreams": [
            {"at_least": 4, "of": REGIONS, "cutoff": f"PT{int(cutoff.total_seconds())}S", "min": 3, "late": "ignore"},
        ]}},
    }  # fmt: skip
    deps = e2e.write_dependencies(graph, name="cutoff-kill.json")
    crashing = start_two_instance_watcher(e2e, team_b, deps, "e2e-cutoff", "--leader-ttl", "3",
                                          crash_at="after-intent")  # fmt: skip
    e2e.wait_for_leader(deps, "e2e-cutoff")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-cutoff-standby", "--leader-ttl", "3")
    for region in REGIONS[:3]:  # all three at once: they land well before the cutoff
        instance, dag_id = region.split("/")
        (team_b if instance == "team_b" else e2e.stack).trigger(dag_id, e2e.run_id("timed"), partition)
    for region in REGIONS[:3]:
        instance, dag_id = region.split("/")
        e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS, HOP_S, "success", instance)
    if datetime.now(UTC) < start + cutoff:
        assert e2e.runs("e2e_rollup_timed", partition) == [], "the rollup ran before its cutoff"
    left = (start + cutoff - datetime.now(UTC)).total_seconds()
    assert crashing.wait(timeout=max(left, 0) + HOP_S) == CRASH_EXIT_CODE, "the leader did not die at its intent"
    assert datetime.now(UTC) >= start + cutoff, "the rollup was decided before its cutoff"
    succeeded(e2e, "e2e_rollup_timed", partition, 0)
    (run,) = e2e.runs("e2e_rollup_timed", partition)
    assert run.start_date is not None and run.start_date >= start + cutoff, run
    wait_runs_settled(e2e, "e2e-cutoff-standby-watcher", [("e2e_rollup_timed", partition)])
    ledger = e2e.read_ledger("e2e_rollup_timed", partition)
    assert ledger is not None and ledger.trigger_count == 1 and set(ledger.inputs) == set(REGIONS[:3]), ledger
    assert len(e2e.runs("e2e_rollup_timed", partition)) == 1


# ----- Airflow 3's own runs: partitioned, keyed by segment, asset-triggered (semantics rule 22) -----

REGIONS_OF_LOAD = ("apac", "eu", "us")


def partitions_graph() -> dict[str, Any]:
    """Every edge of the partitions scenario, across the two deployments (docs/dependencies.md, segments)."""
    daily = {"cron": "0 0 * * *"}
    regions = {"cron": "0 0 * * *", "segments": list(REGIONS_OF_LOAD)}
    return {
        "version": 1,
        "instances": {"team_b": {"description": "the second Airflow"}},
        "dags": {
            "default/e2e_part_hourly": {"partitions": {"cron": "0 * * * *", "key_format": "%Y-%m-%dT%H:%M:%S"}},
            "team_b/e2e_part_daily": {"partitions": daily, "upstreams": "default/e2e_part_hourly"},
            "team_b/e2e_part_keyed": {"partitions": {**daily, "key_format": "%Y-%m-%dT%H:%M:%S"},
                                      "upstreams": "team_b/e2e_part_daily"},
            "team_b/e2e_part_after_clean": {"upstreams": "default/e2e_part_clean"},
            "default/e2e_seg_load": {"partitions": regions},
            "team_b/e2e_seg_per": {"partitions": regions, "upstreams": "default/e2e_seg_load"},
            "team_b/e2e_seg_all": {"partitions": daily, "upstreams": "default/e2e_seg_load"},
            "team_b/e2e_seg_two": {"partitions": daily, "upstreams": [
                {"dag": "default/e2e_seg_load", "cutoff": "1h", "min": 2, "late": "rerun"}]},
        },
    }  # fmt: skip


def runs_by_id(stack: AirflowStack, dag_id: str) -> dict[str, dict[str, Any]]:
    """Every run of ``dag_id`` in ``stack`` by run id, as the REST API lists them (logical date or not)."""
    status, body = stack.request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns?limit=200")
    assert status == 200, body
    return {run["dag_run_id"]: run for run in body["dag_runs"]}


def partition_key_in_database(stack: AirflowStack, dag_id: str, run_id: str) -> str | None:
    """``dag_run.partition_key`` of one run, read from the Airflow's metadata database itself."""
    import sqlalchemy  # Airflow's own dependency: present wherever an e2e Airflow runs

    engine = sqlalchemy.create_engine(stack.environment()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sqlalchemy.text("SELECT partition_key FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                {"d": dag_id, "r": run_id},
            ).one()
            return row[0]  # type: ignore[no-any-return]
    finally:
        engine.dispose()


def test_airflow3_partitioned_keyed_and_asset_triggered_runs_join_across_deployments_exactly_once(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """Three scenarios at once, one graph, two watchers (the leader killed with SIGKILL half way):
    a CronPartitionTimetable producer's 23 hours do not release the daily rollup in the other deployment, the 24th
    does, once, and it triggers a partitioned dependent with the right partition_key; a rerun of one hour reruns both
    once. An asset-triggered run (no logical date) is recorded at its source run's date and releases its dependent
    once; a clear of its producer makes Airflow create a new asset-triggered run, which reruns the dependent once.
    A load keyed by region (eu, us, apac) runs a per-region dependent once per region, the all-regions rollup once,
    and a two-of-three rollup with a cutoff once on two, then once more for the late third (its late rule), across the
    kill. Slow by design: about 40 real runs in two Airflows."""
    day, raw_day, seg_day = e2e.new_partition(), e2e.new_partition(), e2e.new_partition()
    hours = [canonical_partition(datetime.fromisoformat(day.replace("Z", "+00:00")) + timedelta(hours=h))
             for h in range(24)]  # fmt: skip
    deps = e2e.write_dependencies(partitions_graph(), name="partitions.json")
    leader = start_two_instance_watcher(e2e, team_b, deps, "e2e-parts", "--leader-ttl", "3")
    e2e.wait_for_leader(deps, "e2e-parts")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-parts-standby", "--leader-ttl", "3")
    a = e2e.stack

    # Phase 1: 23 hours, the asset's producer, two regions.
    hour_runs = {hour: f"e2e_hour_{hour[11:13]}_{e2e.run_id('p')}" for hour in hours}
    for hour in hours[:23]:
        a.trigger("e2e_part_hourly", hour_runs[hour], None, partition_key=hour[:-1])
    raw_run = e2e.run_id("raw")
    a.trigger("e2e_part_raw", raw_run, raw_day)
    seg_runs = {region: e2e.run_id(f"seg_{region}") for region in REGIONS_OF_LOAD}
    for region in ("eu", "us"):
        a.trigger("e2e_seg_load", seg_runs[region], None, partition_key=f"{seg_day}|{region}")
    for hour in hours[:23]:
        e2e.wait_for_run_record("e2e_part_hourly", hour, lambda r: r.state is RunState.SUCCESS, HOP_S, "an hour")
    e2e.wait_for_run_record("e2e_part_clean", raw_day, lambda r: r.state is RunState.SUCCESS, HOP_S,
                            "the asset-triggered run, at its source's date")  # fmt: skip
    clean, _ = e2e.read_run("e2e_part_clean", raw_day)
    assert clean is not None and clean.run_id.startswith("asset_triggered__"), clean
    e2e.wait_for_run_record("e2e_part_after_clean", raw_day, lambda r: r.state is RunState.SUCCESS, HOP_S,
                            "the asset-triggered run's dependent", "team_b")  # fmt: skip
    for region in ("eu", "us"):
        e2e.wait_for_run_record("e2e_seg_per", f"{seg_day}~{region}", lambda r: r.state is RunState.SUCCESS, HOP_S,
                                f"the per-region dependent in {region}", "team_b")  # fmt: skip
    e2e.wait_for_run_record("e2e_seg_two", seg_day, lambda r: r.state is RunState.SUCCESS, HOP_S,
                            "two of three at the cutoff", "team_b")  # fmt: skip
    assert e2e.read_run("e2e_part_daily", day, "team_b")[0] is None, "23 hours released the daily rollup"
    assert e2e.read_run("e2e_seg_all", seg_day, "team_b")[0] is None, "two regions released the all-regions rollup"
    two = e2e.read_ledger("e2e_seg_two", seg_day, "team_b")
    assert two is not None and len(two.inputs) == 2, two

    # Phase 2: the leader dies (SIGKILL); the 24th hour, the third region and a clear of the asset's producer land.
    leader.kill()
    leader.wait(timeout=30)
    e2e.wait_for_leader(deps, "e2e-parts-standby")
    a.trigger("e2e_part_hourly", hour_runs[hours[23]], None, partition_key=hours[23][:-1])
    a.trigger("e2e_seg_load", seg_runs["apac"], None, partition_key=f"{seg_day}|apac")
    a.wait_for_run("e2e_part_raw", raw_run, ["success"], timeout_s=HOP_S)
    a.clear("e2e_part_raw", raw_run)
    for dag_id, partition in [("e2e_part_daily", day), ("e2e_part_keyed", day), ("e2e_seg_all", seg_day),
                              ("e2e_seg_per", f"{seg_day}~apac")]:  # fmt: skip
        e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS, HOP_S, "success", "team_b")
    e2e.wait_for_run_record("e2e_seg_two", seg_day, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
                            HOP_S, "the late third region's one rerun", "team_b")  # fmt: skip
    e2e.wait_for_run_record("e2e_part_after_clean", raw_day,
                            lambda r: r.state is RunState.SUCCESS and r.clear_number == 1, HOP_S,
                            "the dependent of the new asset-triggered run, rerun once", "team_b")  # fmt: skip
    keyed = run_id_for(day)
    assert partition_key_in_database(team_b, "e2e_part_keyed", keyed) == day[:-1]
    assert partition_key_in_database(team_b, "e2e_seg_per", run_id_for(f"{seg_day}~eu")) == f"{seg_day}|eu"

    # Phase 3: one hour reruns: the rollup and its partitioned dependent rerun once each.
    a.clear("e2e_part_hourly", hour_runs[hours[5]])
    for dag_id in ("e2e_part_daily", "e2e_part_keyed"):
        e2e.wait_for_run_record(dag_id, day, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1, HOP_S,
                                "one rerun after an hour's rerun", "team_b")  # fmt: skip

    settle = [("e2e_part_daily", day, "team_b"), ("e2e_part_keyed", day, "team_b"), ("e2e_seg_all", seg_day, "team_b"),
              ("e2e_seg_two", seg_day, "team_b"), ("e2e_part_after_clean", raw_day, "team_b"),
              *(("e2e_seg_per", f"{seg_day}~{r}", "team_b") for r in REGIONS_OF_LOAD)]  # fmt: skip
    wait_runs_settled(e2e, "e2e-parts-standby-watcher", settle)
    expected = {("e2e_part_daily", day): 2, ("e2e_part_keyed", day): 2, ("e2e_seg_all", seg_day): 1,
                ("e2e_seg_two", seg_day): 2, ("e2e_part_after_clean", raw_day): 2,
                **{("e2e_seg_per", f"{seg_day}~{r}"): 1 for r in REGIONS_OF_LOAD}}  # fmt: skip
    for (dag_id, partition), triggers in expected.items():
        ledger = e2e.read_ledger(dag_id, partition, "team_b")
        assert ledger is not None and ledger.trigger_count == triggers, (dag_id, partition, ledger)
        runs = [r for r in runs_by_id(team_b, dag_id) if r.startswith("coordinator__")]
        assert runs.count(run_id_for(partition)) == 1, (dag_id, runs)
    # The asset-triggered consumer ran twice in Airflow (a clear of its producer makes a new run), its dependent
    # was created once and cleared once: the same run id.
    assert len([r for r in runs_by_id(a, "e2e_part_clean") if r.startswith("asset_triggered__")]) >= 2


# ----- Several Airflow runs of one partition (semantics `newest-run-stands`) -----

#: The audit's interval in the scenario: several passes within a minute, as a user who found the loop ran it.
AUDIT_S = 4
#: Audit passes that must change nothing once the reruns are done.
QUIET_PASSES = 6


def several_runs_graph() -> dict[str, Any]:
    """An asset-scheduled consumer's dependents in both deployments, and a per-region dependent of a load keyed by
    region, in the other deployment."""
    regions = {"cron": "0 0 * * *", "segments": list(REGIONS_OF_LOAD)}
    return {
        "version": 1,
        "instances": {"team_b": {"description": "the second Airflow"}},
        "dags": {
            "default/e2e_part_after_clean": {"upstreams": "default/e2e_part_clean"},
            "team_b/e2e_part_after_clean": {"upstreams": "default/e2e_part_clean"},
            "default/e2e_seg_load": {"partitions": regions},
            "team_b/e2e_seg_per": {"partitions": regions, "upstreams": "default/e2e_seg_load"},
        },
    }  # fmt: skip


def test_several_airflow_runs_of_one_partition_rerun_each_dependent_once_and_then_nothing_moves(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """A producer's clear makes Airflow create a second asset-triggered run of its consumer, and a region's key is
    triggered a second time: each dependent (in both deployments) reruns exactly once, etcd names the newer runs, the
    leader is killed with SIGKILL between two audit passes, the newer consumer run is deleted in Airflow, and over six
    further audit passes (every 4 s) no run-state key, ledger or Airflow run moves."""
    day, seg_day = e2e.new_partition(), e2e.new_partition()
    region = f"{seg_day}~eu"
    deps = e2e.write_dependencies(several_runs_graph(), name="several_runs.json")
    env = {"COORDINATOR_AUDIT_INTERVAL_S": str(AUDIT_S)}
    leader = start_two_instance_watcher(e2e, team_b, deps, "e2e-several", "--leader-ttl", "3", **env)
    e2e.wait_for_leader(deps, "e2e-several")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-several-standby", "--leader-ttl", "3", **env)
    a = e2e.stack
    dependents = [("e2e_part_after_clean", day, "default"), ("e2e_part_after_clean", day, "team_b"),
                  ("e2e_seg_per", region, "team_b")]  # fmt: skip

    raw_run, first_load = e2e.run_id("raw"), e2e.run_id("load_1")
    a.trigger("e2e_part_raw", raw_run, day)
    a.trigger("e2e_seg_load", first_load, None, partition_key=f"{seg_day}|eu")
    for dag_id, partition, instance in dependents:
        e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS, HOP_S, "first run", instance)
    first_clean, _ = e2e.read_run("e2e_part_clean", day)
    assert first_clean is not None and first_clean.run_id.startswith("asset_triggered__"), first_clean

    # The producer is cleared (Airflow makes a second consumer run); the region's key is triggered again.
    a.clear("e2e_part_raw", raw_run)
    second_load = e2e.run_id("load_2")
    a.trigger("e2e_seg_load", second_load, None, partition_key=f"{seg_day}|eu")
    for dag_id, partition, instance in dependents:
        e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
                                HOP_S, "one rerun", instance)  # fmt: skip
    second_clean, _ = e2e.read_run("e2e_part_clean", day)
    assert second_clean is not None and second_clean.run_id != first_clean.run_id, second_clean
    assert second_clean.run_after is not None and first_clean.run_after is not None
    assert second_clean.run_after > first_clean.run_after, "etcd names the older consumer run"
    load, _ = e2e.read_run("e2e_seg_load", region)
    assert load is not None and load.run_id == second_load, load

    # The leader dies between two audit passes; the standby leads and audits.
    leader_log = e2e.work_dir / "e2e-several-watcher.log"
    wait_for_audit_passes(leader_log, 1, AUDIT_S, "an audit pass of the leader")
    leader.kill()
    leader.wait(timeout=30)
    e2e.wait_for_leader(deps, "e2e-several-standby")
    # The newer consumer run is deleted in Airflow: the older one must not come back as new.
    status, body = a.request("DELETE", f"/api/v2/dags/e2e_part_clean/dagRuns/{urllib.parse.quote(second_clean.run_id)}")
    assert status == 204, (status, body)

    watched = [e2e.keys.run_key(e2e.stack_node("e2e_part_clean"), day),
               e2e.keys.run_key(e2e.stack_node("e2e_seg_load"), region)]  # fmt: skip
    ledgers = {(d, p, i): e2e.read_ledger(d, p, i) for d, p, i in dependents}
    before = {key: e2e.revisions(key).get(key) for key in watched}
    before.update({f"{d}/{i}/{p}": e2e.read_run(d, p, i)[1] for d, p, i in dependents})
    standby_log = e2e.work_dir / "e2e-several-standby-watcher.log"
    wait_for_audit_passes(standby_log, QUIET_PASSES, AUDIT_S, f"{QUIET_PASSES} audit passes of the new leader")
    after = {key: e2e.revisions(key).get(key) for key in watched}
    after.update({f"{d}/{i}/{p}": e2e.read_run(d, p, i)[1] for d, p, i in dependents})
    assert after == before, "a run-state key moved after the reruns"
    for (dag_id, partition, instance), ledger in ledgers.items():
        assert ledger is not None and ledger.trigger_count == 2, (dag_id, instance, ledger)
        assert e2e.read_ledger(dag_id, partition, instance) == ledger, (dag_id, instance, "the ledger moved")
        stack = a if instance == "default" else team_b
        assert [r for r in runs_by_id(stack, dag_id) if r.startswith("coordinator__")].count(run_id_for(partition)) == 1
    standing, _ = e2e.read_run("e2e_part_clean", day)
    assert standing is not None and standing.run_id == second_clean.run_id, "the deleted newer run's record went back"
    leading = standby_log.read_text(encoding="utf-8", errors="replace").split("leader.acquired")[-1]
    assert "audit.repaired" not in leading, "the new leader's audit rewrote a run state"


def scheduled_graph() -> dict[str, Any]:
    scheduled = {"upstreams": "default/e2e_scheduled_up", "runs": "scheduled"}
    return {
        "version": 1,
        "instances": {"team_b": {"description": "the second Airflow"}},
        "dags": {f"team_b/{dag}": dict(scheduled) for dag in SCHEDULED},
    }


def wait_state(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, state: str, timeout_s: float = 90) -> None:
    def reached() -> bool | None:
        task = task_runs(stack, dag_id, run_id).get(task_id)
        return True if task is not None and task.state == state else None

    wait_for(reached, timeout_s, f"{dag_id} {run_id} {task_id} {state}", interval_s=0.5)


def scheduled_run(stack: AirflowStack, dag_id: str, day: datetime, timeout_s: float = 90) -> str:
    """The run id of the run Airflow's scheduler made for ``day`` (its logical date), once it exists."""

    def made() -> str | None:
        return next((r.run_id for r in all_runs(stack, dag_id) if r.logical_date == day), None)

    return wait_for(made, timeout_s, f"the scheduler's run of {dag_id} for {day:%Y-%m-%d}", interval_s=0.5)


def test_a_scheduled_dependent_keeps_its_schedule_and_waits_deferred_for_its_upstream_in_the_other_deployment(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """team_b/e2e_scheduled_daily (CronDataIntervalTimetable) keeps its two scheduled runs and their data intervals;
    both waits are deferred in team_b's triggerer, which is killed (SIGKILL) and started again meanwhile; the
    upstream in the other Airflow succeeding for one day opens that day's wait once (the other day keeps waiting), a
    clear of the upstream clears that scheduled run once and it waits for, and gets, the next permit; a wait with a
    timeout fails naming the upstream that has not run. Slow by design: real runs in two Airflows."""
    e2e.stack.wait_for_dags(["e2e_scheduled_up"])
    e2e.stack.unpause(["e2e_scheduled_up"])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    p1, p2 = canonical_partition(day1), canonical_partition(day2)
    deps = e2e.write_dependencies(scheduled_graph(), name="scheduled.json")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-scheduled")
    e2e.wait_for_leader(deps, "e2e-scheduled")
    team_b.unpause(SCHEDULED)
    run1, run2 = (scheduled_run(team_b, "e2e_scheduled_daily", day) for day in (day1, day2))
    timeout_run = scheduled_run(team_b, "e2e_scheduled_timeout", day2)
    for run_id in (run1, run2):
        wait_state(team_b, "e2e_scheduled_daily", run_id, "wait_for_upstreams", "deferred")
    wait_state(team_b, "e2e_scheduled_timeout", timeout_run, "wait_for_upstreams", "deferred")

    # The triggerer dies with every wait deferred, and comes back: the waits resume from their serialized kwargs.
    triggerer = team_b._procs["triggerer"]
    os.killpg(triggerer.pid, signal.SIGKILL)
    triggerer.wait(timeout=30)
    assert team_b.revive() == ["triggerer"]

    up_run = e2e.run_id("scheduled_up")
    e2e.stack.trigger("e2e_scheduled_up", up_run, p1)
    first = team_b.wait_for_run("e2e_scheduled_daily", run1, ["success"], timeout_s=120)
    interval = (parse_time(first["data_interval_start"]), parse_time(first["data_interval_end"]))
    assert interval == (day1, day2), first  # its own schedule's interval, not [D, D]
    assert task_runs(team_b, "e2e_scheduled_daily", run1)["wait_for_upstreams"].try_number == 1
    assert task_runs(team_b, "e2e_scheduled_daily", run2)["wait_for_upstreams"].state == "deferred"
    permit = json.loads(e2e.read_key(f"{e2e.prefix}/permits/team_b/e2e_scheduled_daily/{p1}") or b"{}")
    assert (permit["granted"], permit["generation"]) == (True, 1), permit
    assert e2e.read_key(f"{e2e.prefix}/permits/team_b/e2e_scheduled_daily/{p2}") is None
    # The coordinator made no run in either Airflow (the session Airflow's copy may run on its own schedule).
    assert [r for r in e2e.runs("e2e_scheduled_daily", p1) if r.run_id == run_id_for(p1)] == []
    assert {r.run_id for r in all_runs(team_b, "e2e_scheduled_daily")} == {run1, run2}

    # The wait that cannot open fails, naming what it still waits for (its upstream never ran for that day).
    team_b.wait_for_run("e2e_scheduled_timeout", timeout_run, ["failed"], timeout_s=120)
    logs = "\n".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in team_b.log_dir.rglob("*.log")
        if "e2e_scheduled_timeout" in str(path) and "wait_for_upstreams" in str(path)
    )
    assert f"e2e_scheduled_up {p2} has not run" in logs, logs[-2000:]

    # A clear of the upstream cascades once through the permit: Airflow's own run is cleared, waits, goes on.
    e2e.stack.clear("e2e_scheduled_up", up_run)
    e2e.wait_for_run_record(
        "e2e_scheduled_daily", p1, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
        timeout_s=120, what="the cleared scheduled run's success", instance="team_b",
    )  # fmt: skip
    _, revision = e2e.read_run("e2e_scheduled_daily", p1, "team_b")
    wait_settled(e2e.work_dir / "e2e-scheduled-watcher.log", revision)
    record, _ = e2e.read_run("e2e_scheduled_daily", p1, "team_b")
    assert record is not None and (record.state, record.clear_number, record.run_id) == (
        RunState.SUCCESS, 1, run1,
    ), record  # fmt: skip
    ledger = e2e.read_ledger("e2e_scheduled_daily", p1, "team_b")
    assert ledger is not None and (ledger.trigger_count, ledger.action) == (2, "clear"), ledger
    permit = json.loads(e2e.read_key(f"{e2e.prefix}/permits/team_b/e2e_scheduled_daily/{p1}") or b"{}")
    assert (permit["granted"], permit["generation"]) == (True, 2), permit
    assert task_runs(team_b, "e2e_scheduled_daily", run2)["wait_for_upstreams"].state == "deferred"
