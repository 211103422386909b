"""What the deadline pass learns from Airflow: which instances answer (``watcher/reachability.py``, fed by the real
client's request hook) and which DAGs that matter are paused (``watcher/deadline_facts.py``, over the fake Airflow's
real HTTP API)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.airflow.client import AirflowClient
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import AirflowError
from coordinator.informer.presence_value import InstanceCheck, WatcherPresence, airflow_majors
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import InstanceSettings
from coordinator.watcher.deadline_facts import PausedForDeadlines, deadline_scope
from coordinator.watcher.deadlines import known_majors
from coordinator.watcher.paused import PausedDags
from coordinator.watcher.reachability import UNREACHABLE_AFTER, Reachability
from tests.support.fake_airflow import FakeAirflow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- reachability


@pytest.mark.parametrize(
    ("statuses", "down"),
    [
        pytest.param(["error"] * UNREACHABLE_AFTER, True, id="connection-failures"),
        pytest.param(["timeout", "503", "502"], True, id="timeouts-and-5xx"),
        pytest.param(["error"] * (UNREACHABLE_AFTER - 1), False, id="a-blip-is-not-an-outage"),
        pytest.param(["error", "error", "404", "error", "error"], False, id="an-answer-resets-the-count"),
        pytest.param(["401", "403", "409", "422"], False, id="refusals-are-answers"),
        pytest.param(["error"] * UNREACHABLE_AFTER + ["200"], False, id="one-success-is-reachable-again"),
    ],
)
def test_consecutive_failures_make_an_instance_unreachable(statuses: list[str], down: bool) -> None:
    """Only UNREACHABLE_AFTER consecutive failures (no answer, timeout, 5xx) mark an instance; any answer clears it."""
    tracker = Reachability()
    for status in statuses:
        tracker.observe("b", status)
    assert tracker.unreachable() == (frozenset({"b"}) if down else frozenset())


def test_the_gauge_is_set_on_first_answer_and_on_every_change_only() -> None:
    """on_change is told of the first observation and of each change, never of a repeated judgement."""
    seen: list[tuple[str, bool]] = []
    tracker = Reachability(on_change=lambda instance, up: seen.append((instance, up)))
    for status in ["200", "200", *["error"] * (UNREACHABLE_AFTER + 2), "200", "200"]:
        tracker.observe("b", status)
    tracker.observe("c", "error")
    assert seen == [("b", True), ("b", False), ("b", True), ("c", True)]


def test_a_real_client_feeds_the_tracker_and_the_metric() -> None:
    """A client whose Airflow stopped answering makes its instance unreachable, and the gauge reads 0, then 1."""
    metrics = Metrics()
    tracker = Reachability(on_change=metrics.airflow_reachable)

    async def main(url: str, fake: FakeAirflow) -> list[frozenset[str]]:
        found = []
        async with AirflowClient(
            InstanceSettings(url=url, username="admin", password="admin"), name="b", on_request=tracker.on_request
        ) as client:
            await client.paused_dags()
            found.append(tracker.unreachable())
            fake.stop()
            for _ in range(UNREACHABLE_AFTER):
                with pytest.raises(AirflowError):
                    await client.paused_dags()
            found.append(tracker.unreachable())
        return found

    fake = FakeAirflow(["a"]).start()
    try:
        found = asyncio.run(main(fake.url, fake))
    finally:
        fake.stop()
    assert found == [frozenset(), frozenset({"b"})]
    assert metrics.registry.get_sample_value("coordinator_airflow_reachable", {"instance": "b"}) == 0


# ---------------------------------------------------------------- the paused DAGs that matter

GRAPH: dict[str, Any] = {
    "version": 1,
    "instances": {"b": {}, "c": {}},
    "dags": {
        "b/root": {},
        "mid": {"upstreams": "b/root"},
        "report": {"upstreams": "mid", "expected_by": {"after_end": "6h"}},
        "handler": {"on_late_of": "report"},
        "c/elsewhere": {},
        "unrelated": {"upstreams": "c/elsewhere"},
    },
}


def graph(spec: dict[str, Any] = GRAPH) -> Graph:
    return parse_spec(json.dumps(spec))


def test_the_scope_is_the_deadline_dags_and_their_ancestors() -> None:
    """A DAG with expected_by and what it waits for matter; its handler and unrelated DAGs do not."""
    scope = deadline_scope(graph())
    assert scope == {NodeId("b", "root"), NodeId("default", "mid"), NodeId("default", "report")}


def test_only_the_instances_that_matter_are_listed_and_a_failed_list_keeps_the_last_answer() -> None:
    """One list per instance in scope (never c's), the paused DAGs in scope come back; a failed list leaves the last
    known answer; without any expected_by nothing is asked."""
    asked: list[str] = []
    answers: dict[str, list[frozenset[str] | Exception]] = {
        "default": [frozenset({"mid", "unrelated", "handler"})] * 3,
        "b": [frozenset({"root"}), AirflowError("b: GET /api/v2/dags -> 503"), frozenset()],
        "c": [frozenset({"elsewhere"})] * 3,
    }
    clock = Clock()

    def fetch(name: str) -> Callable[[], Awaitable[frozenset[str]]]:
        async def run() -> frozenset[str]:
            asked.append(name)
            answer = answers[name].pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return run

    lists = {name: PausedDags(fetch(name), instance=name, ttl_s=5.0, clock=clock) for name in answers}
    source = PausedForDeadlines(lists)

    async def main() -> list[frozenset[NodeId]]:
        found = [await source(graph())]
        clock.now += 5.0
        found.append(await source(graph()))  # b's list fails: b/root stays paused as last known
        clock.now += 5.0
        found.append(await source(graph()))  # b answers: root was unpaused meanwhile
        no_deadline = {**GRAPH, "dags": {k: v for k, v in GRAPH["dags"].items() if k not in ("report", "handler")}}
        clock.now += 5.0
        found.append(await source(graph(no_deadline)))
        return found

    found = asyncio.run(main())
    mid, root = NodeId("default", "mid"), NodeId("b", "root")
    assert found == [frozenset({mid, root}), frozenset({mid, root}), frozenset({mid}), frozenset()]
    assert sorted(asked) == ["b", "b", "b", "default", "default", "default"]


# ---------------------------------------------------------------- the Airflow versions a root's start depends on


def test_the_client_knows_airflow3_after_its_first_request_and_the_job_reads_it_without_asking() -> None:
    """The fake Airflow 3 serves /api/v2: unknown before any request, major 3 after the paused list, and
    ``known_majors`` reads it from the clients without a request of its own."""

    async def main(url: str, fake: FakeAirflow) -> tuple[dict[str, int], dict[str, int], int]:
        async with AirflowClient(InstanceSettings(url=url, username="admin", password="admin"), name="b") as client:
            before = known_majors({"b": client})
            await client.paused_dags()
            asked = len(fake.requests("version"))
            return before, known_majors({"b": client}), len(fake.requests("version")) - asked

    fake = FakeAirflow(["a"]).start()
    try:
        before, after, extra = asyncio.run(main(fake.url, fake))
    finally:
        fake.stop()
    assert (before, after, extra) == ({}, {"b": 3}, 0)


@pytest.mark.parametrize(
    ("version", "api", "major"),
    [
        pytest.param("3.3.2", "v2", 3, id="airflow-3"),
        pytest.param("2.11.0", "v1", 2, id="airflow-2"),
        pytest.param(None, "v2", 3, id="api-only"),
        pytest.param(None, None, None, id="never-reached"),
    ],
)
def test_status_reads_each_instances_major_from_the_watchers_start_checks(
    version: str | None, api: str | None, major: int | None
) -> None:
    """``status``, ``why`` and the page take an instance's Airflow major version from the watchers' presence: the
    version string, else the API (v2 is Airflow 3); an instance no check reached is left out."""
    check = InstanceCheck(instance="b", version=version, api=api)
    presence = WatcherPresence(id="w1", started_at=datetime(2026, 11, 23, tzinfo=UTC), instances=(check,))
    assert airflow_majors([presence]) == ({"b": major} if major is not None else {})
