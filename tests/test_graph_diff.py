"""``coordinator.core.graph_diff``: every kind of change, as example tables (pure, no store)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from coordinator.core.activation import Activation, adopt, dump_activation
from coordinator.core.graph import Graph
from coordinator.core.graph_diff import (
    Baseline,
    ChangeKind,
    EdgeKind,
    StoreActivity,
    adopted_graph,
    diff_graphs,
    store_activity,
)
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
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View

BASE: dict[str, Any] = {"b": "a", "c": "b"}


def graph(dags: dict[str, Any], source: str = "new.json") -> Graph:
    return parse_spec(json.dumps(dags), source)


def n(ref: str) -> NodeId:
    return NodeId.parse(ref)


def edges(result: Any) -> list[tuple[str, str, str, str]]:
    return [(str(e.kind), str(e.edge), str(e.source), str(e.target)) for c in result.changes for e in c.edges]


# (id, new graph, expected (dag, change) pairs, expected edge changes, expected backfill)
CASES = [
    ("unchanged", BASE, [], [], []),
    ("dag-added", {**BASE, "d": "c"}, [("d", "added")], [("added", "upstream", "c", "d")], ["d"]),
    (
        "dag-removed",
        {"b": "a"},
        [("c", "removed")],
        [("removed", "upstream", "b", "c")],
        [],
    ),
    (
        "edge-added",
        {"b": "a", "c": ["a", "b"]},
        [("c", "changed")],
        [("added", "upstream", "a", "c")],
        ["c"],
    ),
    (
        "edge-removed-becomes-root",
        {"version": 1, "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {}}},
        [("c", "changed")],
        [("removed", "upstream", "b", "c")],
        [],
    ),
    (
        "edge-removed",
        {"b": "a", "c": "a", "d": ["b", "c"]},
        [("c", "changed"), ("d", "added")],
        [
            ("removed", "upstream", "b", "c"),
            ("added", "upstream", "a", "c"),
            ("added", "upstream", "b", "d"),
            ("added", "upstream", "c", "d"),
        ],
        ["c", "d"],
    ),
    (
        "edge-moved",
        {"b": "a", "c": "a"},
        [("c", "changed")],
        [("removed", "upstream", "b", "c"), ("added", "upstream", "a", "c")],
        ["c"],
    ),
    (
        "failure-source-added",
        {"version": 1, "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {"on_failure_of": "a"}}},
        [("c", "changed")],
        [("removed", "upstream", "b", "c"), ("added", "on_failure_of", "a", "c")],
        ["c"],
    ),
    (
        "root-added",
        {"version": 1, "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {"upstreams": "b"}, "z": {}}},
        [("z", "added")],
        [],
        [],
    ),
    (
        "other-instance",
        {
            "version": 1,
            "instances": {"t": {}},
            "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {"upstreams": "b"}, "t/d": {"upstreams": "c"}},
        },
        [("t/d", "added")],
        [("added", "upstream", "c", "t/d")],
        ["t/d"],
    ),
]


@pytest.mark.parametrize(("new", "dags", "edge_changes", "backfill"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_kind_of_change_against_a_file(
    new: dict[str, Any], dags: list[tuple[str, str]], edge_changes: list[tuple[str, ...]], backfill: list[str]
) -> None:
    """Against another file: the DAGs and edges added, removed or changed, and which DAGs need a backfill."""
    result = diff_graphs(Baseline.from_graph(graph(BASE, "old.json")), graph(new))
    assert [(str(c.node), str(c.kind)) for c in result.changes] == dags
    assert edges(result) == edge_changes
    assert [str(node) for node in result.backfill] == backfill
    assert result.changed is bool(dags)
    assert (result.old_label, result.new_label) == ("old.json", "new.json")


def test_a_description_change_is_not_a_change() -> None:
    """Only sources make a DAG changed: the description (which the digest ignores too) does not."""
    new = graph({"version": 1, "dags": {"a": {"description": "x"}, "b": {"upstreams": "a"}, "c": {"upstreams": "b"}}})
    assert not diff_graphs(Baseline.from_graph(graph(BASE)), new).changed


def activation_baseline(old: Graph, *, with_edges: bool) -> Baseline:
    activation = adopt(old.shapes, old.digest, None, 57, sources=old.dags if with_edges else None)
    return Baseline.from_activation(activation, "adopted", 60)


@pytest.mark.parametrize("with_edges", [True, False], ids=["edges-recorded", "shape-only"])
def test_against_an_adopted_graph_edges_when_recorded_else_shape_only(with_edges: bool) -> None:
    """An adopted value with edges gives the edges; an older shape-only value still says which DAG changed."""
    result = diff_graphs(activation_baseline(graph(BASE), with_edges=with_edges), graph({"b": "a", "c": "a"}))
    (change,) = result.changes
    assert (str(change.node), change.kind, change.edges_known, change.old_since) == (
        "c",
        ChangeKind.CHANGED,
        with_edges,
        57,
    )
    assert len(change.edges) == (2 if with_edges else 0)
    assert change.needs_backfill
    assert "after the watcher adopts this file" in change.applies_from


def test_shape_only_baseline_sees_no_change_when_sources_are_equal() -> None:
    """Equal shapes mean equal sources: a shape-only baseline reports nothing for an unchanged graph."""
    assert not diff_graphs(activation_baseline(graph(BASE), with_edges=False), graph(BASE)).changed


def test_nothing_adopted_is_a_first_adoption_without_backfill() -> None:
    """With no graph ever adopted every DAG is added, history is processed (rule 9) and nothing needs a backfill."""
    result = diff_graphs(Baseline.from_activation(None, "never"), graph(BASE))
    assert result.first_adoption
    assert [(str(c.node), c.kind) for c in result.changes] == [
        ("a", ChangeKind.ADDED),
        ("b", ChangeKind.ADDED),
        ("c", ChangeKind.ADDED),
    ]
    assert result.backfill == ()
    assert "first adoption" in result.changes[1].applies_from
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("new", "warning"),
    [
        (
            {
                "version": 1,
                "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {"upstreams": "b"}, "h": {"on_failure_of": "b"}},
            },
            "new failure handler: h will run once per failed attempt of b",
        ),
        (
            {"version": 1, "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {"on_failure_of": "a"}}},
            "new failure handler: c will run once per failed attempt of a",
        ),
        (
            {
                "version": 1,
                "instances": {"t": {}},
                "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {"upstreams": "b"}, "t/x": {"upstreams": "a"}},
            },
            "new Airflow instance 't'",
        ),
    ],
    ids=["handler-added", "handler-gained", "instance-added"],
)
def test_warnings_for_new_failure_handlers_and_instances(new: dict[str, Any], warning: str) -> None:
    """A new failure handler and a new Airflow instance are called out in the warnings."""
    result = diff_graphs(Baseline.from_graph(graph(BASE)), graph(new))
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(warning)


def test_removed_dag_with_activity_in_the_store_is_a_warning() -> None:
    """A removed DAG with queued/running runs or pending intents in the store gets a warning naming them."""
    keys = KeyLayout("/p")
    view = View(keys)
    c = n("c")
    running = RunRecord(state=RunState.RUNNING, run_id="r1")
    done = RunRecord(state=RunState.SUCCESS, run_id="r0")
    pending = TriggerRecord(status=TriggerStatus.PENDING, action=TriggerAction.CREATE, run_id="coordinator__x")
    view.apply(keys.run_key(c, "2026-01-02T00:00:00Z"), dump_record(running), 10)
    view.apply(keys.run_key(c, "2026-01-01T00:00:00Z"), dump_record(done), 11)
    view.apply(keys.trigger_key(c, "2026-01-03T00:00:00Z"), dump_record(pending), 12)
    view.apply(keys.run_key(n("b"), "2026-01-02T00:00:00Z"), dump_record(running), 13)
    activity = store_activity(view, [c])
    assert activity == {c: StoreActivity(("2026-01-02T00:00:00Z",), ("2026-01-03T00:00:00Z",))}
    result = diff_graphs(Baseline.from_graph(graph(BASE)), graph({"b": "a"}), activity)
    (warning,) = result.warnings
    assert "removed DAG c has 1 queued/running run(s) (2026-01-02T00:00:00Z)" in warning
    assert "1 pending trigger intent(s) (2026-01-03T00:00:00Z)" in warning


def test_removed_dag_without_activity_has_no_warning() -> None:
    """A removal that leaves nothing running or pending is reported as a change, not a warning."""
    result = diff_graphs(Baseline.from_graph(graph(BASE)), graph({"b": "a"}), {})
    assert result.warnings == ()
    assert result.of(ChangeKind.REMOVED)[0].edges[0].edge is EdgeKind.UPSTREAM


def test_adopt_records_edges_and_fills_them_into_old_entries_without_redating() -> None:
    """The activation records each DAG's sources; an old shape-only entry gains them and keeps its since."""
    g = graph(BASE)
    old = adopt(g.shapes, g.digest, None, 5)
    assert old is not None and old.nodes["default/c"].upstreams is None
    changed = graph({**BASE, "d": "a"})
    new = adopt(changed.shapes, changed.digest, old, 9, sources=changed.dags)
    assert new is not None
    assert (new.nodes["default/c"].since, new.nodes["default/c"].upstreams) == (5, ("default/b",))
    assert (new.nodes["default/d"].since, new.nodes["default/d"].on_failure_of) == (9, ())


