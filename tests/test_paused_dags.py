"""The courtesy paused check after a trigger: one shared ``GET /dags?paused=true`` per instance (client, cache, and
the actuator against a real etcd and the fake Airflow), never a reason for a trigger to fail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from coordinator.airflow.client import PAGE_SIZE, AirflowClient
from coordinator.core.actions import Trigger
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerStatus, parse_trigger_record, run_id_for
from coordinator.errors import AirflowError, AirflowUnavailable
from coordinator.etcd import EtcdStore
from coordinator.runtime.instance_auth import BearerAuth
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.actuator import Actuator
from coordinator.watcher.executor import Executor
from coordinator.watcher.paused import PausedDags, paused_lists
from tests.support.fake_airflow import FakeAirflow
from tests.support.offers import submit

PARTITION = "2026-01-01T00:00:00Z"


def trigger(dag_id: str, partition: str = PARTITION) -> Trigger:
    return Trigger(
        node=NodeId("default", dag_id),
        partition=partition,
        inputs={"default/root": 1},
        action=TriggerAction.CREATE,
        run_id=run_id_for(partition),
        reason="root succeeded",
        cause_rev=1,
        ledger_rev=0,
        trigger_count=1,
    )


class Clock:
    """A clock the test moves: the cache's lifetime is asserted without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the client's list call


