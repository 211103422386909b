"""Which DAGs the coordinator triggers with a ``partition_key`` and whether their timetables accept it
(``coordinator.core.key_acceptance``, pure), and the one extra question ``coordinator.airflow.key_check`` asks the
fake Airflow at the HTTP boundary."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.key_check import refused_keys
from coordinator.core.activation import adopt
from coordinator.core.key_acceptance import DagTimetable, key_refusals, keyed_dependents, keyed_in_activation
from coordinator.core.spec.loader import parse_spec
from coordinator.runtime.settings import InstanceSettings
from tests.support.fake_airflow import FakeAirflow

DAILY = {"cron": "0 0 * * *"}
KEYED = {**DAILY, "key_format": "%Y-%m-%d"}
GRAPH = parse_spec(
    json.dumps({
        "version": 1,
        "dags": {
            "root_keyed": {"partitions": KEYED, "expected_by": {"at": "10:00"}},
            "after": {"partitions": KEYED, "upstreams": ["root_keyed"]},
            "on_fail": {"partitions": KEYED, "on_failure_of": ["root_keyed"]},
            "on_late": {"partitions": KEYED, "on_late_of": ["root_keyed"]},
            "plain_after": {"partitions": DAILY, "upstreams": ["root_keyed"]},
        },
    })
)  # fmt: skip


def test_keyed_dependents_are_the_keyed_dags_the_coordinator_triggers() -> None:
    """A dependent, a failure handler and a late handler with a key_format are keyed dependents; a keyed root and an
    unkeyed dependent are not."""
    assert [k.node.dag_id for k in keyed_dependents(GRAPH)] == ["after", "on_fail", "on_late"]


def test_the_adopted_graph_names_the_same_keyed_dependents() -> None:
    """``doctor`` without the file judges the activation's record: the same DAGs as the file's."""
    activation = adopt(GRAPH.shapes, GRAPH.digest, None, 1, by="test", sources=GRAPH.dags)
    assert activation is not None
    assert keyed_in_activation(activation) == keyed_dependents(GRAPH)


def test_what_the_timetable_says_decides() -> None:
    """Partitioned or PartitionedAtRuntime: accepted; a refusing built-in: certain; a custom one: not certain; no
    timetable_partitioned field: certain, naming the Airflow version."""
    keyed = keyed_dependents(GRAPH)
    listed = {
        "after": DagTimetable("after", False, None, "Never, external triggers only"),
        "on_fail": DagTimetable("on_fail", False, "my.Timetable"),
        "on_late": DagTimetable("on_late", True, "0 0 * * *"),
    }
    found = key_refusals(keyed, listed, ["after"], airflow_version="3.3.2", deps="d.json")
    assert [(r.dag_id, r.certain) for r in found] == [("after", True), ("on_fail", False)]
    listed["on_late"] = DagTimetable("on_late", False, "PartitionedAtRuntime")
    assert [r.dag_id for r in key_refusals(keyed, listed, ["after"], airflow_version="3.3.2", deps="d")] == [
        "after",
        "on_fail",
    ]
    old = {k.node.dag_id: DagTimetable(k.node.dag_id, None) for k in keyed}
    found = key_refusals(keyed, old, [], airflow_version="2.11.0", deps="d.json")
    assert all(r.certain for r in found) and len(found) == 3
    assert "Airflow 2.11.0 has no partition keys" in found[0].problem
    assert "the coordinator cannot send one to Airflow 2 (API v1)" in found[0].problem


class _IgnoresTimetableType(FakeAirflow):
    """An Airflow that ignores the ``timetable_type`` filter (as FastAPI ignores an unknown query parameter)."""

    def _list_dags(self, query: dict[str, list[str]]) -> dict[str, Any]:
        return super()._list_dags({k: v for k, v in query.items() if k != "timetable_type"})


def test_a_filter_airflow_ignored_judges_every_suspect_as_refused() -> None:
    """An Airflow that ignores the timetable_type filter lists every DAG: the schedule=None suspect is still an error
    (certain), never let through as a custom timetable."""
    graph = parse_spec(
        json.dumps({"version": 1, "dags": {"up": {}, "down": {"partitions": KEYED, "upstreams": ["up"]}}})
    )
    with _IgnoresTimetableType(["up", "down"], username="u", password="p") as fake:
        fake.set_timetable("down", "None")

        async def ask() -> list[tuple[str, bool]]:
            settings = InstanceSettings(url=fake.url, username="u", password="p")
            async with AirflowClient(settings, name="default") as client:
                listed = await client.dag_list()
                found = await refused_keys(client, keyed_dependents(graph), listed, version="3.3.2", deps="d.json")
            return [(r.dag_id, r.certain) for r in found]

        assert asyncio.run(ask()) == [("down", True)]
