"""Two real Airflow instances with dependencies across them: the session's Airflow (instance ``default``, playing
team A) and a second one started for this module only (instance ``team_b``), both writing run states to the same etcd
prefix through their plugins. One watcher reaches both through an instances file (one password from a file, one from
an environment variable) and a dependencies file in the extended form.

The session Airflow keeps the instance name ``default`` because the other e2e modules (shorthand dependencies files,
``source == "airflow-plugin:default"``) rely on it; only the second Airflow carries a team name.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator

import pytest

from coordinator.core.model import RunState, run_id_for
from devtools.airflow_stack import AirflowStack
from tests.e2e.harness import E2E, REPO, assert_started_after

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
#: After the last run of a cascade, how long nothing more may happen (see test_cascades_e2e.py).
SETTLE_S = 2.0


@pytest.fixture(scope="module")
def team_b(airflow_e2e: E2E, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """A second Airflow (instance team_b) on the session's etcd and prefix, only for this module; stopped by PID."""
    base = tmp_path_factory.mktemp("team_b")
    dags = base / "dags"
    dags.mkdir()
    shutil.copy2(REPO / "dags" / "02_pipeline.py", dags)
    shutil.copy2(REPO / "dags" / "example_pipeline.py", dags)  # the DAGs' shared task body
    stack = AirflowStack(
        home=base / "airflow",
        dags_folder=dags,
        instance="team_b",
        etcd_endpoints=airflow_e2e.etcd_endpoint,
        prefix=airflow_e2e.prefix,
    )
    try:
        stack.start()
        stack.wait_for_dags(["02_pipeline"])
        stack.unpause(["02_pipeline"])
        print(f"\nteam_b airflow up in {stack.started_in_s:.1f} s at {stack.url}")
        yield stack
    finally:
        stack.stop()


def test_dependencies_across_two_airflow_instances_trigger_and_rerun_once(e2e: E2E, team_b: AirflowStack) -> None:
    """default/01 succeeding runs team_b/02 once, then default/e2e_dependent once; clearing 01 reruns each once."""
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
    deps = e2e.write_dependencies(GRAPH, name="multi-instance.json")
    e2e.start_watcher(
        deps,
        "--id",
        "e2e-multi",
        name="multi-instance-watcher",
        COORDINATOR_INSTANCES_FILE=str(instances),
        COORDINATOR_AIRFLOW_URL="",  # only the instances file says where the Airflows are
        E2E_TEAM_B_PASSWORD=team_b.password,
    )
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

    time.sleep(SETTLE_S)
    for dag_id, instance in [("02_pipeline", "team_b"), ("e2e_dependent", "default")]:
        record, _ = e2e.read_run(dag_id, partition, instance)
        assert record is not None and (record.state, record.clear_number) == (RunState.SUCCESS, 1), record
    # The session Airflow's own 02_pipeline is another DAG (default/02_pipeline): not in this graph, never run.
    assert e2e.runs("02_pipeline", partition) == []
