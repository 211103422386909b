"""The extended edge fields of dependencies.json (shift, member, task, condition, self-dependency) and cron presets:
loading, canonical forms, digest stability, and every rejection with its JSON path and hint."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordinator.core.duration import format_shift, parse_shift
from coordinator.core.graph import Condition, EdgeSpec
from coordinator.core.grid import EdgeMap, Grid
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError


def node(dag_id: str) -> NodeId:
    return NodeId("default", dag_id)


def graph(dags: dict[str, Any]) -> Any:
    return parse_spec(json.dumps({"version": 1, "dags": dags}), "deps.json")


def errors(dags: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        graph(dags)
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        pytest.param("-4h", -4 * 3600, "-4h", id="hours"),
        pytest.param("-5d16h", -(5 * 86400 + 16 * 3600), "-5d16h", id="days-hours"),
        pytest.param("+30m", 1800, "30m", id="plus"),
        pytest.param("90m", 5400, "1h30m", id="carries"),
        pytest.param("0s", 0, "0s", id="zero"),
        pytest.param("-P1DT4H", -(86400 + 4 * 3600), "-1d4h", id="iso"),
        pytest.param("PT30M", 1800, "30m", id="iso-time"),
        pytest.param("-1d", -86400, "-1d", id="day"),
    ],
)
def test_shift_forms_and_canonical_form(text: str, seconds: int, canonical: str) -> None:
    """The compact and ISO 8601 forms read as seconds and print back in the one compact form."""
    assert parse_shift(text) == seconds
    assert format_shift(seconds) == canonical


@pytest.mark.parametrize("text", ["", "4", "-", "P", "PT", "1h30", "P1W", "P1M", "h4", "4H", "1d 2h"])
def test_shift_rejects_what_is_not_a_day_time_duration(text: str) -> None:
    """Weeks, months, bare numbers and malformed text are not shifts (their length is not fixed or not stated)."""
    assert isinstance(parse_shift(text), str)


def test_presets_are_their_cron_and_share_its_digest() -> None:
    """ "@daily" and "0 0 * * *" are one grid: same Grid, same DAG shape, same digest."""
    presets = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
               "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}  # fmt: skip
    for preset, cron in presets.items():
        a = graph({"a": {"partitions": {"cron": preset}}})
        b = graph({"a": {"partitions": {"cron": cron}}})
        assert a.dags[node("a")].grid == Grid(cron)
        assert a.digest == b.digest


def test_new_fields_load_into_edges() -> None:
    """shift, member, task and condition become EdgeSpecs; plain edges keep the shapes they had."""
    g = graph(
        {
            "u": {"partitions": {"cron": "0 1 * * *"}},
            "d": {
                "partitions": {"cron": "0 5 * * *"},
                "upstreams": [
                    {"dag": "u", "shift": "-4h", "task": "load"},
                    {"dag": "u", "shift": "-PT4H", "task": "grp.check", "condition": "finished"},
                    {"dag": "d", "offset": -1},
                ],
            },
            "w": {"partitions": {"cron": "0 0 * * 1"}, "upstreams": [{"dag": "x", "member": "last"}, "d"]},
            "x": {"partitions": {"cron": "@daily"}},
        }
    )
    d = g.dags[node("d")]
    assert d.upstreams == (node("u"),)
    assert d.edges == (
        EdgeSpec(node("d"), None, Condition.SUCCESS, EdgeMap(offset=-1)),
        EdgeSpec(node("u"), "grp.check", Condition.FINISHED, EdgeMap(shift=-4 * 3600)),
        EdgeSpec(node("u"), "load", Condition.SUCCESS, EdgeMap(shift=-4 * 3600)),
    )
    assert d.gates == (EdgeSpec(node("d"), None, Condition.SUCCESS, EdgeMap(offset=-1)),)
    assert g.mapped_edges[node("d")] == (node("u"),)
    w = g.dags[node("w")]
    assert w.mapping(node("x")) == EdgeMap(member=-1) and w.mapping(node("d")) == EdgeMap()
    assert [e.source for e in w.all_edges()] == [node("d"), node("x")]
    assert g.topo_order.index(node("u")) < g.topo_order.index(node("d"))  # the self gate is no cycle


def test_files_without_new_fields_keep_their_digest() -> None:
    """An edge object with only "dag", or with the default condition, is the plain reference (graph rule 4)."""
    plain = graph({"b": {"upstreams": ["a"]}})
    assert graph({"b": {"upstreams": [{"dag": "a"}]}}).digest == plain.digest
    assert graph({"b": {"upstreams": [{"dag": "a", "condition": "success"}]}}).digest == plain.digest
    assert graph({"b": {"upstreams": [{"dag": "a", "condition": "finished"}]}}).digest != plain.digest
    assert graph({"b": {"upstreams": [{"dag": "a", "task": "t"}]}}).digest != plain.digest
    assert graph({"b": {"upstreams": ["a"]}}).dags[node("b")].edges == ()


def test_two_spellings_of_a_shift_share_a_digest() -> None:
    """ "-P1DT4H" and "-1d4h" are one shift: the graph's digest does not depend on the spelling."""
    a = graph({"b": {"upstreams": [{"dag": "a", "shift": "-P1DT4H"}]}})
    b = graph({"b": {"upstreams": [{"dag": "a", "shift": "-1d4h"}]}})
    c = graph({"b": {"upstreams": [{"dag": "a", "shift": "-1d3h"}]}})
    assert a.digest == b.digest != c.digest


