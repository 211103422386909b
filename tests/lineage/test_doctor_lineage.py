"""What operators see of a graph that maps OpenLineage jobs: doctor (receiver, token, role), status, why, the page."""

from __future__ import annotations

import html
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import RunState

from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import Settings
from tests.conftest import run_coro
from tests.lineage.receiver_proc import TOKENS, ReceiverProc, client, event, new_run_id
from tests.lineage.test_receiver import AT, PARTITION
from tests.support.cli_inproc import run_cli


def lineage_check(workdir: Path, etcd: str, prefix: str, **env: str) -> dict[str, Any]:
    """The "lineage receiver" line of ``doctor --format json`` run with ``env`` (``coordinator``'s ``main()`` in the
    test process, tests/support/cli_inproc.py: what doctor says is the claim, not its process)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    done = run_cli(["doctor", "--format", "json", "--etcd", etcd, "--prefix", prefix, "--deps",
                    str(workdir / "dependencies.json")], env={**base, **env})  # fmt: skip
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    return checks["lineage receiver"]


def test_doctor_checks_the_receiver_its_token_and_its_role(
    etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """With the receiver's URL and a known token doctor says ok and names what it may write; an unknown token and a
    stopped receiver fail with the fix; no URL is a warning naming the settings. Slow by design: four doctor
    runs and a receiver process."""
    receiver = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path).start()
    good, bad = tmp_path / "good.token", tmp_path / "bad.token"
    good.write_text(TOKENS["dbt"][0] + "\n")
    bad.write_text("nobody-knows-this\n")
    try:
        ok = lineage_check(tmp_path, etcd_endpoint, etcd_prefix, COORDINATOR_LINEAGE_URL=receiver.url,
                           COORDINATOR_LINEAGE_TOKEN_FILE=str(good))  # fmt: skip
        assert ok["status"] == "ok" and "token 'dbt' known; may write analytics" in ok["summary"], ok
        refused = lineage_check(tmp_path, etcd_endpoint, etcd_prefix, COORDINATOR_LINEAGE_URL=receiver.url,
                                COORDINATOR_LINEAGE_TOKEN_FILE=str(bad))  # fmt: skip
        assert refused["status"] == "fail" and "refused the token (401)" in refused["summary"], refused
    finally:
        receiver.stop()
    gone = lineage_check(tmp_path, etcd_endpoint, etcd_prefix, COORDINATOR_LINEAGE_URL=receiver.url,
                         COORDINATOR_LINEAGE_TOKEN_FILE=str(good))  # fmt: skip
    assert gone["status"] == "fail" and "did not answer" in gone["summary"] and "lineage serve" in gone["fix"], gone
    unset = lineage_check(tmp_path, etcd_endpoint, etcd_prefix)
    assert unset["status"] == "warn" and "COORDINATOR_LINEAGE_URL" in unset["fix"], unset


def test_status_and_why_name_the_openlineage_job_and_its_last_event(
    etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """status shows each OpenLineage node with its job and last event; why on its dependent says the same."""
    receiver = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path).start()
    try:
        ol = client(receiver.url, TOKENS["dbt"][0])
        run = new_run_id()
        ol.emit(event(RunState.START, run, at=AT))
        ol.emit(event(RunState.FAIL, run, at=AT + timedelta(minutes=1)))
    finally:
        receiver.stop()
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    common = ["--etcd", etcd_endpoint, "--prefix", etcd_prefix, "--deps", str(tmp_path / "dependencies.json")]
    status = run_cli(["status", "-p", PARTITION, "--format", "json", *common], env=base)
    rows = {row["node"]: row for row in json.loads(status.stdout)["openlineage"]}
    orders = rows["analytics/orders"]
    assert orders["state"] == "failed" and orders["entry"] == "openlineage[0]", orders
    assert f"OpenLineage job dbt_prod/jaffle.main.jaffle.orders.build.run (openlineage[0]) at {PARTITION}: last " \
           "event FAIL at 2026-11-21T02:01:00+00:00; state failed" in orders["describe"], orders  # fmt: skip
    why = run_cli(["why", "report", "-p", PARTITION, *common], env=base)
    assert why.returncode == 0, why.stderr
    assert "last event FAIL at 2026-11-21T02:01:00+00:00; state failed" in why.stdout, why.stdout


def test_the_page_shows_an_openlineage_nodes_job_and_last_event(
    etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """The dependencies page's detail of an OpenLineage node leads with its job and last event, as status says it."""
    receiver = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path).start()
    try:
        run = new_run_id()
        client(receiver.url, TOKENS["dbt"][0]).emit(event(RunState.COMPLETE, run, at=AT))
    finally:
        receiver.stop()
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=tmp_path / "dependencies.json")
    page = run_coro(dependencies_page(PARTITION, "analytics/orders", instance="default", settings=settings))
    assert page.status == 200
    said = f"OpenLineage job dbt_prod/jaffle.main.jaffle.orders.build.run (openlineage[0]) at {PARTITION}: last event "
    assert html.escape(said) in page.html, page.html[:3000]
    assert html.escape(f"state success (run {run})") in page.html