def mock_client(dags: list[dict[str, Any]], seen: list[httpx.Request], *, honour_filter: bool) -> AirflowClient:
    """A v2 client over a scripted ``GET /api/v2/dags`` (pages by limit/offset; the filter optionally ignored)."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        q = request.url.params
        rows = [d for d in dags if d["is_paused"]] if honour_filter and q.get("paused") == "true" else dags
        offset, limit = int(q.get("offset", "0")), int(q.get("limit", "50"))
        return httpx.Response(200, json={"dags": rows[offset : offset + limit], "total_entries": len(rows)})

    # A static bearer token: no login round trip, only the list requests are counted.
    auth = BearerAuth(token=SecretStr("token"), token_env="T")
    settings = InstanceSettings(url="http://airflow.test", api="v2", auth=auth)
    return AirflowClient(settings, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("honour_filter", [pytest.param(True, id="filtered"), pytest.param(False, id="ignored")])
def test_paused_dags_pages_the_list_and_checks_each_flag(honour_filter: bool) -> None:
    """Every paused DAG over several pages is found, with ``paused=true`` sent; a server ignoring the filter still
    yields only the paused ones (each item's own flag decides)."""
    dags = [{"dag_id": f"d{i:03d}", "is_paused": i % 3 == 0} for i in range(2 * PAGE_SIZE + 50)]
    seen: list[httpx.Request] = []

    async def main() -> frozenset[str]:
        async with mock_client(dags, seen, honour_filter=honour_filter) as client:
            return await client.paused_dags()

    assert asyncio.run(main()) == {d["dag_id"] for d in dags if d["is_paused"]}
    assert all(r.url.path == "/api/v2/dags" and r.url.params["paused"] == "true" for r in seen)
    assert [r.url.params["offset"] for r in seen] == [str(n) for n in range(0, len(seen) * PAGE_SIZE, PAGE_SIZE)]


def test_paused_dags_refuses_an_item_without_a_paused_flag() -> None:
    """A list item without ``is_paused`` is an AirflowError naming the request, never a guess."""

    async def main() -> None:
        async with mock_client([{"dag_id": "d"}], [], honour_filter=False) as client:
            await client.paused_dags()

    with pytest.raises(AirflowError, match=r"GET /api/v2/dags: unexpected response: no is_paused flag"):
        asyncio.run(main())


# ---------------------------------------------------------------- the cache


def test_concurrent_questions_share_one_list_request_until_it_expires() -> None:
    """Fifty questions asked while the list is in flight cost one request; the answer is reused for the TTL, then
    fetched again."""
    clock = Clock()
    calls = 0
    release = asyncio.Event()

    async def fetch() -> frozenset[str]:
        nonlocal calls
        calls += 1
        await release.wait()
        return frozenset({"d3"})

    async def main() -> list[bool | None]:
        cache = PausedDags(fetch, instance="i", ttl_s=5.0, clock=clock)
        asks = [asyncio.create_task(cache.is_paused(f"d{n}")) for n in range(50)]
        await asyncio.sleep(0.01)
        release.set()
        answers = await asyncio.gather(*asks)
        clock.now += 4.9
        assert await cache.is_paused("d3") is True and calls == 1
        clock.now += 0.2
        assert await cache.is_paused("d3") is True and calls == 2
        return answers

    answers = asyncio.run(main())
    assert answers == [n == 3 for n in range(50)]


def test_a_failed_list_answers_unknown_and_is_not_retried_per_question() -> None:
    """A list that fails answers None (the caller asks per DAG), raises nothing, and is retried only after the TTL."""
    clock = Clock()
    calls = 0

    async def fetch() -> frozenset[str]:
        nonlocal calls
        calls += 1
        raise AirflowUnavailable("i: GET /api/v2/dags -> 503: down", 503)

    async def main() -> None:
        cache = PausedDags(fetch, instance="i", ttl_s=5.0, clock=clock)
        assert [await cache.is_paused("a"), await cache.is_paused("b")] == [None, None]
        assert calls == 1
        clock.now += 5.0
        assert await cache.is_paused("a") is None and calls == 2

    asyncio.run(main())


# ---------------------------------------------------------------- the actuator (real etcd, fake Airflow)


def run_triggers(
    etcd_settings: EtcdSettings,
    prefix: str,
    fake: FakeAirflow,
    batches: list[list[Trigger]],
    arun: Callable[..., Any],
    *,
    clock: Callable[[], float],
    between: Callable[[], None] = lambda: None,
) -> dict[tuple[str, str], tuple[TriggerStatus, str | None]]:
    """Through one actuator, submit each batch's triggers at once and wait for them, calling ``between`` after each
    batch but the last; return each ledger's (status, last_error)."""
    keys = KeyLayout(prefix)

    async def main() -> dict[tuple[str, str], tuple[TriggerStatus, str | None]]:
        async with await EtcdStore.connect(etcd_settings) as store, AirflowClient(
            InstanceSettings(url=fake.url, username="admin", password="admin")
        ) as client:  # fmt: skip
            clients = {"default": client}
            executor = Executor(store, clients, fence=lambda: None)
            actuator = Actuator(
                executor,
                keys,
                watcher_id="w",
                replan=lambda key: None,
                paused=paused_lists(clients, clock),
                clock=clock,
            )
            for n, batch in enumerate(batches):
                if n:
                    between()
                for action in batch:
                    assert submit(actuator, action)
                await actuator.controller.drain_ready()
            result = {}
            for action in (a for batch in batches for a in batch):
                kv = await store.get(keys.trigger_key(action.node, action.partition))
                assert kv is not None
                record, _ = parse_trigger_record(kv.value)
                assert record is not None
                result[(action.node.dag_id, action.partition)] = (record.status, record.last_error)
            return result

    result: dict[tuple[str, str], tuple[TriggerStatus, str | None]] = arun(main())
    return result


DAGS = [f"child_{n:02d}" for n in range(20)]


def test_a_cascade_of_triggers_costs_one_list_and_warns_only_for_the_paused_dag(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """Twenty triggers at once: each created once, one paused-DAG list in all, no per-DAG GET except the paused
    DAG's re-check, and only the paused DAG carries the warning."""
    with FakeAirflow(DAGS) as fake:
        fake.set_paused("child_07", True)
        result = run_triggers(etcd_settings, etcd_prefix, fake, [[trigger(d) for d in DAGS]], arun, clock=Clock())
        assert [fake.creates(d) for d in DAGS] == [1] * len(DAGS)
        assert fake.calls("list_dags") == 1
        assert fake.calls("get_dag") == 1 and fake.calls("get_dag", "child_07") == 1
    for (dag, _), (status, error) in result.items():
        assert status is TriggerStatus.DONE, dag
        if dag == "child_07":
            assert error is not None and "paused" in error, error
        else:
            assert error is None, (dag, error)


def test_a_dag_unpaused_since_the_list_gets_no_warning(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """The cached list still says paused, but the DAG's own re-check says unpaused: no warning, no new list."""
    clock = Clock()
    with FakeAirflow(["a", "b"]) as fake:
        fake.set_paused("a", True)
        later = trigger("a", "2026-01-02T00:00:00Z")
        result = run_triggers(
            etcd_settings,
            etcd_prefix,
            fake,
            [[trigger("a")], [later]],
            arun,
            clock=clock,
            between=lambda: fake.set_paused("a", False),
        )
        assert fake.calls("list_dags") == 1 and fake.calls("get_dag", "a") == 2
    assert "paused" in str(result[("a", PARTITION)][1])
    assert result[("a", later.partition)] == (TriggerStatus.DONE, None)


@pytest.mark.parametrize(
    "status", [pytest.param(503, id="unavailable"), pytest.param(403, id="forbidden"), pytest.param(422, id="refused")]
)
def test_a_failing_list_never_blocks_a_trigger_and_falls_back_to_the_dag_itself(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any], status: int
) -> None:
    """The list answers an error: every trigger is still created once and confirmed, and the paused DAG is still
    flagged through its own GET."""
    with FakeAirflow(["a", "b", "c"]) as fake:
        fake.set_paused("b", True)
        fake.fail_next(100, status, endpoint="list_dags")
        result = run_triggers(
            etcd_settings, etcd_prefix, fake, [[trigger(d) for d in ("a", "b", "c")]], arun, clock=Clock()
        )
        assert [fake.creates(d) for d in ("a", "b", "c")] == [1, 1, 1]
        # The failure is reused too: one list for all three triggers (a 403 gets the client's one re-login retry).
        assert fake.calls("list_dags") == (2 if status == 403 else 1)
    assert result[("a", PARTITION)] == (TriggerStatus.DONE, None)
    assert result[("c", PARTITION)] == (TriggerStatus.DONE, None)
    assert result[("b", PARTITION)][0] is TriggerStatus.DONE and "paused" in str(result[("b", PARTITION)][1])
