"""A real Airflow 2.11 beside the session's real Airflow 3.3: one etcd, one prefix, one watcher reaching both through
an instances file (Airflow 2 over REST v1 with HTTP Basic auth, Airflow 3 over REST v2 with a JWT).

The Airflow 2 instance (``af2``) runs from its own venv (``.venv-airflow2``, built on first use, see
``devtools/airflow2_stack.py``) with this package installed, its metadata in a database of its own on the session's
PostgreSQL (LocalExecutor, as a production Airflow 2 runs), so the coordinator's plugin records its run states from
inside Airflow 2's scheduler (and task states from its task processes). Its DAGs are ``tests/e2e/dags_af2/``; the
Airflow 3 side uses the session's ``e2e_dependent``, ``08_on_failure`` and ``e2e_af2_task_down``. The issue 16 cases
(a shift, a task-level upstream) run here in short versions; the full ones are in ``test_edges_e2e.py``.

Counts come from each Airflow's own records over REST: runs per DAG and logical date, and the try number of each
run's task (1 after the first run, +1 for every clear that reran it), never only from etcd.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.runs import TriggerResult
from coordinator.core.assets import MARKER, AssetKeys
from coordinator.core.importer.facts import ScheduleFact, ScheduleKind
from coordinator.core.importer.intervals import interval_entry
from coordinator.core.model import NodeId, RunState, canonical_partition, partition_datetime, run_id_for
from coordinator.errors import AirflowAuthError
from coordinator.runtime.settings import InstanceSettings
from coordinator.watcher.faults import CRASH_EXIT_CODE
from devtools.airflow2_stack import Airflow2Stack, ensure_venv
from devtools.airflow_stack import AirflowStack
from devtools.etcd_server import EtcdServer
from tests.e2e.harness import (
    E2E,
    PLUGIN_TASKS_TTL_S,
    REPO,
    DagRun,
    assert_new_and_changed_dag_files_are_parsed,
    assert_paused_list_follows,
    assert_started_after,
    parse_time,
    release,
    runs_between,
    task_runs,
    task_tries,
    wait_for,
)
from tests.e2e.managed_auth import instances_file, managed
from tests.e2e.settle import wait_runs_settled

# The first test also waits for the Airflow 2 venv (about a minute when it must be built) and the stack's start.
#: Task states of a task that has not finished.
UNFINISHED = ("scheduled", "queued", "running")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

AF2 = "af2"
AF2_DAGS_DIR = Path(__file__).resolve().parent / "dags_af2"
AF2_DAGS = ["af2_root", "af2_leaf", "af2_fail", "af2_two_step", "af2_shift_up", "af2_shift_down", "af2_task_up",
            "af2_asset_producer", "af2_feed", "af2_interval_root", "af2_interval_daily", "af2_sched_up"]  # fmt: skip


def converted(timetable: str, upstream: str) -> dict[str, Any]:
    """A dependent's entry as ``import-dags`` converts a daily DAG on ``timetable`` (its ``data_interval`` by the
    importer's own rule: tests/test_import_intervals.py runs the command on these timetables in real Airflows)."""
    entry: dict[str, Any] = {"partitions": {"cron": "@daily", "timezone": "UTC"}, "upstreams": upstream}
    data_interval = interval_entry(ScheduleFact(ScheduleKind.CRON, timetable), entry)
    return {**entry, "data_interval": data_interval} if data_interval is not None else entry


#: Semantics `triggered-data-interval`: one Airflow 2 root, three converted daily dependents in both Airflows.
INTERVAL_DAGS = {
    f"{AF2}/af2_interval_daily": converted("CronDataIntervalTimetable", f"{AF2}/af2_interval_root"),  # @daily on 2.11
    "e2e_interval_period": converted("CronDataIntervalTimetable", f"{AF2}/af2_interval_root"),
    "e2e_interval_point": converted("CronTriggerTimetable", f"{AF2}/af2_interval_root"),
}
GRAPH = {
    "version": 1,
    "instances": {AF2: {"description": "Airflow 2.11 (REST v1, basic auth)"}},
    "dags": {
        # af2 -> default -> af2: a trigger in each direction.
        "e2e_dependent": {"upstreams": f"{AF2}/af2_root"},
        f"{AF2}/af2_leaf": {"upstreams": "default/e2e_dependent"},
        # A failure on Airflow 2 runs its handler on Airflow 3.
        "08_on_failure": {"on_failure_of": f"{AF2}/af2_fail"},
        # Issue 16 on Airflow 2.11: a 05:00 run waits for the same day's 01:00 run only (both on Airflow 2) ...
        f"{AF2}/af2_shift_up": {"partitions": {"cron": "0 1 * * *"}},
        f"{AF2}/af2_shift_down": {
            "partitions": {"cron": "0 5 * * *"},
            "upstreams": [{"dag": f"{AF2}/af2_shift_up", "shift": "-4h"}],
        },
        # ... and an Airflow 3 DAG waits for one task of an Airflow 2 DAG (the plugin records Airflow 2's task states).
        "e2e_af2_task_down": {"upstreams": [{"dag": f"{AF2}/af2_task_up", "task": "extract"}]},
        **INTERVAL_DAGS,
    },
    # Semantics rules 16-17: af2's orders events go to the Airflow 3 instance, whose e2e_asset_consumer schedules on
    # the asset itself.
    "assets": [{"asset": "s3://e2e/af2-*", "from": AF2, "to": ["default"]}],
}
WATCHER_ID = "e2e-af2"
#: The module's watcher logs to <work dir>/<this>.log. After the last run of a cascade the tests wait for its idle
#: pass that saw the run's record (tests/e2e/settle.py): a duplicate trigger or clear would be an action of that pass
#: or of one before it, on the ledger (trigger_count, asserted) before the pass counts as idle; REST may show the
#: cleared run's new try only when Airflow 2's scheduler queues it (1-5 s later), the ledger shows it at once.
WATCHER_LOG = "airflow2-watcher"
#: Asset deliveries are not reconcile actions (no idle line to wait for), and the consumer's asset-triggered run
#: appears only when Airflow 3's scheduler reads the posted event: a quiet period is the only evidence of no 4th run.
ASSET_QUIET_S = 6.0
#: Generous: Airflow 2 starts one `airflow tasks run` process per task (5-10 s each here).
CASCADE_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class Setup:
    """The Airflow 2 stack and the watcher's configuration files for this module."""

    af2: Airflow2Stack
    deps: Path
    instances: Path