GRIDDED: dict[str, Any] = {
    "version": 1,
    "dags": {
        "hourly": {"partitions": {"cron": "0 * * * *"}},
        "fx": {"partitions": {"cron": "0 0 * * *"}},
        "daily": {"partitions": {"cron": "0 0 * * *"}, "upstreams": ["hourly", {"dag": "fx", "offset": -1}]},
    },
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"partitions": {"cron": "0 0 * * *", "timezone": "Europe/Berlin"}},
            ("grid: 0 0 * * * -> 0 0 * * * Europe/Berlin",),
            id="timezone-changed",
        ),
        pytest.param({"upstreams": ["hourly", {"dag": "fx"}]}, ("offset of fx: -1 -> 0",), id="offset-dropped"),
        pytest.param(
            {"upstreams": ["hourly", {"dag": "fx", "offset": -2}]},
            ("offset of fx: -1 -> -2",),
            id="offset-changed",
        ),
    ],
)
def test_grid_and_offset_changes_are_named_against_a_file_and_the_store(
    change: dict[str, Any], expected: tuple[str, ...]
) -> None:
    """A changed grid or offset is a change of the DAG, named in words, against a file and against the adopted value."""
    old = graph(GRIDDED, "old.json")
    new_spec = json.loads(json.dumps(GRIDDED))
    new_spec["dags"]["daily"] = {**new_spec["dags"]["daily"], **change}
    new = graph(new_spec)
    activation = adopt(old.shapes, old.digest, None, 5, sources=old.dags)
    assert activation is not None
    for baseline in (Baseline.from_graph(old), Baseline.from_activation(activation, "etcd", 5)):
        result = diff_graphs(baseline, new)
        assert [(str(c.node), str(c.kind)) for c in result.changes] == [("daily", "changed")]
        assert result.changes[0].details == expected
        assert result.changes[0].edges == ()


