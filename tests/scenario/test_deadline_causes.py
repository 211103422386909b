"""Causes only Airflow knows: a paused upstream DAG and an Airflow instance that stops answering (semantics rule 13).

Real watchers, a real etcd, the fake Airflow; the second instance ``b`` is a second fake behind a TCP proxy the test
cuts (connections refused and reset, as when a webserver is down). The graph is ``test_deadlines``'s: ``01 -> 02 ->
03``, ``03`` expected 20 days after its partition starts (so only a cause can make it anything but on time), ``07``
its ``on_late_of`` handler; ``from`` is today's partition, so exactly one partition can alert.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest

from coordinator.core.model import NodeId, canonical_partition
from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import Settings
from tests.scenario.conftest import Stack, TcpProxy, wait_for
from tests.scenario.test_deadlines import (
    DAILY,
    FAST,
    HANDLER,
    MIDDLE,
    ROOT,
    TARGET,
    handler_runs,
    passes,
    today,
    transition,
    wait_state,
)
from tests.scenario.test_metrics_health import scrape, total
from tests.support.fake_airflow import FakeAirflow

pytestmark = pytest.mark.scenario

#: The second Airflow instance (its own fake).
B = "b"


def graph(partition: str, root: str = ROOT) -> dict[str, Any]:
    """``test_deadlines``'s graph with ``root`` as the first DAG (``b/01_pipeline``: in the other instance)."""
    return {
        "version": 1,
        "instances": {B: {"description": "the second Airflow"}},
        "dags": {
            root: {**DAILY},
            MIDDLE: {"upstreams": root, **DAILY},
            TARGET: {
                "upstreams": MIDDLE,
                **DAILY,
                "expected_by": {"after_start": "20d", "warn": "1h", "from": partition},
            },
            HANDLER: {"on_late_of": TARGET},
        },
    }


def page_html(stack: Stack, partition: str, dag: str) -> str:
    """The dependencies page for ``partition`` with ``dag`` selected, as the api-server plugin asks for it: the
    graph the watcher adopted, no dependencies.json."""
    settings = Settings(etcd_endpoints=stack.endpoint, prefix=stack.prefix, deps=stack.deps.parent / "absent.json")
    answer = asyncio.run(dependencies_page(partition, f"default/{dag}", instance="default", settings=settings))
    assert answer.status == 200, answer.html
    return answer.html


def handler_conf(stack: Stack) -> list[dict[str, Any]]:
    return [run.conf["coordinator"]["deadline"] for run in stack.fake.runs(HANDLER)]


def test_a_paused_upstream_blocks_and_alerts_once(stack: Stack) -> None:
    """01 paused in Airflow makes 03 blocked (cause: 01 paused) before its deadline, the handler runs once with that
    cause; unpausing returns 03 to on_time, logged and not alerted."""
    p = today()
    stack.set_deps(graph(p))
    watcher = stack.start_watcher("w1", **FAST)
    stack.fake.set_paused(ROOT, True)
    record = wait_state(stack, p, "blocked", alerted=True)
    assert record["cause"] == f"default/{ROOT}@{p} paused"
    assert record["chain"] == f"default/{TARGET}@{p} <- default/{MIDDLE}@{p} <- default/{ROOT}@{p}"
    passes(watcher)
    assert len(handler_runs(stack)) == 1, handler_runs(stack)
    conf = handler_conf(stack)[0]
    assert (conf["dag"], conf["partition"], conf["state"], conf["cause"]) == (
        f"default/{TARGET}",
        p,
        "blocked",
        f"default/{ROOT}@{p} paused",
    )
    assert watcher.lines(rf"deadline\.paused instance=default dags={ROOT}$")
    # status and why read etcd only: they show the leader's judgement of a cause only the watcher sees.
    row = next(r for r in stack.status_json()["deadlines"] if (r["dag"], r["partition"]) == (TARGET, p))
    assert (row["state"], row["cause"], row["judged_by"]) == ("blocked", f"default/{ROOT}@{p} paused", "leader")
    text = stack.cli("why", TARGET, "-p", p).stdout
    assert "deadline: blocked" in text and f"cause: default/{ROOT}@{p} paused" in text
    assert "judged by the watcher" in text
    # So does the dependencies page (in Airflow's api-server it has no dependencies.json: the adopted graph).
    page = page_html(stack, p, TARGET)
    assert f'data-dag="default/{TARGET}"' in page and 'data-deadline="blocked"' in page
    assert f"default/{TARGET}@{p} &lt;- default/{MIDDLE}@{p} &lt;- default/{ROOT}@{p}" in page

    stack.fake.set_paused(ROOT, False)
    back = wait_state(stack, p, "on_time")
    assert back["alerted"] is True and back["sequence"] == 2
    passes(watcher)
    assert len(handler_runs(stack)) == 1, "the recovery alerted again"
    assert len(watcher.lines(rf"deadline\.transition dag=default/{TARGET} partition={p} from=blocked to=on_time")) == 1


