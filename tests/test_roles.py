"""The etcd role per writer (docs/howto/etcd-roles.md): the documented commands run as written against a
real etcd with authentication on, and every component works under exactly its role while team A's plugin is refused
on team B's keys and on the watcher's, and the OpenLineage receiver writes its own instance only (real etcd; the fake
Airflow at the HTTP boundary; the OpenLineage project's own client and HTTP transport)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent
from openlineage.client.event_v2 import RunState as OLRunState
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport
from pydantic import SecretStr

from coordinator.airflow_plugin.records import WriteOutcome, WriterConfig, run_write_from_dag_run, write_one
from coordinator.core.assets import MARKER, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.lineage.facts import LineageRun
from coordinator.core.model import KeyLayout, NodeId, RunState, parse_run_record
from coordinator.core.permit import Permit, parse_permit, permit_key
from coordinator.errors import StoreError
from coordinator.etcd import EtcdStore
from coordinator.lineage.tokens import hash_token
from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import EtcdSettings, Settings, parse_endpoints
from coordinator.writers.roles import LineageReceiver, OutsideWriter, commands, roles
from devtools.etcd_server import EtcdServer
from devtools.procs import free_port, stop_child
from tests.support.cli_inproc import run_cli as run_inproc
from tests.support.fake_airflow import FakeAirflow
from tests.test_doctor import checks_of
from tests.test_doctor import run_cli as run_process
from tests.test_plugin_writer import FakeRun

ROOT = Path(__file__).resolve().parents[1]
ROLES_PAGE = ROOT / "docs" / "howto" / "etcd-roles.md"
PREFIX = "/coordinator"  # the documented block's prefix
ROOT_PASSWORD = "root-pw-for-tests"  # a test server's; not a real secret
AIRFLOW_PASSWORD = "right-password"  # the fake's
PARTITION = "2026-01-01T00:00:00Z"
GRAPH = {
    "version": 1,
    "instances": {"team_a": {}, "team_b": {}},
    "dags": {"team_a/extract": {}, "team_b/load": {"upstreams": ["team_a/extract"]}},
}
#: GRAPH with a dbt model as a node of the instance "analytics", written by the OpenLineage receiver.
LINEAGE_GRAPH = {
    "version": 1,
    "instances": {"team_a": {}, "team_b": {}, "analytics": {}},
    "dags": {
        "team_a/extract": {},
        "team_b/load": {"upstreams": ["team_a/extract"]},
        "analytics/orders": {"partitions": {"cron": "0 0 * * *"}},
    },
    "openlineage": [{"namespace": "dbt_prod", "job": "orders", "instance": "analytics"}],
}


def run_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``coordinator <args>`` with ``env``, in the test process (tests/support/cli_inproc.py): each component still
    logs in to etcd as its own user (the environment is the call's); a process per call cost about 0.6 s of CPU.
    ``check-plugin`` (Airflow's plugin machinery), ``watch`` and ``lineage serve`` still run as processes."""
    return run_inproc(args, env=env)


def documented_block() -> str:
    """The bash block after the ``<!-- roles-matrix -->`` marker in docs/howto/etcd-roles.md."""
    text = ROLES_PAGE.read_text()
    found = re.search(r"<!-- roles-matrix -->\n```bash\n(.*?)```", text, re.S)
    assert found, "docs/howto/etcd-roles.md lost its roles-matrix block"
    return found.group(1)


def test_the_documented_commands_are_what_coordinator_roles_prints() -> None:
    """The block in docs/howto/etcd-roles.md is exactly `coordinator roles --instance team_a --instance team_b --writer
    spark=team_b/ingest_* --lineage analytics`, and no line of it carries a password."""
    printed = commands(roles(KeyLayout(PREFIX), ["team_a", "team_b"], [OutsideWriter.parse("spark=team_b/ingest_*")],
                             [LineageReceiver.parse("analytics")]))  # fmt: skip
    assert documented_block().splitlines() == printed
    assert not any("password" in line for line in printed)
    done = run_command("roles", "--instance", "team_a", "--instance", "team_b", "--writer", "spark=team_b/ingest_*",
                   "--lineage", "analytics", "--prefix", PREFIX, env=dict(os.environ))  # fmt: skip
    assert done.returncode == 0 and done.stdout.splitlines() == printed, done.stderr