@pytest.fixture(scope="module")
def setup(
    request: pytest.FixtureRequest,
    etcd_server: EtcdServer,
    e2e_prefix: str,
    airflow_database: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    """An Airflow 2.11 (instance af2) on the session's etcd, prefix and PostgreSQL, for this module only; stopped by
    PID. It starts in a thread while the session's Airflow 3.3 is fetched: under ``make test`` this module is the first
    on the shared stack's worker, so the two stacks start side by side (one after the other, they took 60.5 s of
    that worker's time, the path that ends the run)."""
    begin = time.monotonic()
    python = ensure_venv()
    venv_s = time.monotonic() - begin
    base = tmp_path_factory.mktemp("af2")
    dags = base / "dags"
    dags.mkdir()
    (base / "tmp").mkdir()
    for source in sorted(AF2_DAGS_DIR.glob("*.py")):
        shutil.copy2(source, dags / source.name)
    stack = Airflow2Stack(
        home=base / "airflow",
        dags_folder=dags,
        instance=AF2,
        etcd_endpoints=etcd_server.endpoint,
        prefix=e2e_prefix,
        python=str(python),
        # Configured the way managed services allow (issue 17): no COORDINATOR_* variable, [coordinator] options and
        # the coordinator_etcd connection in a LocalFilesystemBackend secrets backend; the tests below check that
        # the records come from this plugin (source airflow-plugin:af2), so Airflow 2.11's own lookup is proven too.
        plugin_settings="airflow",
        # As on the session's Airflow 3: a named task is seen by task processes within 1 s (default 30 s); an Airflow
        # option here, since this plugin reads no COORDINATOR_* variable.
        extra_env={"AIRFLOW__COORDINATOR__PLUGIN_TASKS_TTL_S": f"{PLUGIN_TASKS_TTL_S:g}", "TMPDIR": str(base / "tmp")},
        database_url=airflow_database(AF2, airflow="2.11"),
        triggerer=True,  # af2_scheduled_daily's wait is deferred
    )
    try:
        # The pool's exit waits for the thread even when the session's stack fails, so ``finally`` stops a whole af2.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="af2-start") as pool:
            started = pool.submit(start_af2, stack)
            airflow_e2e: E2E = request.getfixturevalue("airflow_e2e")
            airflow_e2e.revive_if_needed()
            started.result()
        print(
            f"\nairflow 2 venv ready in {venv_s:.1f} s; stack up in {stack.started_in_s:.1f} s at {stack.url}, "
            f"database {stack.database}"
        )
        instances = base / "instances.json"
        instances.write_text(
            json.dumps(
                {
                    "default": {
                        "url": airflow_e2e.stack.url,
                        "username": airflow_e2e.stack.username,
                        "password_file": str(airflow_e2e.stack.home / "admin_password"),
                    },
                    AF2: {"url": stack.url, "username": stack.username, "password_env": "E2E_AF2_PASSWORD"},
                }
            ),
            encoding="utf-8",
        )
        deps = airflow_e2e.write_dependencies(GRAPH, name="airflow2.json")
        yield Setup(af2=stack, deps=deps, instances=instances)
    finally:
        stack.stop()


def start_af2(stack: Airflow2Stack) -> None:
    """Start the Airflow 2.11 stack with its DAGs parsed and unpaused."""
    stack.start()
    stack.wait_for_dags(AF2_DAGS)
    stack.unpause(AF2_DAGS)


def start_watcher(e2e: E2E, setup: Setup) -> None:
    """The module's watcher (reaches both Airflows only through the instances file); stopped when the test ends."""
    e2e.start_watcher(
        setup.deps,
        "--id",
        WATCHER_ID,
        name=WATCHER_LOG,
        COORDINATOR_INSTANCES_FILE=str(setup.instances),
        COORDINATOR_AIRFLOW_URL="",
        E2E_AF2_PASSWORD=setup.af2.password,
    )
    e2e.wait_for_leader(setup.deps, WATCHER_ID)


def assert_unchanged(e2e: E2E, stack: AirflowStack, dag_id: str, partition: str, before: DagRun, tries: int) -> None:
    """The one run of ``dag_id`` for ``partition`` is still ``before`` (not queued again, same start) after tries."""
    after = e2e.only_run(dag_id, partition, stack=stack)
    assert (after.state, after.start_date) == (before.state, before.start_date), f"{dag_id} ran again: {after}"
    assert set(task_tries(stack, dag_id, after.run_id).values()) == {tries}, f"{dag_id} not tried {tries} time(s)"


def cascade_runs(partition: str) -> list[tuple[str, ...]]:
    """The run-state records of the 2 -> 3 -> 2 cascade for ``partition`` (for ``wait_runs_settled``)."""
    return [("af2_root", partition, AF2), ("e2e_dependent", partition), ("af2_leaf", partition, AF2)]


def wait_for_state(
    e2e: E2E, dag_id: str, partition: str, instance: str, state: RunState, clear_number: int = 0
) -> None:
    e2e.wait_for_run_record(
        dag_id,
        partition,
        lambda r: r.state is state and r.clear_number == clear_number,
        timeout_s=CASCADE_TIMEOUT_S,
        what=f"{state} of attempt {clear_number} ({instance})",
        instance=instance,
    )


def test_cascade_2_to_3_to_2_and_a_cleared_2x_root_reruns_each_dependent_once(e2e: E2E, setup: Setup) -> None:
    """af2/af2_root succeeding runs default/e2e_dependent once, then af2/af2_leaf once; clearing the root in
    Airflow 2 reruns each of them exactly once (one run per DAG and date, task tried twice)."""
    af2 = setup.af2
    start_watcher(e2e, setup)
    partition, run_id = e2e.new_partition(), e2e.run_id("af2")
    af2.trigger("af2_root", run_id, partition)

    previous_start = None
    for attempt in (0, 1):
        started = time.monotonic()
        if attempt:
            af2.clear("af2_root", run_id)
            af2.wait_for_run("af2_root", run_id, ["success"], timeout_s=CASCADE_TIMEOUT_S)
        wait_for_state(e2e, "af2_leaf", partition, AF2, RunState.SUCCESS, attempt)
        elapsed = time.monotonic() - started
        root = e2e.only_run("af2_root", partition, stack=af2)
        middle = e2e.only_run("e2e_dependent", partition)
        leaf = e2e.only_run("af2_leaf", partition, stack=af2)
        assert (root.state, middle.state, leaf.state) == ("success", "success", "success"), (root, middle, leaf)
        assert middle.run_id == leaf.run_id == run_id_for(partition)
        assert set(middle.conf["coordinator"]["inputs"]) == {f"{AF2}/af2_root"}, middle.conf
        assert set(leaf.conf["coordinator"]["inputs"]) == {"default/e2e_dependent"}, leaf.conf
        assert_started_after(middle, [root])  # two Airflows, one host clock
        assert_started_after(leaf, [middle])
        if previous_start is not None:
            assert middle.start_date is not None and middle.start_date > previous_start, "the rerun did not start"
        previous_start = middle.start_date
        for dag_id, stack in [("e2e_dependent", e2e.stack), ("af2_leaf", af2)]:
            assert task_tries(stack, dag_id, run_id_for(partition)) == {"work": attempt + 1}, (dag_id, attempt)
        print(f"\n2 -> 3 -> 2, attempt {attempt}: af2_root triggered/cleared -> af2_leaf success {elapsed:.1f} s")

    wait_runs_settled(e2e, WATCHER_LOG, cascade_runs(partition))
    assert_unchanged(e2e, e2e.stack, "e2e_dependent", partition, middle, tries=2)
    assert_unchanged(e2e, af2, "af2_leaf", partition, leaf, tries=2)
    assert_unchanged(e2e, af2, "af2_root", partition, root, tries=2)
    for dag_id, instance in [("e2e_dependent", "default"), ("af2_leaf", AF2)]:
        ledger = e2e.read_ledger(dag_id, partition, instance)
        assert ledger is not None and ledger.trigger_count == 2, (instance, dag_id, ledger)
    # The plugin's listener wrote Airflow 2's records from inside its scheduler (the watcher's audit would sign
    # "audit:af2"), and told the rerun apart from the first attempt by Airflow 2's clear_number.
    for dag_id in ("af2_root", "af2_leaf"):
        record, _ = e2e.read_run(dag_id, partition, AF2)
        assert record is not None and (record.source, record.clear_number) == (f"airflow-plugin:{AF2}", 1), record


def test_a_failure_in_airflow2_runs_its_handler_in_airflow3_once(e2e: E2E, setup: Setup) -> None:
    """af2/af2_fail failing for P runs default/08_on_failure once for P; nothing else runs for P."""
    af2 = setup.af2
    start_watcher(e2e, setup)
    partition, run_id = e2e.new_partition(), e2e.run_id("af2fail")
    af2.trigger("af2_fail", run_id, partition)
    af2.wait_for_run("af2_fail", run_id, ["failed"], timeout_s=CASCADE_TIMEOUT_S)
    wait_for_state(e2e, "af2_fail", partition, AF2, RunState.FAILED)
    wait_for_state(e2e, "08_on_failure", partition, "default", RunState.SUCCESS)

    failed, handler = e2e.only_run("af2_fail", partition, stack=af2), e2e.only_run("08_on_failure", partition)
    assert (failed.state, handler.state) == ("failed", "success"), (failed, handler)
    assert handler.run_id == run_id_for(partition)
    assert_started_after(handler, [failed])
    wait_runs_settled(e2e, WATCHER_LOG, [("af2_fail", partition, AF2), ("08_on_failure", partition)])
    assert_unchanged(e2e, e2e.stack, "08_on_failure", partition, handler, tries=1)
    ledger = e2e.read_ledger("08_on_failure", partition)
    assert ledger is not None and ledger.trigger_count == 1, ledger
    # Only a success satisfies a dependency: the cascade's DAGs never ran for this partition.
    assert e2e.runs("e2e_dependent", partition) == [] and e2e.runs("af2_leaf", partition, stack=af2) == []


def test_a_2x_success_while_the_watcher_is_down_cascades_once_after_restart(e2e: E2E, setup: Setup) -> None:
    """af2_root succeeding while no watcher runs is cascaded 2 -> 3 -> 2 once when the watcher starts again."""
    af2 = setup.af2
    start_watcher(e2e, setup)  # adopts the graph (a no-op if an earlier test did), then stops: nobody watches
    e2e.stop_watchers()
    assert e2e.read_key(e2e.keys.leader) is None, "a stopped watcher resigns its leadership"

    partition, run_id = e2e.new_partition(), e2e.run_id("af2down")
    af2.trigger("af2_root", run_id, partition)
    af2.wait_for_run("af2_root", run_id, ["success"], timeout_s=CASCADE_TIMEOUT_S)
    wait_for_state(e2e, "af2_root", partition, AF2, RunState.SUCCESS)
    assert e2e.runs("e2e_dependent", partition) == [], "something acted while no watcher ran"
    assert e2e.read_ledger("e2e_dependent", partition) is None

    started = time.monotonic()
    start_watcher(e2e, setup)
    wait_for_state(e2e, "af2_leaf", partition, AF2, RunState.SUCCESS)
    elapsed = time.monotonic() - started
    middle = e2e.only_run("e2e_dependent", partition)
    leaf = e2e.only_run("af2_leaf", partition, stack=af2)
    assert middle.state == leaf.state == "success", (middle, leaf)
    wait_runs_settled(e2e, WATCHER_LOG, cascade_runs(partition))
    assert_unchanged(e2e, e2e.stack, "e2e_dependent", partition, middle, tries=1)
    assert_unchanged(e2e, af2, "af2_leaf", partition, leaf, tries=1)
    for dag_id, instance in [("e2e_dependent", "default"), ("af2_leaf", AF2)]:
        ledger = e2e.read_ledger(dag_id, partition, instance)
        assert ledger is not None and ledger.trigger_count == 1, (instance, dag_id, ledger)
    print(f"\nafter downtime: watcher start -> af2_leaf success {elapsed:.1f} s")


def test_the_paused_list_over_rest_v1_names_exactly_the_paused_2x_dags(setup: Setup) -> None:
    """``paused_dags`` on Airflow 2.11 (``GET /api/v1/dags?paused=true``, basic auth): a paused DAG shows, no
    unpaused one does."""
    assert_paused_list_follows(setup.af2, AF2_DAGS, "af2_fail")


def test_a_dag_file_added_to_the_running_airflow2_and_then_changed_is_parsed_each_time(setup: Setup) -> None:
    """Airflow 2.11's scheduler parses a DAG file copied into its folder with an mtime older than the stack, and the
    DAG a rewrite of the file adds, though it re-parses unchanged files only every 300 s."""
    assert_new_and_changed_dag_files_are_parsed(setup.af2, "af2_parse_probe")


FAB_BLOCK_RE = re.compile(r"<!-- readme-e2e-airflow2: fab-role -->\n```bash\n(.*?)\n```", re.DOTALL)


def test_the_readme_fab_role_lets_the_watcher_read_trigger_and_clear(e2e: E2E, setup: Setup, tmp_path: Path) -> None:
    """The install guide's FAB role (docs/howto/existing-airflow.md, step 5), created as written on Airflow 2.11, lets
    its user list DAGs, trigger and clear a run over REST v1; without can_edit on DAGs the trigger is refused, which
    is why the guide asks for it."""
    (block,) = FAB_BLOCK_RE.findall((REPO / "docs" / "howto" / "existing-airflow.md").read_text(encoding="utf-8"))
    password = tmp_path / "airflow_password"
    password.write_text("readme-role-pw", encoding="utf-8")
    env = setup.af2.environment()

    def airflow_cli(script: str) -> None:
        done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{script}"], cwd=setup.af2.home, env=env,
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"

    airflow_cli(block.replace("/run/secrets/airflow_password", str(password)))
    user = InstanceSettings(url=setup.af2.url, username="coordinator", password="readme-role-pw")
    partition = e2e.new_partition()

    async def read_trigger_clear() -> None:
        async with AirflowClient(user, name=AF2) as client:
            assert set(AF2_DAGS) <= set(await client.dags())
            created = await client.trigger("af2_leaf", run_id_for(partition), datetime.fromisoformat(partition))
            assert created.result is TriggerResult.CREATED
        setup.af2.wait_for_run("af2_leaf", run_id_for(partition), ["success"], timeout_s=CASCADE_TIMEOUT_S)
        async with AirflowClient(user, name=AF2) as client:
            await client.clear("af2_leaf", run_id_for(partition))

    asyncio.run(read_trigger_clear())
    # The clear reran it: the task's try number moves to 2 when the scheduler queues it again (seconds later).
    wait_for(
        lambda: set(task_tries(setup.af2, "af2_leaf", run_id_for(partition)).values()) == {2},
        CASCADE_TIMEOUT_S,
        "the cleared af2_leaf run to be tried again",
    )

    airflow_cli("airflow roles del-perms Coordinator -r DAGs -a can_edit")
    other = e2e.new_partition()

    async def trigger_without_dag_edit() -> None:
        async with AirflowClient(user, name=AF2) as client:
            await client.trigger("af2_leaf", run_id_for(other), datetime.fromisoformat(other))

    with pytest.raises(AirflowAuthError):
        asyncio.run(trigger_without_dag_edit())


@pytest.mark.parametrize("method", ["bearer", "aws_mwaa"])
def test_through_a_managed_front_the_2_to_3_to_2_cascade_and_rerun_run_once(
    e2e: E2E, setup: Setup, method: str
) -> None:
    """Airflow 2.11 behind a front enforcing ``method`` (bearer rotated every 4 s; MWAA sessions expiring after 4 s,
    through real boto3): af2_root -> e2e_dependent -> af2_leaf and a cleared rerun run once each (one run per DAG
    and date, task tried twice) while the credential rotates or expires at least twice."""
    af2 = setup.af2
    work = e2e.work_dir / f"af2-auth-{method}"
    with managed(
        method, af2.url, username=af2.username, password=af2.password, upstream_api="v1", work=work, lifetime_s=4.0
    ) as m:
        entries = json.loads(setup.instances.read_text(encoding="utf-8"))
        entries[AF2] = {"url": m.front.url, "auth": m.auth}
        instances = instances_file(work / "instances.json", entries)
        watcher_id = f"{WATCHER_ID}-{method}"
        e2e.start_watcher(
            setup.deps, "--id", watcher_id, name=f"airflow2-{method}-watcher",
            COORDINATOR_INSTANCES_FILE=str(instances), COORDINATOR_AIRFLOW_URL="",
            # The watcher acts on af2 only twice per cascade (create af2_leaf, clear it); its audit reading af2 every
            # 2 s keeps it talking through the front, so credentials expire and are renewed under a running cascade.
            COORDINATOR_AUDIT_INTERVAL_S="2", **m.env,
        )  # fmt: skip
        e2e.wait_for_leader(setup.deps, watcher_id)
        partition, run_id = e2e.new_partition(), e2e.run_id(f"af2{method}")
        af2.trigger("af2_root", run_id, partition)
        wait_for_state(e2e, "af2_leaf", partition, AF2, RunState.SUCCESS, 0)
        af2.clear("af2_root", run_id)
        af2.wait_for_run("af2_root", run_id, ["success"], timeout_s=CASCADE_TIMEOUT_S)
        wait_for_state(e2e, "af2_leaf", partition, AF2, RunState.SUCCESS, 1)
        wait_runs_settled(e2e, f"airflow2-{method}-watcher", cascade_runs(partition))
        middle = e2e.only_run("e2e_dependent", partition)
        leaf = e2e.only_run("af2_leaf", partition, stack=af2)
        assert middle.state == leaf.state == "success", (middle, leaf)
        assert_unchanged(e2e, e2e.stack, "e2e_dependent", partition, middle, tries=2)
        assert_unchanged(e2e, af2, "af2_leaf", partition, leaf, tries=2)
        for dag_id, instance in [("e2e_dependent", "default"), ("af2_leaf", AF2)]:
            ledger = e2e.read_ledger(dag_id, partition, instance)
            assert ledger is not None and ledger.trigger_count == 2, (instance, dag_id, ledger)
        crossed = m.crossings()
        assert crossed >= 2, f"{method}: only {crossed} credential rotations/expiries crossed"
        assert m.front.forwarded > 0
        print(f"\nairflow 2 via {method}: {crossed} rotations/expiries crossed")


def test_named_task_state_is_written_from_airflow2_task_process(e2e: E2E, setup: Setup) -> None:
    """On Airflow 2.11 a named task's success reaches etcd from its task process (source plugin, Airflow 2's run id
    and try) while its DAG run is still running; the unnamed task is not recorded; the REST audit (v1) repairs it."""
    af2 = setup.af2
    with e2e.named_tasks({f"{AF2}/af2_two_step": ["produce"]}):
        time.sleep(1.2)  # task processes re-read the named tasks after 1 s (COORDINATOR_PLUGIN_TASKS_TTL_S)
        partition, run_id = e2e.new_partition(), e2e.run_id("af2task")
        af2.trigger("af2_two_step", run_id, partition)
        record, task_revision = e2e.wait_for_task_record(
            "af2_two_step", "produce", partition, lambda r: r.state is RunState.SUCCESS,
            timeout_s=CASCADE_TIMEOUT_S, instance=AF2,
        )  # fmt: skip
        run_record, _ = e2e.read_run("af2_two_step", partition, AF2)
        assert run_record is None or run_record.state is not RunState.SUCCESS, run_record
        assert (record.run_id, record.clear_number, record.try_number) == (run_id, 0, 1)
        assert record.source == f"airflow-plugin:{AF2}"
        af2.wait_for_run("af2_two_step", run_id, ["success"], timeout_s=CASCADE_TIMEOUT_S)
        wait_for_state(e2e, "af2_two_step", partition, AF2, RunState.SUCCESS)
        _, run_revision = e2e.read_run("af2_two_step", partition, AF2)
        assert task_revision < run_revision
        assert e2e.read_task("af2_two_step", "tail", partition, AF2) == (None, 0)

        # A lost write: the leader's REST audit (v1, basic auth) puts the task's state back, signed audit, same try.
        assert e2e.delete_key(e2e.keys.task_key(NodeId(AF2, "af2_two_step"), "produce", partition))
        graph = {"version": 1, "instances": {AF2: {}}, "dags": {f"{AF2}/af2_two_step": {}}}
        audit = e2e.audit_once(graph, af2)
        repaired, _ = e2e.read_task("af2_two_step", "produce", partition, AF2)
        assert audit.errors == 0 and audit.tasks_repaired >= 1, audit
        assert repaired is not None and (repaired.state, repaired.run_id, repaired.try_number, repaired.source) == (
            RunState.SUCCESS, run_id, 1, f"audit:{AF2}",
        )  # fmt: skip


def test_a_4h_shift_on_airflow2_runs_each_0500_day_once_and_a_rerun_reruns_only_that_day(
    e2e: E2E, setup: Setup
) -> None:
    """af2_shift_up at 01:00 for two days runs af2_shift_down (Airflow 2) at 05:00 of the same days, once each and
    at no other date; clearing the second upstream day reruns only the second dependent day, once."""
    af2 = setup.af2
    start_watcher(e2e, setup)
    days = [partition_datetime(e2e.new_partition()) for _ in range(2)]
    assert days[1] - days[0] == timedelta(days=1), days
    ups = [canonical_partition(day + timedelta(hours=1)) for day in days]
    downs = [canonical_partition(day + timedelta(hours=5)) for day in days]
    up_runs = [e2e.run_id("af2shift") for _ in ups]
    for up, run_id in zip(ups, up_runs, strict=True):
        af2.trigger("af2_shift_up", run_id, up)
    for down in downs:
        wait_for_state(e2e, "af2_shift_down", down, AF2, RunState.SUCCESS)

    window = (canonical_partition(days[0]), canonical_partition(days[1] + timedelta(hours=47)))
    assert [r.logical_date for r in runs_between(af2, "af2_shift_down", *window)] == [
        partition_datetime(down) for down in downs
    ], "the dependent ran at other dates than 05:00 of the two days"
    first = [e2e.only_run("af2_shift_down", down, stack=af2) for down in downs]
    for up, down, run in zip(ups, downs, first, strict=True):
        assert (run.state, run.run_id) == ("success", run_id_for(down)), run
        assert_started_after(run, [e2e.only_run("af2_shift_up", up, stack=af2)])
        ledger = e2e.read_ledger("af2_shift_down", down, AF2)
        assert ledger is not None and list(ledger.inputs) == [f"{AF2}/af2_shift_up@{up}"], ledger

    af2.clear("af2_shift_up", up_runs[1])
    wait_for_state(e2e, "af2_shift_down", downs[1], AF2, RunState.SUCCESS, clear_number=1)
    wait_runs_settled(e2e, WATCHER_LOG, [("af2_shift_up", ups[1], AF2), ("af2_shift_down", downs[1], AF2)])
    assert_unchanged(e2e, af2, "af2_shift_down", downs[0], first[0], tries=1)
    rerun = e2e.only_run("af2_shift_down", downs[1], stack=af2)
    assert rerun.state == "success" and task_tries(af2, "af2_shift_down", rerun.run_id) == {"work": 2}, rerun
    assert len(runs_between(af2, "af2_shift_down", *window)) == 2
    counts = [e2e.read_ledger("af2_shift_down", down, AF2) for down in downs]
    assert [c.trigger_count if c else None for c in counts] == [1, 2], counts


def test_an_airflow2_task_starts_its_airflow3_dependent_while_its_dag_runs_and_its_clear_cascades_once(
    e2e: E2E, setup: Setup
) -> None:
    """default/e2e_af2_task_down starts after af2_task_up's ``extract`` succeeded in Airflow 2 while af2_task_up
    still runs; clearing ``extract`` alone in Airflow 2 reruns the dependent once."""
    af2 = setup.af2
    start_watcher(e2e, setup)
    e2e.wait_for_named_tasks()
    partition, up_run = e2e.new_partition(), e2e.run_id("af2task")
    af2.trigger("af2_task_up", up_run, partition)
    wait_for_state(e2e, "e2e_af2_task_down", partition, "default", RunState.SUCCESS)

    upstream, up_tasks = e2e.only_run("af2_task_up", partition, stack=af2), task_runs(af2, "af2_task_up", up_run)
    assert upstream.state == "running", upstream
    # hold has not finished (on a loaded machine it may not even have started: scheduled or queued).
    assert up_tasks["extract"].state == "success" and up_tasks["hold"].state in UNFINISHED, up_tasks
    down = e2e.only_run("e2e_af2_task_down", partition)
    down_task = task_runs(e2e.stack, "e2e_af2_task_down", down.run_id)["work"]
    extract_end = up_tasks["extract"].end_date
    assert down_task.start_date and extract_end and down_task.start_date > extract_end, (down_task, extract_end)

    # Airflow 2's task process wrote extract's state (the REST audit, the safety net, would sign "audit:af2").
    extract, _ = e2e.read_task("af2_task_up", "extract", partition, AF2)
    assert extract is not None and extract.source == f"airflow-plugin:{AF2}", extract

    release(af2, "af2_task_up", partition)
    af2.wait_for_run("af2_task_up", up_run, ["success"], timeout_s=CASCADE_TIMEOUT_S)
    af2.clear_task("af2_task_up", up_run, "extract")
    wait_for_state(e2e, "e2e_af2_task_down", partition, "default", RunState.SUCCESS, clear_number=1)
    af2.wait_for_run("af2_task_up", up_run, ["success"], timeout_s=CASCADE_TIMEOUT_S)
    # The listener wrote the upstream's success before REST showed it.
    wait_runs_settled(e2e, WATCHER_LOG, [("af2_task_up", partition, AF2), ("e2e_af2_task_down", partition)])
    up_tasks = task_runs(af2, "af2_task_up", up_run)
    assert (up_tasks["extract"].try_number, up_tasks["hold"].try_number) == (2, 1), up_tasks
    rerun = e2e.only_run("e2e_af2_task_down", partition)
    assert rerun.state == "success" and task_tries(e2e.stack, "e2e_af2_task_down", rerun.run_id) == {"work": 2}
    ledger = e2e.read_ledger("e2e_af2_task_down", partition)
    assert ledger is not None and ledger.trigger_count == 2, ledger


def data_interval_in_database(stack: AirflowStack, dag_id: str, run_id: str) -> tuple[datetime, datetime]:
    """``dag_run.data_interval_start`` and ``_end`` of one run, read from the Airflow's metadata database itself."""
    import sqlalchemy  # Airflow's own dependency: present wherever an e2e Airflow runs

    engine = sqlalchemy.create_engine(stack.environment()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sqlalchemy.text(
                    "SELECT data_interval_start, data_interval_end FROM dag_run WHERE dag_id = :d AND run_id = :r"
                ),
                {"d": dag_id, "r": run_id},
            ).one()
            return row[0], row[1]
    finally:
        engine.dispose()


def test_converted_daily_dependents_run_with_their_day_and_a_trigger_timetable_one_with_its_point(
    e2e: E2E, setup: Setup
) -> None:
    """af2_interval_root succeeding for day D runs three converted dependents, each once, with the data interval
    their original timetable gave, read from each Airflow's database: [D, D + 1 day) for Airflow 2.11's @daily
    (af2_interval_daily) and Airflow 3.3's CronDataIntervalTimetable (e2e_interval_period), [D, D] for Airflow 3's
    CronTriggerTimetable (e2e_interval_point); the logical date stays D."""
    af2 = setup.af2
    start_watcher(e2e, setup)
    partition = e2e.new_partition()
    day = partition_datetime(partition)
    af2.trigger("af2_interval_root", e2e.run_id("af2interval"), partition)
    expected = {
        ("af2_interval_daily", AF2): (day, day + timedelta(days=1)),
        ("e2e_interval_period", "default"): (day, day + timedelta(days=1)),
        ("e2e_interval_point", "default"): (day, day),
    }
    for (dag_id, instance), interval in expected.items():
        wait_for_state(e2e, dag_id, partition, instance, RunState.SUCCESS)
        stack = af2 if instance == AF2 else e2e.stack
        run = e2e.only_run(dag_id, partition, stack=stack)
        assert (run.run_id, run.logical_date) == (run_id_for(partition), day), run
        start, end = data_interval_in_database(stack, dag_id, run.run_id)
        assert (start, end) == interval, (dag_id, start, end)
        print(f"\n{instance}/{dag_id} for {partition}: data interval [{start.isoformat()}, {end.isoformat()}]")


def consumer_runs(e2e: E2E, dag_id: str = "e2e_asset_consumer") -> list[dict[str, Any]]:
    """Every run of an Airflow 3 asset consumer (asset-triggered runs have no logical date: all of them)."""
    # 60 s: on a loaded machine the api-server has taken over 10 s to answer while the scheduler ran tasks.
    status, body = e2e.stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100", timeout_s=60)
    assert status == 200, body
    return list(body["dag_runs"])


def native_lag(e2e: E2E) -> float:
    """Airflow's own asset scheduling inside Airflow 3, for comparison: producer task end -> consumer run queued."""
    run_id = e2e.run_id("native")
    e2e.stack.trigger("e2e_native_producer", run_id, e2e.new_partition())
    e2e.stack.wait_for_run("e2e_native_producer", run_id, ["success"], timeout_s=CASCADE_TIMEOUT_S)
    # ``or None``: an empty list is an answer to ``wait_for``; the consumer is queued a moment after the producer's
    # success, and on a loaded machine the first look came before it.
    runs = wait_for(lambda: consumer_runs(e2e, "e2e_native_consumer") or None, CASCADE_TIMEOUT_S,
                    "the native consumer run")  # fmt: skip
    task_end = task_runs(e2e.stack, "e2e_native_producer", run_id)["publish"].end_date
    assert task_end is not None
    return (max(datetime.fromisoformat(r["queued_at"]) for r in runs) - task_end).total_seconds()


def delivered_copies(e2e: E2E) -> list[dict[str, Any]]:
    """The orders events in Airflow 3 that the coordinator created (they carry its marker)."""
    status, body = e2e.stack.request("GET", "/api/v2/assets/events?limit=100&order_by=timestamp", timeout_s=60)
    assert status == 200, body
    return [e for e in body["asset_events"] if e["uri"] == "s3://e2e/af2-orders" and MARKER in (e["extra"] or {})]


def test_three_airflow2_asset_events_run_the_airflow3_asset_consumer_three_times_even_with_a_kill(
    e2e: E2E, setup: Setup
) -> None:
    """Three runs of af2_asset_producer (outlets=[Dataset]) in Airflow 2.11 give three runs of e2e_asset_consumer
    (schedule=[Asset]) in Airflow 3.3, one per event; the third is delivered by a second watcher after the first was
    killed (os._exit, like kill -9) with the delivery's intent recorded and nothing posted."""
    af2 = setup.af2
    assert consumer_runs(e2e) == [], "the consumer ran before any producer event"
    print(f"\nassets native 3.3 (for comparison): producer task end -> consumer run queued {native_lag(e2e):.2f} s")
    start_watcher(e2e, setup)
    for n in (1, 2):
        run_id = e2e.run_id(f"orders{n}")
        af2.trigger("af2_asset_producer", run_id, e2e.new_partition())
        af2.wait_for_run("af2_asset_producer", run_id, ["success"], timeout_s=CASCADE_TIMEOUT_S)
        wait_for(lambda n=n: len(consumer_runs(e2e)) == n, CASCADE_TIMEOUT_S, f"consumer run {n}")
        # A measurement for docs/benchmarks.md, never asserted: the producer TASK's end (Airflow 2 registers the
        # event there; the run is marked success a few seconds later) -> consumer run queued (Airflow 3), one host.
        queued = max(datetime.fromisoformat(r["queued_at"]) for r in consumer_runs(e2e))
        task_end = task_runs(af2, "af2_asset_producer", run_id)["publish"].end_date
        assert task_end is not None
        print(f"\nassets 2.11 -> 3.3: producer task {n} end -> consumer run queued "
              f"{(queued - task_end).total_seconds():.2f} s")  # fmt: skip

    e2e.stop_watchers()
    crashing = e2e.start_watcher(setup.deps, "--id", WATCHER_ID, "--leader-ttl", "3", name="airflow2-asset-crash",
                                 crash_at="asset-after-intent", COORDINATOR_INSTANCES_FILE=str(setup.instances),
                                 COORDINATOR_AIRFLOW_URL="", E2E_AF2_PASSWORD=af2.password)  # fmt: skip
    run_id = e2e.run_id("orders3")
    af2.trigger("af2_asset_producer", run_id, e2e.new_partition())
    af2.wait_for_run("af2_asset_producer", run_id, ["success"], timeout_s=CASCADE_TIMEOUT_S)
    assert crashing.wait(timeout=CASCADE_TIMEOUT_S) == CRASH_EXIT_CODE, "the watcher did not die at the crash point"
    assert len(delivered_copies(e2e)) == 2, "the killed watcher posted"
    # This route's deliveries only: the session's prefix may also hold the two-3.3 module's (source default).
    entries = [json.loads(v) for v in e2e.read_prefix(AssetKeys(e2e.prefix).deliveries).values()]
    pending = [r for r in entries if r["source"] == "af2"]
    assert sorted(r["status"] for r in pending) == ["done", "done", "pending"], pending

    start_watcher(e2e, setup)
    wait_for(lambda: len(consumer_runs(e2e)) == 3, CASCADE_TIMEOUT_S, "consumer run 3")
    time.sleep(ASSET_QUIET_S)
    runs = consumer_runs(e2e)
    assert len(runs) == 3 and {r["run_type"] for r in runs} == {"asset_triggered"}, runs
    copies = delivered_copies(e2e)
    assert len(copies) == 3 and len({c["extra"][MARKER] for c in copies}) == 3, copies
    # Airflow 2 events have no partition key, and none was made up on the way.
    assert {c["partition_key"] for c in copies} == {None}, copies


def test_any_of_a_2x_feed_and_a_3x_feed_runs_once_on_the_2x_one_and_reruns_only_for_what_it_consumed(
    e2e: E2E, setup: Setup
) -> None:
    """``any`` of af2/af2_feed (Airflow 2.11) and default/e2e_feed_a (Airflow 3.3): the 2.11 feed landing first runs
    default's e2e_either once, consuming it alone; default's feed landing later reruns nothing (not consumed); a
    clear of the 2.11 feed in Airflow 2 reruns e2e_either once, consuming both (semantics `condition-groups`)."""
    af2 = setup.af2
    graph = {
        "version": 1,
        "instances": {AF2: {"description": "Airflow 2.11 (REST v1, basic auth)"}},
        "dags": {"e2e_either": {"upstreams": [{"any": [f"{AF2}/af2_feed", "default/e2e_feed_a"]}]}},
    }
    deps = e2e.write_dependencies(graph, name="airflow2-any.json")
    watcher_id, log_name = f"{WATCHER_ID}-any", f"{WATCHER_LOG}-any"
    e2e.start_watcher(deps, "--id", watcher_id, name=log_name, COORDINATOR_INSTANCES_FILE=str(setup.instances),
                      COORDINATOR_AIRFLOW_URL="", E2E_AF2_PASSWORD=af2.password)  # fmt: skip
    e2e.wait_for_leader(deps, watcher_id)
    partition, feed = e2e.new_partition(), e2e.run_id("af2feed")
    af2.trigger("af2_feed", feed, partition)
    wait_for_state(e2e, "e2e_either", partition, "default", RunState.SUCCESS)
    first = e2e.read_ledger("e2e_either", partition)
    assert first is not None and set(first.inputs) == {f"{AF2}/af2_feed"}, first
    assert_started_after(e2e.only_run("e2e_either", partition), [e2e.only_run("af2_feed", partition, stack=af2)])

    # default's feed lands after the decision: not consumed, so nothing reruns.
    e2e.stack.trigger("e2e_feed_a", e2e.run_id("feed_a"), partition)
    wait_for_state(e2e, "e2e_feed_a", partition, "default", RunState.SUCCESS)
    wait_runs_settled(e2e, log_name, [("e2e_feed_a", partition)])
    unmoved = e2e.read_ledger("e2e_either", partition)
    assert unmoved is not None and (unmoved.trigger_count, unmoved.inputs) == (1, first.inputs), unmoved
    once = e2e.only_run("e2e_either", partition)
    assert task_tries(e2e.stack, "e2e_either", once.run_id) == {"work": 1}, once

    # The consumed 2.11 member reruns: e2e_either reruns once, on both.
    af2.clear("af2_feed", feed)
    wait_for_state(e2e, "e2e_either", partition, "default", RunState.SUCCESS, clear_number=1)
    wait_runs_settled(e2e, log_name, [("af2_feed", partition, AF2), ("e2e_either", partition)])
    again = e2e.read_ledger("e2e_either", partition)
    assert again is not None and again.trigger_count == 2, again
    assert set(again.inputs) == {f"{AF2}/af2_feed", "default/e2e_feed_a"}, again
    rerun = e2e.only_run("e2e_either", partition)
    assert rerun.state == "success" and task_tries(e2e.stack, "e2e_either", rerun.run_id) == {"work": 2}, rerun


def scheduled_run_of(stack: AirflowStack, dag_id: str, day: datetime, timeout_s: float = 90) -> str:
    """The run id of the run ``stack``'s scheduler made for ``day`` (its logical date), once it exists."""
    iso = day.isoformat()

    def made() -> str | None:
        return next((r.run_id for r in runs_between(stack, dag_id, iso, iso)), None)

    return wait_for(made, timeout_s, f"the scheduler's run of {dag_id} for {day:%Y-%m-%d}", interval_s=0.5)


def wait_task_state(stack: AirflowStack, dag_id: str, run_id: str, state: str, timeout_s: float = 90) -> None:
    def reached() -> bool | None:
        task = task_runs(stack, dag_id, run_id).get("wait_for_upstreams")
        return True if task is not None and task.state == state else None

    wait_for(reached, timeout_s, f"{dag_id} {run_id} wait {state}", interval_s=0.5)


def test_scheduled_dependents_wait_deferred_across_airflow_2_and_3_in_both_directions(e2e: E2E, setup: Setup) -> None:
    """Airflow 3.3's scheduled e2e_scheduled_daily waits (deferred in its triggerer) for af2_sched_up on Airflow
    2.11, and Airflow 2.11's scheduled af2_scheduled_daily (CronDataIntervalTimetable) waits, deferred in 2.11's
    triggerer, for e2e_scheduled_up2 on Airflow 3.3: each day's upstream success opens that day's wait once, the runs
    keep their own data intervals, and the other day keeps waiting."""
    af2 = setup.af2
    e2e.stack.wait_for_dags(["e2e_scheduled_up2", "e2e_scheduled_daily"])
    e2e.stack.unpause(["e2e_scheduled_up2"])
    af2.wait_for_dags(["af2_scheduled_daily"])
    graph = {
        "version": 1,
        "instances": {AF2: {"description": "Airflow 2.11 (REST v1, basic auth)"}},
        "dags": {
            "default/e2e_scheduled_daily": {"upstreams": "af2/af2_sched_up", "runs": "scheduled"},
            "af2/af2_scheduled_daily": {"upstreams": "default/e2e_scheduled_up2", "runs": "scheduled"},
        },
    }
    deps = e2e.write_dependencies(graph, name="airflow2-scheduled.json")
    e2e.start_watcher(deps, "--id", "e2e-af2-scheduled", name="e2e-af2-scheduled-watcher",
                      COORDINATOR_INSTANCES_FILE=str(setup.instances), COORDINATOR_AIRFLOW_URL="",
                      E2E_AF2_PASSWORD=af2.password)  # fmt: skip
    e2e.wait_for_leader(deps, "e2e-af2-scheduled")
    e2e.stack.unpause(["e2e_scheduled_daily"])
    af2.unpause(["af2_scheduled_daily"])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    p1 = canonical_partition(day1)
    sides = [(e2e.stack, "e2e_scheduled_daily"), (af2, "af2_scheduled_daily")]
    runs = {dag: [scheduled_run_of(stack, dag, day) for day in (day1, day2)] for stack, dag in sides}
    for stack, dag in sides:
        for run_id in runs[dag]:
            wait_task_state(stack, dag, run_id, "deferred")

    af2.trigger("af2_sched_up", e2e.run_id("af2_sched_up"), p1)  # 2.11 -> 3.3
    e2e.stack.trigger("e2e_scheduled_up2", e2e.run_id("sched_up2"), p1)  # 3.3 -> 2.11
    for stack, dag in sides:
        done = stack.wait_for_run(dag, runs[dag][0], ["success"], timeout_s=120)
        interval = (parse_time(done["data_interval_start"]), parse_time(done["data_interval_end"]))
        assert interval == (day1, day2), (dag, done)
        assert task_runs(stack, dag, runs[dag][0])["wait_for_upstreams"].try_number == 1, dag
        assert task_runs(stack, dag, runs[dag][1])["wait_for_upstreams"].state == "deferred", dag
        instance = "default" if stack is e2e.stack else AF2
        permit = json.loads(e2e.read_key(f"{e2e.prefix}/permits/{instance}/{dag}/{p1}") or b"{}")
        assert (permit["granted"], permit["generation"]) == (True, 1), (dag, permit)