@pytest.mark.parametrize(
    ("dags", "expected"),
    [
        pytest.param(
            {"u": {"partitions": {"cron": "0 1 * * *"}},
             "d": {"partitions": {"cron": "0 5 * * *"}, "upstreams": [{"dag": "u", "shift": "-3h"}]}},
            'deps.json: $.dags.d.upstreams[0].shift: shift "-3h" never lands on u\'s grid (0 1 * * *): this DAG\'s '
            "partitions (0 5 * * *) plus the shift are never a point of it, so nothing would ever map — the nearest "
            'shifts that land are "-4h" or "20h"',
            id="shift-never-lands",
        ),
        pytest.param(
            {"x": {"partitions": {"cron": "@daily"}},
             "w": {"partitions": {"cron": "0 0 * * 1"}, "upstreams": [{"dag": "x", "member": 7}]}},
            "deps.json: $.dags.w.upstreams[0].member: member 7 never exists: a window of x (0 0 * * *) has at most 7 "
            'partitions — use an index from 0 to 6 (or -7 to -1), or "first" / "last"',
            id="member-never-exists",
        ),
        pytest.param(
            {"w": {"upstreams": [{"dag": "x", "member": "last"}]}},
            "deps.json: $.dags.w.upstreams[0].member: member on an edge without grids on both sides (w has no "
            'partitions) — declare "partitions": {"cron": ...} on both DAGs: a member is one partition of the mapped '
            "window",
            id="member-needs-grids",
        ),
        pytest.param(
            {"s": {"upstreams": [{"dag": "s", "shift": "+1d"}]}},
            "deps.json: $.dags.s.upstreams[0].dag: self-dependency on 's' does not point strictly into the past — a "
            'DAG can only wait for its own earlier partitions: write {"dag": "s", "offset": -1} (its previous '
            'partition) or a negative "shift"',
            id="self-not-in-the-past",
        ),
        pytest.param(
            {"s": {"upstreams": ["s"]}},
            "deps.json: $.dags.s.upstreams[0]: self-dependency: 's' is this DAG — remove it, or write "
            '{"dag": "s", "offset": -1} (its previous partition) or a negative "shift"',
            id="self-plain",
        ),
        pytest.param(
            {"b": {"upstreams": [{"dag": "a", "task": "t"}, {"dag": "a", "task": "t"}]}},
            "deps.json: $.dags.b.upstreams[1].dag: a task 't' is listed twice (also at $.dags.b.upstreams[0].dag) — "
            "remove one of them",
            id="task-twice",
        ),
        pytest.param(
            {"b": {"upstreams": [{"dag": "a", "task": "t", "shift": "-1h"}, {"dag": "a", "task": "v"}]}},
            "deps.json: $.dags.b.upstreams[1].dag: this edge to a maps dates differently from the one at "
            "$.dags.b.upstreams[0].dag — give every edge to one DAG the same offset, shift and member",
            id="mixed-mappings",
        ),
        pytest.param(
            {"b": {"upstreams": [{"dag": "a", "shift": "soon"}]}},
            "deps.json: $.dags.b.upstreams[0].shift: invalid shift: 'soon' is not a duration — write a signed "
            'duration such as "-4h", "-5d16h", "+30m" or "-P1DT4H" (negative looks back)',
            id="bad-shift",
        ),
        pytest.param(
            {"b": {"upstreams": [{"dag": "a", "condition": "done"}]}},
            'deps.json: $.dags.b.upstreams[0].condition: expected success or finished, got "done" — write "success" '
            '(the default) or "finished" (success or failed: the upstream merely finished)',
            id="bad-condition",
        ),
        pytest.param(
            {"b": {"upstreams": [{"dag": "a", "task": "a task"}]}},
            'deps.json: $.dags.b.upstreams[0].task: expected an Airflow task id, got "a task" — write the Airflow '
            'task id, e.g. "task": "load" or "task": "my_group.load"',
            id="bad-task",
        ),
        pytest.param(
            {"h": {"on_failure_of": [{"dag": "a", "task": "t"}]}},
            'deps.json: $.dags.h.on_failure_of[0].task: "task" on a failure source — a failure handler runs when the '
            "whole run of its source fails; remove it",
            id="task-on-failure-source",
        ),
        pytest.param(
            {"p": {"partitions": {"cron": "@fortnightly"}}},
            "deps.json: $.dags.p.partitions.cron: invalid cron '@fortnightly': unknown preset (known: @hourly, "
            '@daily, @midnight, @weekly, @monthly, @yearly, @annually) — write 5 fields, e.g. "0 * * * *" (hourly) '
            'or "0 0 * * *" (daily at midnight), or a preset: @hourly, @daily, @weekly, @monthly, @yearly',
            id="unknown-preset",
        ),
    ],
)  # fmt: skip
def test_rejections_name_the_field_and_the_fix(dags: dict[str, Any], expected: str) -> None:
    """Every impossible or malformed edge is reported at its JSON path with a hint (line numbers aside)."""
    problems = [p.split(": ", 1)[0].split(":")[0] + ": " + p.split(": ", 1)[1] for p in errors(dags)]
    assert expected in problems


def test_a_valid_shift_costs_no_full_sample() -> None:
    """A shift that lands on a DST-shifted grid on some dates only is valid (rule 5 asks for one landing)."""
    g = graph(
        {
            "u": {"partitions": {"cron": "0 1 * * *", "timezone": "Europe/Berlin"}},
            "d": {"partitions": {"cron": "0 0 * * *"}, "upstreams": [{"dag": "u", "shift": "-1h"}]},
        }
    )
    assert g.dags[node("d")].mapping(node("u")) == EdgeMap(shift=-3600)


def test_graph_text_lists_what_each_extended_edge_says() -> None:
    """`coordinator graph` names an edge's task, shift, member, condition and a self gate."""
    from coordinator.core.spec.render import render_text

    g = graph(
        {
            "u": {"partitions": {"cron": "0 1 * * *"}},
            "d": {
                "partitions": {"cron": "0 5 * * *"},
                "upstreams": [{"dag": "u", "shift": "-4h", "task": "load", "condition": "finished"},
                              {"dag": "d", "offset": -1}],
            },
        }
    )  # fmt: skip
    assert render_text(g).splitlines()[-1] == (
        "d [0 5 * * *] <- u [task load, shift -4h, finished], d [offset -1, gate: its own earlier partition]"
    )
