"""What operators are told, checked against a real etcd (the fake Airflow at the HTTP boundary): an https:// endpoint
of a plain etcd, refusals left by DAGs removed from the graph, watchers running different graphs, and a misspelt
upstream adopted by a live watcher."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.etcd import EtcdStore
from coordinator.informer.presence_value import WatcherPresence, graph_digests
from coordinator.runtime.settings import EtcdSettings
from tests.support.cli_inproc import run_cli as run_inproc
from tests.support.fake_airflow import FakeAirflow
from tests.test_doctor import DAGS, GRAPH, PASSWORD, checks_of, cli_env, seed


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``coordinator <args>`` with ``env``, in the test process (tests/support/cli_inproc.py): status, doctor and why
    are read for what they say; the watchers stay real processes. A process per call cost ~0.6 s of CPU, and
    :func:`_wait_status` polls status every 0.3 s."""
    return run_inproc(args, env=env)


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    fake = FakeAirflow(DAGS, username="coordinator", password=PASSWORD).start()
    try:
        yield fake
    finally:
        fake.stop()


def test_an_https_endpoint_of_a_plain_etcd_names_the_scheme_and_the_fix(etcd_endpoint: str, etcd_prefix: str) -> None:
    """status and doctor against a real plain etcd given as https:// say that etcd does not speak TLS and to use
    http://HOST:PORT (or enable TLS), not only "handshake failed"; doctor's fix, applied, reaches etcd."""
    https = etcd_endpoint.replace("http://", "https://")
    where = etcd_endpoint.removeprefix("http://")
    env = cli_env(https, etcd_prefix, "http://127.0.0.1:9")
    status = run_cli("status", env=env)
    assert status.returncode == 2, status.stdout + status.stderr  # configuration, not an etcd that is down
    assert f"etcd at {where} does not speak TLS" in status.stderr, status.stderr
    assert f"use {etcd_endpoint}" in status.stderr and "enable TLS on etcd" in status.stderr
    check = checks_of(run_cli("doctor", "--format", "json", env=env))["etcd"]
    assert check["status"] == "fail" and f"etcd at {where} does not speak TLS" in check["summary"], check
    assert f"COORDINATOR_ETCD_ENDPOINTS={etcd_endpoint}" in check["fix"], check
    fixed = re.search(r"COORDINATOR_ETCD_ENDPOINTS=(\S+)", check["fix"])
    assert fixed is not None
    env.update(COORDINATOR_ETCD_ENDPOINTS=fixed.group(1))
    assert checks_of(run_cli("doctor", "--format", "json", env=env))["etcd"]["status"] == "ok"


def _put(arun: Any, settings: EtcdSettings, values: dict[str, bytes]) -> None:
    async def write() -> None:
        async with await EtcdStore.connect(settings) as store:
            for key, value in values.items():
                await store.put(key, value)

    arun(write())


def _keys(arun: Any, settings: EtcdSettings, prefix: str) -> set[str]:
    async def read() -> set[str]:
        async with await EtcdStore.connect(settings) as store:
            return {kv.key for kv in (await store.snapshot(prefix + "/")).kvs}

    result: set[str] = arun(read())
    return result


def _refused(error: str) -> bytes:
    record = TriggerRecord(status=TriggerStatus.ERROR, action=TriggerAction.CREATE, run_id=f"coordinator__{P}",
                           intent_rev=5, last_error=error)  # fmt: skip
    return dump_record(record)


P = "2026-01-01T00:00:00Z"


