"""End-to-end fixtures: ONE real Airflow 3.3 (api-server, scheduler, dag-processor; LocalExecutor) per session, with
the coordinator plugin installed through its entry point, writing to the session's real etcd.

- ``airflow_e2e`` (session): the running stack plus helpers (:class:`E2E`). DAGs: the repository's ``dags/``
  (01..07 pipelines, 08_on_failure, 09_flaky) and ``tests/e2e/dags/`` (test-only DAGs, the edge-semantics ones of
  issue 16 included), all unpaused.
  Every run-state key lives under a prefix of its own (``/e2e-<hex>``); the stack's logs are under its home.
- ``postgres_server`` (session): ONE PostgreSQL (``devtools.postgres_server``); ``airflow_database(label)`` makes a
  fresh database on it for each Airflow stack, so the shared stack and the module stacks keep their metadata in
  PostgreSQL, as production Airflows do (SQLite once stalled the shared stack's scheduler); the Airflow 2.11 stack
  too (``airflow_database("af2", airflow="2.11")``). The SQLite path of ``make demo`` keeps one smoke test on a stack
  of its own (``test_sqlite_cascade_smoke_e2e.py``). The end of the run names each stack's database in one line
  (``tests/e2e/stacks_summary.py``: ``airflow stacks: airflow 3.3 shared -> postgresql db=... on 127.0.0.1:PORT; ...``).
- ``e2e``: the same object for one test; watchers it started are stopped when the test ends (even on failure).
  Before the test, a component of the stack that died (or a scheduler that stopped heartbeating) is restarted.
- Scenario tests (cascades) reuse it: ``write_dependencies`` makes a dependencies file for the test's own graph and
  ``start_watcher`` runs ``coordinator watch`` as a subprocess against this Airflow and etcd.
- Partitions: Airflow allows ONE run per (DAG, logical date), and the session shares one Airflow, so every test takes
  fresh partitions from ``new_partition()``.
- Watchers: every scenario adopts its graph before it makes anything happen (``E2E.wait_for_leader``): a DAG's
  definition only applies to upstream successes after its adoption. The single-instance scenarios share
  ``harness.SESSION_GRAPH`` so they never re-date each other's DAGs. Watchers share the session prefix, hence its
  leader key: one runs at a time.
- The README walkthrough (``test_readme_e2e.py``) runs first among these modules (``pytest_collection_modifyitems``):
  it starts an etcd and an Airflow of its own (from the released wheel), before this session's Airflow exists.
- ``team_b`` (session): a second Airflow 3.3 (instance ``team_b``) on the same etcd and prefix, for the modules with
  dependencies across two deployments (``test_multi_instance_e2e.py``, ``test_holds_e2e.py``). Their tests run last
  (``pytest_collection_modifyitems``), so the one ``team_b`` starts once for both and lives only while they run.
- Modules that need more start it themselves, for their own duration: a real Airflow 2.11 from its own venv
  (``test_airflow2_e2e.py``, started beside this session's Airflow when that module is the first to need it), an etcd
  and an Airflow that may be stopped (``test_etcd_outage_e2e.py``). At most two Airflows run at once.

Nothing here imports Airflow: the test process talks to it over REST only.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator

import pytest

from devtools.airflow_stack import AirflowStack
from devtools.etcd_server import EtcdServer
from devtools.postgres_server import PostgresServer
from tests.e2e import stacks_summary
from tests.e2e.harness import (
    ALL_DAGS,
    CONDITION_DAGS,
    E2E,
    LATE_B,
    PARTITION_DAGS,
    PLUGIN_ENV,
    REPO,
    SCHEDULED,
    SHARED_ASSET_DAGS,
    TEST_DAGS,
    WATCHER_ROLE,
    WATCHER_USER,
)

README_TEST = "test_readme_e2e.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README walkthrough runs first among the end-to-end tests: it is what a newcomer does on a fresh Airflow.
    It starts its own Airflow: run without workers, going first keeps it from running beside this session's; under
    ``make test`` it leads the worker of ``OWN_AIRFLOW_E2E_MODULES`` (tests/conftest.py), beside the shared stack.

    The tests that use ``team_b`` run last, in their modules' order: the second Airflow starts once, when the first of
    them begins, and stays up only until the run ends (as a fixture of each of the two modules, it took 36 s and 27 s
    to start on the shared stack's worker, the path that ends ``make test``)."""
    e2e = [i for i, item in enumerate(items) if "e2e" in item.path.parts]
    if not e2e:
        return
    first = e2e[0]
    readme = [item for item in items[first:] if item.path.name == README_TEST]
    rest = [item for item in items[first:] if item.path.name != README_TEST]
    last = [item for item in rest if "team_b" in getattr(item, "fixturenames", ())]
    items[first:] = readme + [item for item in rest if item not in last] + last


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """ONE PostgreSQL for the Airflow stacks of the session (per xdist worker that runs e2e tests; the scheduler in
    tests/conftest.py sends them to two); stopped by PID at the end, even on failure."""
    with PostgresServer() as server:
        print(
            f"\npostgres {server.version} for the e2e Airflow databases at 127.0.0.1:{server.port} (pid {server.pid})"
        )
        yield server