def test_without_instances_the_receiver_role_covers_every_mapped_instance(tmp_path: Path) -> None:
    """Without --instance, `coordinator roles` reads dependencies.json: one receiver role, `coordinator-lineage`,
    for every instance its "openlineage" section names (what `lineage serve` without --instance writes), and with
    --lineage the roles named there instead."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(LINEAGE_GRAPH))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    done = run_command("roles", "--deps", str(deps), "--prefix", PREFIX, env=env)
    assert done.returncode == 0, done.stderr
    lineage = [line for line in done.stdout.splitlines() if "lineage" in line and not line.startswith("#")]
    assert lineage[:4] == [
        "etcdctl role add coordinator-lineage",
        "etcdctl role grant-permission coordinator-lineage readwrite --prefix=true /coordinator/runs/analytics/",
        "etcdctl role grant-permission coordinator-lineage readwrite --prefix=true /coordinator/lineage/analytics/",
        "etcdctl role grant-permission coordinator-lineage read /coordinator/leader",
    ]
    named = run_command("roles", "--deps", str(deps), "--prefix", PREFIX, "--lineage", "dbt=analytics,spark", env=env)
    assert named.returncode == 0, named.stderr
    assert "etcdctl role add coordinator-lineage-dbt" in named.stdout.splitlines()
    assert "etcdctl role add coordinator-lineage\n" not in named.stdout + "\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--instance", ".."], "'..' is not a valid instance name", id="dot-dot-instance"),
        pytest.param(["--instance", "a", "--writer", "spark"], "expected NAME=INSTANCE/DAG", id="writer-no-target"),
        pytest.param(["--instance", "a", "--writer", "x=a/b c"], "dag 'b c' is not a valid name", id="writer-space"),
        pytest.param(["--instance", "a", "--lineage", ".."], "name '..' is not a valid name", id="lineage-dot-dot"),
        pytest.param(["--instance", "a", "--lineage", "dbt=a,,b"], "instance '' is not a valid", id="lineage-empty"),
        pytest.param(
            ["--instance", "a", "--lineage", "a", "--lineage", "a=a,b"], "two receivers named 'a'", id="lineage-twice"
        ),
    ],
)
def test_roles_refuses_bad_names(args: list[str], message: str) -> None:
    """Bad instance or writer names exit 2 naming the value, before printing anything."""
    done = run_command("roles", *args, env=dict(os.environ))
    assert done.returncode == 2 and message in done.stderr and not done.stdout, done.stdout + done.stderr


@dataclass(frozen=True)
class AuthEtcd:
    server: EtcdServer
    passwords: dict[str, str]

    def settings(self, user: str) -> EtcdSettings:
        return EtcdSettings(endpoints=parse_endpoints(self.server.endpoint), username=user,
                            password=SecretStr(self.passwords[user]), timeout_s=3.0)  # fmt: skip

    def env(self, user: str, airflow: FakeAirflow, deps: Path, instances: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
        env.update(COORDINATOR_ETCD_ENDPOINTS=self.server.endpoint, COORDINATOR_PREFIX=PREFIX,
                   COORDINATOR_DEPS=str(deps), COORDINATOR_INSTANCES_FILE=str(instances),
                   AF_PASSWORD=AIRFLOW_PASSWORD, COORDINATOR_ETCD_USERNAME=user,
                   COORDINATOR_ETCD_PASSWORD=self.passwords[user], **extra)  # fmt: skip
        return env


@pytest.fixture
def auth_etcd(private_etcd: EtcdServer, tmp_path: Path) -> AuthEtcd:
    """A private etcd with a root user, the documented block run AS WRITTEN by bash, and authentication on."""
    etcdctl = private_etcd.binary.with_name("etcdctl")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    printed = documented_block()
    users = re.findall(r"^etcdctl user add (\S+) ", printed, re.M)
    passwords = {user: f"pw-{i}-{user}" for i, user in enumerate(users)}
    for user, password in passwords.items():
        (secrets / user).write_text(password + "\n")
    env = {**os.environ, "PATH": f"{etcdctl.parent}:{os.environ['PATH']}", "SECRETS_DIR": str(secrets),
           "ETCDCTL_ENDPOINTS": private_etcd.endpoint}  # fmt: skip
    env.pop("ETCDCTL_USER", None)
    setup = f"""etcdctl role add root