@pytest.fixture
def instance_b(stack: Stack) -> tuple[FakeAirflow, TcpProxy]:
    """Instance ``b``: a second fake whose runs the plugin records under ``b``, reached through a proxy."""

    def on_state(dag_id: str, run_id: str, logical_date: datetime | None, state: str, clear_number: int) -> None:
        assert logical_date is not None
        record = {"state": state, "run_id": run_id, "clear_number": clear_number, "source": "fake"}
        key = stack.keys.run_key(NodeId(B, dag_id), canonical_partition(logical_date))
        stack.etcd.put(key, json.dumps(record), retry_s=30.0)

    fake = FakeAirflow([ROOT], on_state=on_state, queue_delay_s=0.01, run_duration_s=0.05).start()
    proxy = TcpProxy(int(fake.url.rsplit(":", 1)[1]))
    stack.add_cleanup(fake.stop)
    stack.add_cleanup(proxy.close)
    return fake, proxy


def test_an_unreachable_instance_blocks_then_recovers_without_a_second_alert(
    stack: Stack, instance_b: tuple[FakeAirflow, TcpProxy]
) -> None:
    """b stops answering: 03 in the default instance is blocked (cause: b/01 unreachable), the handler runs once
    with that cause and the reachability gauge says 0; b answers again: the gauge says 1 and 03 is on time again
    (logged, not alerted), and b/01's success then changes nothing. Slow by design: the watcher calls b
    unreachable after three failed paused-DAG lists, 5 s apart (the list's reuse period), and reachable at the next."""
    fake_b, proxy = instance_b
    p = today()
    stack.set_deps(graph(p, root=f"{B}/{ROOT}"))
    instances = stack.tmp_path / "instances.json"
    instances.write_text(json.dumps({B: {"url": proxy.endpoint, "username": "admin", "password_env": "B_PASSWORD"}}))
    watcher = stack.start_watcher("w1", COORDINATOR_INSTANCES_FILE=str(instances), B_PASSWORD="admin", **FAST)
    wait_for(lambda: total(scrape(watcher), "coordinator_airflow_reachable", instance=B) == 1, "b to be asked")
    assert transition(stack, p) is None

    proxy.cut()
    record = wait_state(stack, p, "blocked", alerted=True)
    assert record["cause"] == f"{B}/{ROOT}@{p} unreachable"
    assert record["chain"] == f"default/{TARGET}@{p} <- default/{MIDDLE}@{p} <- {B}/{ROOT}@{p}"
    assert total(scrape(watcher), "coordinator_airflow_reachable", instance=B) == 0
    assert watcher.lines(rf"airflow\.unreachable instance={B} ")
    passes(watcher)
    # Only p's alerts: a test running across midnight UTC sees the next day's partition judged (and blocked) too.
    assert [c["cause"] for c in handler_conf(stack) if c["partition"] == p] == [f"{B}/{ROOT}@{p} unreachable"]

    proxy.restore()
    wait_for(lambda: total(scrape(watcher), "coordinator_airflow_reachable", instance=B) == 1, "b to answer again")
    assert watcher.lines(rf"airflow\.reachable instance={B} ")
    back = wait_state(stack, p, "on_time")  # b/01 has simply not run yet: nothing blocks 03 any more
    fake_b.create_run(ROOT, f"scheduled__{p}", datetime.fromisoformat(p.replace("Z", "+00:00")))
    stack.wait_success(TARGET, p)
    passes(watcher)
    assert transition(stack, p) == back, "the success recorded another transition"
    assert back["sequence"] == 2 and back["alerted"] is True
    assert [c["partition"] for c in handler_conf(stack)].count(p) == 1, "the recovery alerted again"
    lines = watcher.lines(rf"deadline\.transition dag=default/{TARGET} partition={p} ")
    assert [line.split(" from=")[1].split(" deadline=")[0] for line in lines] == [
        "on_time to=blocked",
        "blocked to=on_time",
    ]