@pytest.fixture(scope="session")
def airflow_database(postgres_server: PostgresServer, pytestconfig: pytest.Config) -> Callable[..., str]:
    """Makes a fresh database on the session's PostgreSQL for one Airflow stack and returns its URL:
    ``airflow_database("team_b")`` (``airflow="2.11"`` for an Airflow 2 stack). Each stack migrates its own, so
    stacks never share metadata; the end of the run names it (``airflow 3.3 team_b -> postgresql db=...``)."""

    def create(label: str, airflow: str = "3.3") -> str:
        url = postgres_server.create_database(f"airflow_{label}_{uuid.uuid4().hex[:6]}")
        stacks_summary.record(pytestconfig, f"airflow {airflow} {label}", url)
        return url

    return create


@pytest.fixture(scope="session")
def e2e_prefix() -> str:
    """The session's run-state prefix (``/e2e-<hex>``), its own fixture so that a stack on the same prefix can start
    before the session's Airflow is up (``test_airflow2_e2e.py``'s Airflow 2.11 starts beside it)."""
    return f"/e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def airflow_e2e(
    etcd_server: EtcdServer,
    e2e_prefix: str,
    airflow_database: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[E2E]:
    """One Airflow for the session, its DAGs parsed and unpaused; stopped by PID at the end, even on failure."""
    base = tmp_path_factory.mktemp("e2e")
    dags = base / "dags"
    dags.mkdir()
    tmp = base / "tmp"  # the stack's temporary files (the plugin's cache of named tasks) go with the test's files
    tmp.mkdir()
    for source in [*sorted((REPO / "dags").glob("*.py")), *sorted(TEST_DAGS.glob("*.py"))]:
        shutil.copy2(source, dags / source.name)
    stack = AirflowStack(
        home=base / "airflow",
        dags_folder=dags,
        etcd_endpoints=etcd_server.endpoint,
        prefix=e2e_prefix,
        # Unpausing 01_pipeline must not start a scheduled run nobody asked for. Task processes re-read the named
        # tasks after 1 s instead of 30 (PLUGIN_ENV); the plugin's cache of them goes with the test's files.
        extra_env={"PIPELINE_01_SCHEDULE": "none", **PLUGIN_ENV, "TMPDIR": str(tmp)},
        users={WATCHER_USER: WATCHER_ROLE},
        database_url=airflow_database("shared"),
        triggerer=True,  # a scheduled dependent's wait is deferred (test_airflow2_e2e.py's 2.11 -> 3.3 case)
    )
    try:
        stack.start()
        stack.wait_for_dags(ALL_DAGS)
        stack.unpause(ALL_DAGS)
        print(
            f"\nairflow e2e stack up in {stack.started_in_s:.1f} s at {stack.url} (home {stack.home}, "
            f"database {stack.database})"
        )
        env = E2E(stack=stack, etcd_endpoint=etcd_server.endpoint, prefix=stack.prefix, work_dir=base)
        yield env
        env.stop_watchers()
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def team_b(
    airflow_e2e: E2E, airflow_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowStack]:
    """A second Airflow (instance team_b) on the session's etcd and prefix, with the DAGs of the two-deployment modules;
    stopped by PID at the end, even on failure. Every test takes fresh partitions, so the runs one module leaves in it
    are never the next one's."""
    airflow_e2e.revive_if_needed()
    base = tmp_path_factory.mktemp("team_b")
    dags = base / "dags"
    dags.mkdir()
    shutil.copy2(REPO / "dags" / "02_pipeline.py", dags)
    shutil.copy2(REPO / "dags" / "example_pipeline.py", dags)  # the DAGs' shared task body
    shutil.copy2(TEST_DAGS / "e2e_late.py", dags)  # the expected-by scenario's DAGs
    shutil.copy2(TEST_DAGS / "e2e_shared_assets.py", dags)  # the shared assets' consumers (their producers idle)
    shutil.copy2(TEST_DAGS / "e2e_conditions.py", dags)  # the condition groups' feeds, regions and rollups
    shutil.copy2(TEST_DAGS / "e2e_partitions.py", dags)  # Airflow 3's partitioned and asset-triggered runs
    shutil.copy2(TEST_DAGS / "e2e_scheduled.py", dags)  # scheduled dependents (paused until their test)
    stack = AirflowStack(
        home=base / "airflow",
        dags_folder=dags,
        instance="team_b",
        etcd_endpoints=airflow_e2e.etcd_endpoint,
        prefix=airflow_e2e.prefix,
        database_url=airflow_database("team_b"),
        triggerer=True,  # the scheduled dependents' waits are deferred
    )
    try:
        stack.start()
        stack.wait_for_dags(["02_pipeline", *LATE_B, *SHARED_ASSET_DAGS, *CONDITION_DAGS, *PARTITION_DAGS, *SCHEDULED])
        stack.unpause(["02_pipeline", *LATE_B, *SHARED_ASSET_DAGS, *CONDITION_DAGS, *PARTITION_DAGS])
        print(f"\nteam_b airflow up in {stack.started_in_s:.1f} s at {stack.url}, database {stack.database}")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def e2e(airflow_e2e: E2E) -> Iterator[E2E]:
    """The session's Airflow for one test, revived first if a component died; watchers started by the test are
    stopped afterwards."""
    airflow_e2e.revive_if_needed()
    try:
        yield airflow_e2e
    finally:
        airflow_e2e.stop_watchers()