etcdctl user add root --interactive=false <<< '{ROOT_PASSWORD}'
etcdctl user grant-role root root
"""
    for script in (setup, printed):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    subprocess.run([str(etcdctl), f"--endpoints={private_etcd.endpoint}", "auth", "enable"], check=True,
                   capture_output=True, timeout=30)  # fmt: skip
    passwords["root"] = ROOT_PASSWORD
    return AuthEtcd(private_etcd, passwords)


def writer_config(auth: AuthEtcd, instance: str) -> WriterConfig:
    return WriterConfig(etcd=auth.settings(f"coordinator-plugin-{instance}"), keys=KeyLayout(PREFIX),
                        instance=instance)  # fmt: skip


def extract_success(config: WriterConfig, day: int = 1) -> Any:
    date = datetime(2026, 1, day, tzinfo=UTC)
    run = FakeRun(dag_id="extract", run_id=f"scheduled__{date:%Y-%m-%d}", logical_date=date)
    fact, _ = run_write_from_dag_run(run, RunState.SUCCESS, config, datetime.now(UTC))
    assert fact is not None
    return fact


def test_team_a_plugin_is_refused_on_team_b_keys_and_on_the_watchers_keys(auth_etcd: AuthEtcd, arun: Any) -> None:
    """Team A's plugin user writes its own run state through the plugin's writer, and etcd refuses it team B's run
    and task keys, the ledger, the graph, the plan checkpoint, the retention floor, the leader key and the deadlines
    (nothing lands); the
    outside writer of team B's ingest_* family writes those runs but not team B's load."""
    keys = KeyLayout(PREFIX)
    own = extract_success(writer_config(auth_etcd, "team_a"))
    forged = replace(own, key=keys.run_key(NodeId("team_b", "load"), PARTITION))
    forbidden = [
        keys.task_key(NodeId("team_b", "load"), "t", PARTITION),
        keys.trigger_key(NodeId("team_b", "load"), PARTITION),
        keys.config_key("graph"),
        keys.config_key("checkpoint"),
        keys.config_key("retention"),
        keys.leader,
        keys.deadline_key(NodeId("team_b", "load"), PARTITION),
    ]

    async def go() -> tuple[WriteOutcome, list[str], list[str]]:
        refused: list[str] = []
        async with await EtcdStore.connect(auth_etcd.settings("coordinator-plugin-team_a")) as store:
            outcome, _ = await write_one(store, own, 2.0)
            try:
                await write_one(store, forged, 2.0)
            except StoreError as exc:
                assert "PERMISSION_DENIED" in str(exc) or "permission denied" in str(exc), exc
                refused.append(forged.key)
            for key in forbidden:
                try:
                    await store.put(key, b'{"state":"success","run_id":"evil"}')
                except StoreError as exc:
                    assert "permission denied" in str(exc).lower(), exc
                    refused.append(key)
            assert await store.get(keys.config_key("graph")) is None  # reading the graph is allowed
        # The outside writer of the family team_b/ingest_*: its DAGs only, not team_b's load.
        family = keys.run_key(NodeId("team_b", "ingest_orders"), PARTITION)
        async with await EtcdStore.connect(auth_etcd.settings("coordinator-writer-spark")) as spark:
            await spark.put(family, b'{"state":"success","run_id":"spark-1"}')
            try:
                await spark.put(forged.key, b'{"state":"success","run_id":"evil"}')
            except StoreError as exc:
                assert "permission denied" in str(exc).lower(), exc
                refused.append(f"spark:{forged.key}")
        async with await EtcdStore.connect(auth_etcd.settings("root")) as root:
            stored = [kv.key for kv in (await root.snapshot(keys.root)).kvs]
        return outcome, refused, stored

    outcome, refused, stored = arun(go())
    assert outcome is WriteOutcome.WRITTEN
    assert refused == [forged.key, *forbidden, f"spark:{forged.key}"]
    assert stored == sorted([own.key, keys.run_key(NodeId("team_b", "ingest_orders"), PARTITION)])


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    fake = FakeAirflow(["extract", "load"], username="coordinator", password=AIRFLOW_PASSWORD).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.mark.airflow
def test_each_component_works_under_exactly_its_role(
    auth_etcd: AuthEtcd, airflow: FakeAirflow, tmp_path: Path, arun: Any
) -> None:
    """With auth on: the watcher (reconcile) adopts the graph and triggers team B's run after team A's
    plugin recorded a success; the page draws the graph; doctor passes its etcd checks read-only; prune records a
    floor; the plugin's check-plugin writes and deletes its test record; doctor under a plugin user says what it could
    not check; prune under doctor's read-only user is refused. Slow by design: seven CLI runs (check-plugin in a
    process of its own), each a component logging in to etcd as its own user."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(GRAPH))
    instances = tmp_path / "instances.json"
    entry = {"url": airflow.url, "username": "coordinator", "password_env": "AF_PASSWORD"}
    instances.write_text(json.dumps({"team_a": entry, "team_b": entry}))

    def cli(user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_command(*args, env=auth_etcd.env(user, airflow, deps, instances))

    adopt = cli("coordinator-watcher", "reconcile")
    assert adopt.returncode == 0, adopt.stdout + adopt.stderr
    config = writer_config(auth_etcd, "team_a")

    async def record() -> None:
        async with await EtcdStore.connect(config.etcd) as store:
            await write_one(store, extract_success(config), 2.0)

    arun(record())
    done = cli("coordinator-watcher", "reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r.run_id for r in airflow.runs("load")] == [f"coordinator__{PARTITION}"]

    settings = Settings(prefix=PREFIX, deps=deps)
    page = arun(dependencies_page(PARTITION, None, instance="team_a", settings=settings,
                                  etcd=auth_etcd.settings("coordinator-page")))  # fmt: skip
    assert page.status == 200 and "load" in page.html and "etcd cannot be read" not in page.html

    doctor = checks_of(cli("coordinator-doctor", "doctor", "--format", "json"))
    assert doctor["etcd"]["status"] == "ok" and doctor["leader"]["status"] == "ok", doctor
    perms = doctor["etcd permissions"]
    assert perms["status"] == "warn" and "but not write" in perms["summary"], perms

    pruned = cli("coordinator-prune", "prune", "--before", "2025-01-01")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    refused = cli("coordinator-doctor", "prune", "--before", "2025-06-01")
    assert refused.returncode == 1 and "permission denied" in refused.stderr.lower(), refused.stderr

    env = auth_etcd.env("coordinator-plugin-team_a", airflow, deps, instances, COORDINATOR_INSTANCE="team_a",
                        TMPDIR=str(tmp_path))  # the plugin's task-name cache: not into the host's /tmp  # fmt: skip
    checked = run_process("check-plugin", env=env)  # the plugin's own check writes and deletes under runs/team_a/
    assert checked.returncode == 0 and "plugin OK: wrote /coordinator/runs/team_a/" in checked.stdout, (
        checked.stdout + checked.stderr
    )

    partial = checks_of(cli("coordinator-plugin-team_a", "doctor", "--format", "json"))
    assert partial["etcd permissions"]["status"] == "warn", partial["etcd permissions"]
    assert f"{PREFIX}/triggers/" in " ".join(partial["etcd permissions"]["details"])
    assert partial["leader"]["status"] == "skip" and "may not read" in partial["leader"]["summary"], partial
    assert partial["intents"]["status"] == "skip", partial["intents"]


def test_a_permit_is_granted_under_the_watcher_role_and_pruned_under_the_prune_role(
    auth_etcd: AuthEtcd, airflow: FakeAirflow, tmp_path: Path, arun: Any
) -> None:
    """With auth on and team B's load a scheduled dependent: the watcher's user grants its permit (written with the
    ledger entry, in one transaction) and calls no Airflow; the prune user deletes the permit with its partition."""
    deps = tmp_path / "dependencies.json"
    graph = json.loads(json.dumps(GRAPH))
    graph["dags"]["team_b/load"]["runs"] = "scheduled"
    deps.write_text(json.dumps(graph))
    instances = tmp_path / "instances.json"
    entry = {"url": airflow.url, "username": "coordinator", "password_env": "AF_PASSWORD"}
    instances.write_text(json.dumps({"team_a": entry, "team_b": entry}))

    def cli(user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_command(*args, env=auth_etcd.env(user, airflow, deps, instances))

    assert (adopt := cli("coordinator-watcher", "reconcile")).returncode == 0, adopt.stdout + adopt.stderr
    config = writer_config(auth_etcd, "team_a")
    key = permit_key(KeyLayout(PREFIX), NodeId("team_b", "load"), PARTITION)

    async def record() -> None:
        async with await EtcdStore.connect(config.etcd) as store:
            await write_one(store, extract_success(config), 2.0)

    async def permit() -> Permit | None:
        async with await EtcdStore.connect(auth_etcd.settings("root")) as store:
            found = await store.get(key)
            return None if found is None else parse_permit(found.value)

    arun(record())
    done = cli("coordinator-watcher", "reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    granted = arun(permit())
    assert granted is not None and granted.granted and granted.generation == 1, done.stdout + done.stderr
    assert airflow.runs("load") == []
    pruned = cli("coordinator-prune", "prune", "--before", "2026-02-01")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert arun(permit()) is None


@pytest.mark.parametrize("page", ["astro.md", "composer.md", "mwaa.md"])
def test_the_managed_pages_name_the_same_plugin_role(page: str) -> None:
    """Each managed-service page gives the plugin the per-instance role of docs/howto/etcd-roles.md, not "write to
    runs/, nothing more" (which etcd refuses: the writer reads before its compare-and-swap)."""
    text = " ".join((ROOT / "docs" / "managed" / page).read_text().split())
    assert "coordinator-plugin-{instance}" in text and "coordinator roles" in text
    assert "`readwrite` of its own `/coordinator/runs/{instance}/` and `/coordinator/tasks/{instance}/`" in text
    assert "nothing more" not in text


def test_the_budget_holds_and_releases_under_the_watcher_and_backfill_roles(
    auth_etcd: AuthEtcd, airflow: FakeAirflow, tmp_path: Path, arun: Any
) -> None:
    """With auth on and a budget of 1: team A's plugin records two days of extract; the watcher's pass starts one
    load and records the hold (its role may write config/budget/); `coordinator release team_b` under the backfill
    role lets the next pass start the other, once."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(GRAPH))
    instances = tmp_path / "instances.json"
    entry = {"url": airflow.url, "username": "coordinator", "password_env": "AF_PASSWORD"}
    instances.write_text(json.dumps({"team_a": entry, "team_b": entry}))

    def cli(user: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = auth_etcd.env(user, airflow, deps, instances, COORDINATOR_TRIGGER_BUDGET="1")
        done = run_command(*args, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    cli("coordinator-watcher", "reconcile")
    config = writer_config(auth_etcd, "team_a")

    async def record() -> None:
        async with await EtcdStore.connect(config.etcd) as store:
            for day in (1, 2):
                await write_one(store, extract_success(config, day), 2.0)

    arun(record())
    cli("coordinator-watcher", "reconcile")
    assert len(airflow.runs("load")) == 1
    status = json.loads(cli("coordinator-doctor", "status", "--format", "json").stdout)
    assert [(b["instance"], b["held"], b["held_count"]) for b in status["budget"]] == [("team_b", True, 1)]
    cli("coordinator-watcher", "reconcile")
    assert len(airflow.runs("load")) == 1, "a held run started without a release"
    released = cli("coordinator-backfill", "release", "team_b")
    assert "released team_b" in released.stdout
    cli("coordinator-watcher", "reconcile")
    cli("coordinator-watcher", "reconcile")
    assert sorted(r.run_id for r in airflow.runs("load")) == [
        "coordinator__2026-01-01T00:00:00Z",
        "coordinator__2026-01-02T00:00:00Z",
    ]


async def marks(auth: AuthEtcd) -> list[str]:
    """The first-listing marks the watcher stored (read as root)."""
    async with await EtcdStore.connect(auth.settings("root")) as store:
        return [kv.key for kv in (await store.snapshot(AssetKeys(PREFIX).marks)).kvs]


async def checkpoint(auth: AuthEtcd) -> bytes | None:
    """The plan checkpoint the leading watcher recorded (read as root; semantics rule 19)."""
    async with await EtcdStore.connect(auth.settings("root")) as store:
        found = await store.get(KeyLayout(PREFIX).config_key("checkpoint"))
        return None if found is None else found.value


def test_assets_cross_under_the_watcher_plugin_and_backfill_roles(
    auth_etcd: AuthEtcd, airflow: FakeAirflow, tmp_path: Path, arun: Any
) -> None:
    """With auth on: team A's plugin writes its own asset hint but is refused team B's hint, the asset facts and the
    delivery ledger; a `coordinator watch` under the watcher role records team A's event and delivers it to team B
    once and records its plan checkpoint; `skip-event` works under the backfill role and is refused under doctor's
    read-only one."""
    uri = "s3://lake/orders"
    keys = AssetKeys(PREFIX)
    airflow.add_asset(uri, name="orders")
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({**GRAPH, "assets": [{"asset": uri, "from": "team_a", "to": ["team_b"]}]}))
    instances = tmp_path / "instances.json"
    entry = {"url": airflow.url, "username": "coordinator", "password_env": "AF_PASSWORD"}
    instances.write_text(json.dumps({"team_a": entry, "team_b": entry}))  # one fake Airflow plays both

    async def as_plugin() -> list[str]:
        refused: list[str] = []
        async with await EtcdStore.connect(auth_etcd.settings("coordinator-plugin-team_a")) as store:
            await store.put(keys.change_key("team_a"), b'{"uri": "s3://lake/orders"}')
            for key in (keys.change_key("team_b"), keys.event_key("team_a", uri, 99),
                        keys.delivery_key("team_b", "team_a", uri, 99)):  # fmt: skip
                try:
                    await store.put(key, b"{}")
                except StoreError as exc:
                    assert "permission denied" in str(exc).lower(), exc
                    refused.append(key)
        return refused

    assert len(arun(as_plugin())) == 3, "team A's plugin wrote another instance's hint, a fact or a delivery"
    env = auth_etcd.env("coordinator-watcher", airflow, deps, instances, COORDINATOR_ASSET_INTERVAL_S="0.2",
                        COORDINATOR_HTTP="off", COORDINATOR_WATCHER_ID="roles",
                        COORDINATOR_CHECKPOINT_INTERVAL_S="0.2")  # fmt: skip
    log = tmp_path / "watcher.log"
    with log.open("wb") as out:
        watcher = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "watch"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # An event before the first listing's mark is history, not replayed (COORDINATOR_ASSET_LOOKBACK_S=0).
        while time.monotonic() < deadline and "asset_marks" not in str(arun(marks(auth_etcd))):
            time.sleep(0.2)
        event_id = airflow.emit_asset_event(uri)
        copies: list[Any] = []
        while time.monotonic() < deadline and not copies and watcher.poll() is None:
            copies = [e for e in airflow.asset_events(uri) if MARKER in e["extra"]]
            time.sleep(0.2)
        assert [c["extra"][MARKER] for c in copies] == [f"team_a:{event_id}"], log.read_text()
        while time.monotonic() < deadline and arun(checkpoint(auth_etcd)) is None:  # the leader's plan checkpoint
            time.sleep(0.2)
        assert arun(checkpoint(auth_etcd)) is not None, log.read_text()
    finally:
        stop_child(watcher, timeout_s=30.0, what="coordinator watch")
    assert "permission denied" not in log.read_text().lower(), log.read_text()

    pending = DeliveryRecord(status=DeliveryStatus.ERROR, source="team_a", event_id=99, uri=uri,
                             requested_at=datetime.now(UTC), last_error="422")  # fmt: skip

    async def as_root() -> None:
        async with await EtcdStore.connect(auth_etcd.settings("root")) as store:
            await store.put(keys.delivery_key("team_b", "team_a", uri, 99), pending.model_dump_json().encode())

    arun(as_root())
    args = ("skip-event", uri, "99", "--from", "team_a", "--to", "team_b")
    refused = run_command(*args, env=auth_etcd.env("coordinator-doctor", airflow, deps, instances))
    assert refused.returncode == 1 and "permission denied" in refused.stderr.lower(), refused.stderr
    skipped = run_command(*args, env=auth_etcd.env("coordinator-backfill", airflow, deps, instances))
    assert skipped.returncode == 0 and "skip requested" in skipped.stdout, skipped.stdout + skipped.stderr


def test_the_page_reads_as_its_own_user_while_the_plugin_user_is_refused_the_ledger(
    auth_etcd: AuthEtcd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arun: Any
) -> None:
    """One credential per component in one api-server: with the plugin's user in COORDINATOR_ETCD_* and the page's in
    COORDINATOR_PAGE_ETCD_*, the plugin user is refused the ledger and team B's run states, the page resolves to its
    own user and draws the graph; without the page's options the page falls back to the plugin's user and says that
    etcd cannot be read."""
    from coordinator.airflow_plugin.config import local_config
    from coordinator.airflow_plugin.page_credential import PageResolver, read_options

    keys = KeyLayout(PREFIX)
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(GRAPH))
    page_password = tmp_path / "page-password"
    page_password.write_text(auth_etcd.passwords["coordinator-page"] + "\n")
    for name in [k for k in os.environ if k.startswith("COORDINATOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COORDINATOR_ETCD_ENDPOINTS", auth_etcd.server.endpoint)
    monkeypatch.setenv("COORDINATOR_PREFIX", PREFIX)
    monkeypatch.setenv("COORDINATOR_DEPS", str(deps))
    monkeypatch.setenv("COORDINATOR_INSTANCE", "team_a")
    monkeypatch.setenv("COORDINATOR_ETCD_USERNAME", "coordinator-plugin-team_a")
    monkeypatch.setenv("COORDINATOR_ETCD_PASSWORD", auth_etcd.passwords["coordinator-plugin-team_a"])

    def page_with(resolver: PageResolver) -> Any:
        async def go() -> Any:
            etcd = await resolver.etcd()
            page = await dependencies_page(PARTITION, None, instance="team_a", settings=resolver.config.settings,
                                           etcd=etcd)  # fmt: skip
            return etcd.username, page

        return arun(go())

    async def plugin_reads() -> list[str]:
        refused = []
        async with await EtcdStore.connect(auth_etcd.settings("coordinator-plugin-team_a")) as store:
            for key in (keys.trigger_key(NodeId("team_b", "load"), PARTITION),
                        keys.run_key(NodeId("team_b", "load"), PARTITION)):  # fmt: skip
                try:
                    await store.get(key)
                except StoreError as exc:
                    assert "permission denied" in str(exc).lower(), exc
                    refused.append(key)
        return refused

    assert len(arun(plugin_reads())) == 2

    shared_user, shared = page_with(PageResolver(local_config(), read_options(), lambda _conn_id: None))
    assert shared_user == "coordinator-plugin-team_a"
    assert "etcd cannot be read" in shared.html, shared.html[:500]

    monkeypatch.setenv("COORDINATOR_PAGE_ETCD_USERNAME", "coordinator-page")
    monkeypatch.setenv("COORDINATOR_PAGE_ETCD_PASSWORD_FILE", str(page_password))
    own_user, own = page_with(PageResolver(local_config(), read_options(), lambda _conn_id: None))
    assert own_user == "coordinator-page"
    assert own.status == 200 and "load" in own.html and "etcd cannot be read" not in own.html


def test_the_lineage_receiver_writes_its_instance_only_under_its_role(
    auth_etcd: AuthEtcd, tmp_path: Path, arun: Any
) -> None:
    """With auth on: `coordinator lineage serve --instance analytics` under the documented
    coordinator-lineage-analytics user is ready (its probe reads the leader key), and an OpenLineage client's START
    and COMPLETE become the node's run state and the run's record; the same user is refused every other instance's
    run keys (read and write), task keys, the ledger, the graph, the leader key (write) and other instances'
    records."""
    user = "coordinator-lineage-analytics"
    keys = KeyLayout(PREFIX)
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(LINEAGE_GRAPH))
    token = "dbt-token-for-tests"  # a test receiver's; not a real secret
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "dbt", "sha256": hash_token(token), "namespaces": ["dbt_*"]}]}))
    port = free_port()
    http_port = free_port(exclude=[port])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "OPENLINEAGE"))}
    env.update(COORDINATOR_ETCD_ENDPOINTS=auth_etcd.server.endpoint, COORDINATOR_PREFIX=PREFIX,
               COORDINATOR_DEPS=str(deps), COORDINATOR_ETCD_USERNAME=user,
               COORDINATOR_ETCD_PASSWORD=auth_etcd.passwords[user])  # fmt: skip
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        receiver = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "lineage", "serve", "--instance", "analytics", "--tokens",
             str(tokens), "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http_port}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    run_id = str(uuid.uuid4())
    try:
        deadline = time.monotonic() + 30
        ready = 0
        while time.monotonic() < deadline and ready != 200 and receiver.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.1)
            else:
                time.sleep(0.1)
        assert ready == 200, log.read_text()
        config = HttpConfig(url=f"http://127.0.0.1:{port}", auth=ApiKeyTokenProvider({"apiKey": token}))
        client = OpenLineageClient(transport=HttpTransport(config))
        for kind, hour in ((OLRunState.START, 2), (OLRunState.COMPLETE, 3)):
            client.emit(
                RunEvent(
                    eventType=kind,
                    eventTime=f"2026-01-02T0{hour}:00:00+00:00",
                    run=Run(runId=run_id),
                    job=Job(namespace="dbt_prod", name="orders"),
                    producer="https://example.com/tests",
                )
            )
    finally:
        stop_child(receiver, timeout_s=15.0, what="coordinator lineage serve")
    assert "permission denied" not in log.read_text().lower(), log.read_text()

    node = NodeId("analytics", "orders")
    forbidden = [
        keys.run_key(NodeId("team_a", "extract"), PARTITION),
        keys.task_key(node, "t", PARTITION),
        keys.trigger_key(node, PARTITION),
        keys.config_key("graph"),
        keys.leader,
        keys.lineage_key("team_a", run_id),
    ]

    async def as_receiver() -> tuple[list[str], list[str]]:
        refused_writes: list[str] = []
        refused_reads: list[str] = []
        async with await EtcdStore.connect(auth_etcd.settings(user)) as store:
            assert await store.get(keys.leader) is None  # reading the leader key is allowed
            for key in forbidden:
                try:
                    await store.put(key, b'{"state":"success","run_id":"evil"}')
                except StoreError as exc:
                    assert "permission denied" in str(exc).lower(), exc
                    refused_writes.append(key)
            for key in (keys.run_key(NodeId("team_a", "extract"), PARTITION), keys.config_key("graph")):
                try:
                    await store.get(key)
                except StoreError as exc:
                    assert "permission denied" in str(exc).lower(), exc
                    refused_reads.append(key)
        return refused_writes, refused_reads

    async def as_root() -> dict[str, bytes]:
        async with await EtcdStore.connect(auth_etcd.settings("root")) as root:
            return {kv.key: kv.value for kv in (await root.snapshot(keys.root)).kvs}

    refused_writes, refused_reads = arun(as_receiver())
    assert refused_writes == forbidden
    assert len(refused_reads) == 2
    stored = arun(as_root())
    assert sorted(stored) == [keys.lineage_key("analytics", run_id), keys.run_key(node, PARTITION)]
    record, _ = parse_run_record(stored[keys.run_key(node, PARTITION)])
    assert record is not None
    assert (record.state, record.run_id, record.source) == (RunState.SUCCESS, run_id, "openlineage:dbt_prod")
    run = LineageRun.model_validate_json(stored[keys.lineage_key("analytics", run_id)])
    assert (run.dag, run.partition, sorted(run.events)) == ("orders", PARTITION, ["COMPLETE", "START"])


def test_a_receiver_whose_role_misses_an_instance_answers_403_not_503(
    auth_etcd: AuthEtcd, tmp_path: Path, arun: Any
) -> None:
    """Under the analytics-only role, a receiver serving every mapped instance answers an event of another instance
    403 etcd_denied (a retry cannot fix a role; a 503 would be retried for nothing) and writes nothing."""
    user = "coordinator-lineage-analytics"
    graph = json.loads(json.dumps(LINEAGE_GRAPH))
    graph["instances"]["spark"] = {}
    graph["dags"]["spark/export"] = {"partitions": {"cron": "0 0 * * *"}}
    graph["openlineage"].append({"namespace": "dbt_prod", "job": "export", "instance": "spark"})
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(graph))
    token = "dbt-token-for-tests"  # a test receiver's; not a real secret
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "dbt", "sha256": hash_token(token), "namespaces": ["dbt_*"]}]}))
    port = free_port()
    http_port = free_port(exclude=[port])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "OPENLINEAGE"))}
    env.update(COORDINATOR_ETCD_ENDPOINTS=auth_etcd.server.endpoint, COORDINATOR_PREFIX=PREFIX,
               COORDINATOR_DEPS=str(deps), COORDINATOR_ETCD_USERNAME=user,
               COORDINATOR_ETCD_PASSWORD=auth_etcd.passwords[user])  # fmt: skip
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        receiver = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "lineage", "serve", "--tokens", str(tokens), "--listen",
             f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http_port}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    event = {"eventType": "COMPLETE", "eventTime": "2026-01-02T03:00:00+00:00", "producer": "https://example.com",
             "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
             "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "dbt_prod", "name": "export"}}  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and receiver.poll() is None and answer is None:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/lineage", json=event, timeout=10,
                                    headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answer is not None, log.read_text()
        assert (answer.status_code, answer.json()["error"]) == (403, "etcd_denied"), answer.text
        assert "'spark'" in answer.json()["detail"] and "coordinator roles" in answer.json()["detail"]
    finally:
        stop_child(receiver, timeout_s=15.0, what="coordinator lineage serve")

    async def as_root() -> list[str]:
        async with await EtcdStore.connect(auth_etcd.settings("root")) as root:
            return [kv.key for kv in (await root.snapshot(KeyLayout(PREFIX).root)).kvs]

    assert not [key for key in arun(as_root()) if "/spark/" in key]


def test_a_plugin_user_may_neither_rerun_nor_forge_a_no_cascade_record(
    auth_etcd: AuthEtcd, airflow: FakeAirflow, tmp_path: Path, arun: Any
) -> None:
    """Team A's plugin user: `plan rerun` and `rerun --no-cascade` are refused by etcd (exit 1, nothing cleared in
    Airflow), and a no-cascade record it writes itself is refused (semantics `no-cascade-once`: only an operator's
    rerun may waive a cascade); the operator's `plan rerun` and `rerun --no-cascade` then record the waiver and clear
    the run once."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(GRAPH))
    instances = tmp_path / "instances.json"
    entry = {"url": airflow.url, "username": "coordinator", "password_env": "AF_PASSWORD"}
    instances.write_text(json.dumps({"team_a": entry, "team_b": entry}))
    config = writer_config(auth_etcd, "team_a")
    fact = extract_success(config)
    airflow.create_run("extract", "scheduled__2026-01-01", datetime(2026, 1, 1, tzinfo=UTC))
    keys = KeyLayout(PREFIX)
    waiver = keys.no_cascade_key(NodeId("team_a", "extract"), PARTITION)

    async def record_and_forge() -> str:
        async with await EtcdStore.connect(config.etcd) as store:
            await write_one(store, fact, 2.0)
            try:
                await store.put(waiver, b'{"run_id":"scheduled__2026-01-01","clear_number":0,"replaces":1}')
            except StoreError as exc:
                return str(exc)
        return "written"

    assert "permission denied" in arun(record_and_forge()).lower()
    env = auth_etcd.env("coordinator-plugin-team_a", airflow, deps, instances)
    for args in (("plan", "rerun", "team_a/extract"), ("rerun", "team_a/extract", "--no-cascade", "--yes")):
        done = run_command(*args, "--from", PARTITION, "--to", PARTITION, env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "permission denied" in done.stderr.lower(), done.stderr
    assert airflow.clears("extract") == 0

    async def stored() -> bool:
        async with await EtcdStore.connect(auth_etcd.settings("root")) as root:
            return await root.get(waiver) is not None

    assert not arun(stored())
    airflow.wait_idle()
    operator = auth_etcd.env("coordinator-operator", airflow, deps, instances)
    planned = run_command("plan", "rerun", "team_a/extract", "--from", PARTITION, "--to", PARTITION, env=operator)
    assert planned.returncode == 0 and "clear  extract" in planned.stdout, planned.stdout + planned.stderr
    done = run_command("rerun", "team_a/extract", "--from", PARTITION, "--to", PARTITION, "--no-cascade", "--yes",
                       env=operator)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert airflow.clears("extract") == 1
    assert arun(stored()), "the operator's rerun --no-cascade recorded no waiver"