def test_a_refusal_of_a_dag_removed_from_the_graph_does_not_fail_doctor(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """A refused intent of a DAG no longer in the graph is named as history (doctor exits 0) and kept in etcd; a
    refused intent of a DAG of the graph still fails doctor."""
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={NodeId("default", "01_pipeline"): [P]})
    keys = KeyLayout(etcd_prefix)
    removed = keys.trigger_key(NodeId("default", "08_retired"), P)
    _put(arun, etcd_settings, {removed: _refused("404 DAG not found")})
    env = cli_env(etcd_endpoint, etcd_prefix, airflow.url)
    done = run_cli("doctor", "--format", "json", env=env)
    intents = checks_of(done)["intents"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert intents["status"] == "ok" and "removed from the graph (08_retired)" in intents["summary"], intents
    assert any(d.startswith(f"08_retired {P} (error)") for d in intents["details"]), intents
    assert removed in _keys(arun, etcd_settings, etcd_prefix)  # named, never deleted
    live = keys.trigger_key(NodeId("default", "02_pipeline"), P)
    _put(arun, etcd_settings, {live: _refused("403 forbidden")})
    done = run_cli("doctor", "--format", "json", env=env)
    intents = checks_of(done)["intents"]
    assert done.returncode == 1 and intents["status"] == "fail", intents
    assert any("02_pipeline" in d and "403 forbidden" in d for d in intents["details"]), intents
    assert any("08_retired" in d and "no longer in the graph" in d for d in intents["details"]), intents


def test_old_presence_values_still_decode_without_a_graph_digest() -> None:
    """A presence value written before the graph fields existed parses (digest None, no warnings), and the digests
    index leaves it out instead of calling it a different graph."""
    old = WatcherPresence.model_validate_json('{"id": "w-old", "started_at": "2026-01-01T00:00:00Z", "version": "1"}')
    new = WatcherPresence(id="w-new", started_at=old.started_at, graph_digest="abc")
    assert (old.graph_digest, old.graph_warnings) == (None, ())
    assert graph_digests([old, new]) == {"abc": ["w-new"]}


def _watcher(env: dict[str, str], ident: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "watch", "--http", "off", "--id", ident],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_live_watchers_report_a_misspelt_upstream_and_different_graphs(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """A watcher taking a file whose upstream is misspelt logs ONE WARNING line with "did you mean", and status and
    doctor show it; a standby started with another file makes doctor fail "watcher graphs" and status say so."""
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"02_pipeline": "01_pipeline", "03_pipeline": "02_pipline"}))
    right = tmp_path / "right.json"
    right.write_text(json.dumps({"02_pipeline": "01_pipeline", "03_pipeline": "02_pipeline"}))
    env = cli_env(etcd_endpoint, etcd_prefix, airflow.url, deps=typo)
    first = _watcher(env, "w-typo", tmp_path / "w-typo.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        status = _wait_status(env, "graph warning", first, tmp_path / "w-typo.log")
        assert "watcher w-typo: graph warning:" in status and "did you mean '02_pipeline'?" in status, status
        warned = [line for line in (tmp_path / "w-typo.log").read_text().splitlines()
                  if "graph.unknown_upstream" in line]  # fmt: skip
        assert len(warned) == 1 and "WARNING" in warned[0] and "did you mean '02_pipeline'?" in warned[0], warned
        doctor = checks_of(run_cli("doctor", "--format", "json", env=env))
        assert doctor["graph warnings"]["status"] == "warn", doctor["graph warnings"]
        assert any("did you mean '02_pipeline'?" in d for d in doctor["graph warnings"]["details"])
        assert doctor["watcher graphs"]["status"] == "ok", doctor["watcher graphs"]

        second = _watcher(cli_env(etcd_endpoint, etcd_prefix, airflow.url, deps=right), "w-right",
                          tmp_path / "w-right.log")  # fmt: skip
        status = _wait_status(env, "DIFFERENT graphs", second, tmp_path / "w-right.log")
        assert "w-typo (leader) runs digest" in status and "w-right runs digest" in status, status
        done = run_cli("doctor", "--format", "json", env=env)
        graphs = checks_of(done)["watcher graphs"]
        assert done.returncode == 1 and graphs["status"] == "fail", graphs
        assert "DIFFERENT graphs" in graphs["summary"] and "COORDINATOR_DEPS" in graphs["fix"], graphs
    finally:
        _stop(first)
        if second is not None:
            _stop(second)


def _wait_status(env: dict[str, str], text: str, watcher: subprocess.Popen[bytes], log: Path) -> str:
    """status' output once it contains ``text`` (the watchers' presence values are written after their start)."""
    deadline = time.monotonic() + 60
    status = run_cli("status", env=env).stdout
    while text not in status:
        assert watcher.poll() is None, log.read_text()
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
        status = run_cli("status", env=env).stdout
    return status


def test_why_prints_a_backfill_command_that_runs(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """For a success older than the adopted definition, `why` names `coordinator backfill DAG --from P --to P`, and
    that command, pasted as printed, runs (exit 0) and records the backfill request."""
    keys = KeyLayout(etcd_prefix)
    up = NodeId("default", "01_pipeline")

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            success = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{P}", source="airflow-plugin:default")
            rev = await store.put(keys.run_key(up, P), dump_record(success))
            activation = adopt(GRAPH.shapes, GRAPH.digest, None, rev + 1, by="test", sources=GRAPH.dags)
            assert activation is not None
            await store.put(keys.config_key("graph"), dump_activation(activation))

    arun(write())
    env = cli_env(etcd_endpoint, etcd_prefix, "http://127.0.0.1:9")
    why = run_cli("why", "02_pipeline", "-p", P, env=env)
    assert why.returncode == 0, why.stdout + why.stderr
    printed = re.search(r"`(coordinator backfill [^`]+)`", why.stdout)
    assert printed is not None, why.stdout
    assert printed.group(1) == f"coordinator backfill 02_pipeline --from {P} --to {P}", why.stdout
    done = run_cli(*shlex.split(printed.group(1))[1:], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(k.startswith(keys.config_key("backfill/")) for k in _keys(arun, etcd_settings, etcd_prefix))