EXTENDED = {
    "extract": {"partitions": {"cron": "0 1 * * *"}},
    "load": {
        "partitions": {"cron": "0 5 * * *"},
        "upstreams": [
            {"dag": "extract", "task": "publish", "shift": "-4h", "condition": "finished"},
            {"dag": "load", "offset": -1},
        ],
    },
    "report": {"upstreams": "load", "expected_by": {"after_end": "6h", "warn": "30m", "duration": "learned"}},
    "page_oncall": {"on_late_of": "report"},
}


def test_the_adopted_graph_is_rebuilt_exactly_with_extended_edges() -> None:
    """An activation records extended edges (shift, task, condition, gate), so the graph rebuilt from its stored
    value has the file's shapes and edges; a DAG without them writes the value it always wrote."""
    file_graph = graph({"version": 1, "dags": EXTENDED})
    activation = adopt(file_graph.shapes, file_graph.digest, None, 7, sources=file_graph.dags)
    assert activation is not None
    stored = json.loads(dump_activation(activation))
    assert "edges" not in stored["nodes"]["default/report"] and "edges" not in stored["nodes"]["default/extract"]
    assert "deadline" not in stored["nodes"]["default/extract"]
    rebuilt = adopted_graph(Activation.model_validate(stored), "adopted")
    assert rebuilt is not None
    assert rebuilt.shapes == file_graph.shapes and rebuilt.digest == file_graph.digest
    assert rebuilt.dags[n("load")].edges == file_graph.dags[n("load")].edges
    assert rebuilt.gated.keys() == {n("load")}
    assert rebuilt.dags[n("report")].expected_by == file_graph.dags[n("report")].expected_by
    assert rebuilt.late_handlers == file_graph.late_handlers == {n("report"): (n("page_oncall"),)}


def test_a_deadline_change_is_adopted_without_re_dating_the_dag() -> None:
    """Editing only expected_by changes the digest (the watcher adopts it, so the page sees the new deadline) and
    keeps the DAG's since: a deadline never makes a DAG due."""
    before = graph({"version": 1, "dags": EXTENDED})
    first = adopt(before.shapes, before.digest, None, 7, sources=before.dags)
    assert first is not None
    dags = {**EXTENDED, "report": {"upstreams": "load", "expected_by": {"after_end": "8h"}}}
    after = graph({"version": 1, "dags": dags})
    assert after.digest != before.digest and after.shapes == before.shapes
    second = adopt(after.shapes, after.digest, first, 20, sources=after.dags)
    assert second is not None
    assert second.nodes["default/report"].since == 7
    rebuilt = adopted_graph(Activation.model_validate_json(dump_activation(second)), "adopted")
    assert rebuilt is not None and rebuilt.dags[n("report")].expected_by == after.dags[n("report")].expected_by


def test_an_adopted_graph_whose_edges_were_not_recorded_is_not_rebuilt() -> None:
    """An entry written before edges or deadlines were recorded (or damaged) rebuilds to another digest: no graph,
    so readers fall back to the file rather than decide on a different graph."""
    file_graph = graph({"version": 1, "dags": EXTENDED})
    activation = adopt(file_graph.shapes, file_graph.digest, None, 7, sources=file_graph.dags)
    assert activation is not None
    stored = json.loads(dump_activation(activation))
    del stored["nodes"]["default/load"]["edges"]
    assert adopted_graph(Activation.model_validate(stored), "adopted") is None
    stored = json.loads(dump_activation(activation))
    del stored["nodes"]["default/report"]["deadline"]
    assert adopted_graph(Activation.model_validate(stored), "adopted") is None
    stored["nodes"]["default/load"]["edges"] = [
        ["default/extract", "publish", "success", 0, "not a shift", None, False]
    ]
    assert adopted_graph(Activation.model_validate(stored), "adopted") is None


#: A daily producer and a dependent whose runs the coordinator creates with a declared data interval.
INTERVALS: dict[str, Any] = {
    "load": {"partitions": {"cron": "0 0 * * *"}},
    "report": {"partitions": {"cron": "0 0 * * *"}, "upstreams": "load", "data_interval": "point"},
}


def test_a_data_interval_change_is_adopted_without_re_dating_and_diff_warns_of_it() -> None:
    """Editing only a DAG's data_interval changes the digest, keeps the DAG's since, is recorded in the activation
    (the adopted graph rebuilds to the file's digest), and ``diff`` names it as a warning, not a changed DAG."""
    before = graph({"version": 1, "dags": INTERVALS})
    first = adopt(before.shapes, before.digest, None, 7, sources=before.dags)
    assert first is not None
    after = graph({"version": 1, "dags": {**INTERVALS, "report": {**INTERVALS["report"], "data_interval": "period"}}})
    assert after.digest != before.digest and after.shapes == before.shapes
    second = adopt(after.shapes, after.digest, first, 20, sources=after.dags)
    assert second is not None and second.nodes["default/report"].since == 7
    stored = Activation.model_validate_json(dump_activation(second))
    assert stored.nodes["default/report"].data_interval == "period"
    assert "data_interval" not in json.loads(dump_activation(second))["nodes"]["default/load"]
    rebuilt = adopted_graph(stored, "adopted")
    assert rebuilt is not None and rebuilt.digest == after.digest
    result = diff_graphs(Baseline.from_activation(first, "adopted", 8), after)
    assert not result.changed
    (warning,) = result.warnings
    assert warning.startswith("report: ") and "point -> period" in warning and "nothing is re-dated" in warning


def test_a_dag_made_scheduled_is_a_change_named_in_its_details() -> None:
    """A DAG changed from triggered to ``"runs": "scheduled"`` is reported changed, with the words for both."""
    old = graph({"version": 1, "dags": INTERVALS})
    new = graph({"version": 1, "dags": {**INTERVALS, "report": {**INTERVALS["report"], "runs": "scheduled"}}})
    for baseline in (Baseline.from_graph(old), activation_baseline(old, with_edges=True)):
        (change,) = diff_graphs(baseline, new).changes
        assert change.kind is ChangeKind.CHANGED
        assert any(d.startswith("runs: triggered") and "-> scheduled" in d for d in change.details), change.details


def test_a_graph_without_data_intervals_keeps_its_digest() -> None:
    """A file that declares no data_interval has the digest it had before the field existed (shapes only)."""
    plain = graph(BASE)
    payload = {n.qualified: plain.shapes[n] for n in sorted(plain.dags)}
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert plain.digest == expected
