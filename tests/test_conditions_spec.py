"""Condition groups in dependencies.json (``any``, ``all``, ``at_least`` ... ``of``): what loads, what the graph holds,
digest stability for graphs without groups, the JSON Schema, and every refusal with its JSON path, line and hint."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from coordinator.core.conditions import GroupRule, GroupSpec
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.schema import json_schema
from coordinator.errors import SpecError


def node(dag_id: str) -> NodeId:
    return NodeId("default", dag_id)


def graph(dags: dict[str, Any]) -> Any:
    return parse_spec(json.dumps({"version": 1, "dags": dags}), "deps.json")


def errors(dags: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        graph(dags)
    return info.value.problems


def test_any_and_at_least_groups_beside_a_required_edge() -> None:
    """A required edge stays required; each group lists its members (with their tasks) and how many it needs."""
    g = graph(
        {
            "report": {
                "upstreams": [
                    "calendar",
                    {"any": ["primary", "fallback"]},
                    {"at_least": 2, "of": ["eu", "us", {"dag": "apac", "task": "load"}]},
                ]
            }
        }
    )
    spec = g.dags[node("report")]
    assert spec.upstreams == tuple(sorted(node(n) for n in ("calendar", "primary", "fallback", "eu", "us", "apac")))
    assert spec.groups == (
        GroupSpec(GroupRule.ANY, 1, ((node("fallback"), None), (node("primary"), None))),
        GroupSpec(GroupRule.AT_LEAST, 2, ((node("apac"), "load"), (node("eu"), None), (node("us"), None))),
    )
    assert set(g.edge_inputs) == {node("report")}  # judged edge by edge
    assert g.downstreams[node("fallback")] == (node("report"),)


def test_an_all_group_is_the_upstreams_list_itself() -> None:
    """``{"all": [...]}`` means what the list means: same DAG, same digest; it may hold an any group (one level)."""
    flat = graph({"d": {"upstreams": ["a", {"any": ["b", "c"]}]}})
    nested = graph({"d": {"upstreams": {"all": ["a", {"any": ["b", "c"]}]}}})
    assert flat.dags == nested.dags
    assert flat.digest == nested.digest
    plain = graph({"d": {"upstreams": {"all": ["a", "b"]}}})
    assert plain.digest == graph({"d": {"upstreams": ["a", "b"]}}).digest
    assert plain.dags[node("d")].groups == ()


def test_a_graph_without_groups_keeps_its_digest_and_groups_change_it() -> None:
    """Groups enter the shape only when present: today's files keep their digest, and any vs all differ."""
    before = graph({"d": {"upstreams": ["a", "b"]}})
    assert before.shapes[node("d")] == graph({"d": {"upstreams": ["b", "a"]}}).shapes[node("d")]
    grouped = graph({"d": {"upstreams": [{"any": ["a", "b"]}]}})
    two = graph({"d": {"upstreams": [{"at_least": 2, "of": ["a", "b"]}]}})
    assert len({before.digest, grouped.digest, two.digest}) == 3


def test_members_keep_every_edge_field() -> None:
    """A member is an edge: task, condition, offset and grids are read as for any edge."""
    g = graph(
        {
            "u": {"partitions": {"cron": "@hourly"}},
            "v": {"partitions": {"cron": "@hourly"}},
            "d": {
                "partitions": {"cron": "@daily"},
                "upstreams": [
                    {"any": [{"dag": "u", "task": "t", "condition": "finished"}, {"dag": "v", "offset": -1}]}
                ],
            },
        }
    )
    spec = g.dags[node("d")]
    assert spec.groups[0].members == ((node("u"), "t"), (node("v"), None))
    assert spec.offset(node("v")) == -1
    assert [str(e.condition) for e in spec.edges if e.source == node("u")] == ["finished"]


@pytest.mark.parametrize(
    ("upstreams", "where", "what", "hint"),
    [
        pytest.param([{"any": []}], "$.dags.d.upstreams[0].any", "empty any group", "list its members", id="empty"),
        pytest.param(
            [{"any": ["a"]}], "$.dags.d.upstreams[0].any", "a group of one member", "write the edge itself", id="one"
        ),
        pytest.param(
            [{"at_least": 3, "of": ["a", "b"]}],
            "$.dags.d.upstreams[0].at_least",
            "at_least 3 of 2 members can never hold",
            "write at most 2",
            id="too-many",
        ),
        pytest.param(
            [{"at_least": 0, "of": ["a", "b"]}],
            "$.dags.d.upstreams[0].at_least",
            "expected a whole number of at least 1, got 0",
            "at_least",
            id="zero",
        ),
        pytest.param(
            [{"at_least": 2}], "$.dags.d.upstreams[0]", '"at_least" without "of"', '"of"', id="at-least-no-of"
        ),
        pytest.param(
            [{"any": ["a", {"any": ["b", "c"]}]}],
            "$.dags.d.upstreams[0].any[1]",
            "a group inside an any group",
            "groups nest one level",
            id="nested-any",
        ),
        pytest.param(
            [{"any": ["a", "b"], "all": ["c", "e"]}],
            "$.dags.d.upstreams[0]",
            "a group with 2 rules (any, all)",
            "write one of any, all or at_least",
            id="two-rules",
        ),
        pytest.param(
            [{"any": ["a", "b"], "cutoff": "PT6H"}],
            "$.dags.d.upstreams[0].cutoff",
            "a cutoff on an any group",
            "already runs with one member",
            id="cutoff-on-any",
        ),
        pytest.param(
            [{"at_least": 2, "of": ["a", "b", "c"], "cutoff": "25:00"}],
            "$.dags.d.upstreams[0].cutoff",
            'expected a time of day HH:MM (00:00 to 23:59), got "25:00"',
            '"cutoff": "06:00"',
            id="cutoff-not-a-time-of-day",
        ),
        pytest.param(
            [{"at_least": 2, "of": ["a", "b", "c"], "cutoff": "-6h"}],
            "$.dags.d.upstreams[0].cutoff",
            'expected a positive duration, got "-6h"',
            "after the partition's start",
            id="cutoff-negative",
        ),
        pytest.param(
            [{"at_least": 2, "of": ["a", "b", "c"], "late": "ignore"}],
            "$.dags.d.upstreams[0].late",
            '"late" without "cutoff"',
            "add one",
            id="late-without-cutoff",
        ),
        pytest.param(
            [{"at_least": 2, "of": ["a", "b", "c"], "cutoff": "6h", "min": 2}],
            "$.dags.d.upstreams[0].min",
            "min 2 is not below the 2 members the group needs",
            "write at most 1",
            id="min-not-below-need",
        ),
        pytest.param(
            [{"at_least": 2, "of": ["a", "b", "c"], "cutoff": "6h", "late": "never"}],
            "$.dags.d.upstreams[0].late",
            'expected rerun or ignore, got "never"',
            '"late": "ignore"',
            id="late-unknown",
        ),
        pytest.param(
            ["a", {"any": ["a", "b"]}],
            "$.dags.d.upstreams[1].any[0]",
            "a is listed twice (also at $.dags.d.upstreams[0])",
            "remove one",
            id="member-also-required",
        ),
        pytest.param(
            [{"any": [{"dag": "d", "offset": -1}, "b"]}],
            "$.dags.d.upstreams[0].any[0].dag",
            "self-dependency 'd' in a condition group",
            "outside the group",
            id="gate-in-group",
        ),
        pytest.param(
            [{"any": ["a", "b"], "of": ["c", "e"]}],
            "$.dags.d.upstreams[0].of",
            '"of" belongs to "at_least", not to "any"',
            'write {"any": [...]}',
            id="of-on-any",
        ),
    ],
)
def test_meaningless_groups_are_refused_with_path_and_hint(upstreams: Any, where: str, what: str, hint: str) -> None:
    """Each meaningless group is one problem at its JSON path, saying what is wrong and how to write it."""
    found = [p for p in errors({"d": {"partitions": {"cron": "@daily"}, "upstreams": upstreams}}) if where + ":" in p]
    assert found, errors({"d": {"upstreams": upstreams}})
    assert any(what in p and hint in p for p in found), found


def test_a_cutoff_on_at_least_and_on_all() -> None:
    """A cutoff is read as seconds with its min and late; an all group with one is at_least all of its members."""
    g = graph(
        {
            "rollup": {
                "upstreams": [
                    {"at_least": 3, "of": ["eu", "us", "apac", "latam"], "cutoff": "6h", "min": 2, "late": "ignore"},
                    {"all": ["x", "y"], "cutoff": "PT1H"},
                ]
            }
        }
    )
    first, second = g.dags[node("rollup")].groups
    assert (first.need, first.cutoff, first.minimum, str(first.late)) == (3, 6 * 3600, 2, "ignore")
    assert (str(second.rule), second.need, second.cutoff, second.minimum, str(second.late)) == (
        "at_least",
        2,
        3600,
        1,
        "rerun",
    )


def test_groups_only_in_upstreams() -> None:
    """A group in on_failure_of or on_late_of is refused: it has no meaning there."""
    problems = errors({"h": {"on_failure_of": [{"any": ["a", "b"]}]}, "l": {"on_late_of": {"any": ["a", "b"]}}})
    assert any("$.dags.h.on_failure_of[0]: a condition group in on_failure_of" in p for p in problems), problems
    assert any("$.dags.l.on_late_of: a condition group in on_late_of" in p for p in problems), problems


def test_problems_carry_the_line() -> None:
    """A refused group is reported with the file's line, like every other problem."""
    text = json.dumps({"version": 1, "dags": {"d": {"upstreams": [{"any": ["a"]}]}}}, indent=2)
    with pytest.raises(SpecError) as info:
        parse_spec(text, "deps.json")
    assert info.value.problems[0].startswith("deps.json:7: $.dags.d.upstreams[0].any: a group of one member")


@pytest.mark.parametrize(
    ("upstreams", "valid"),
    [
        pytest.param(["a", {"any": ["b", "c"]}], True, id="any"),
        pytest.param([{"at_least": 2, "of": ["a", "b", {"dag": "c", "task": "t"}]}], True, id="at-least"),
        pytest.param({"all": ["a", {"any": ["b", "c"]}]}, True, id="all-holds-any"),
        pytest.param([{"any": ["a"]}], False, id="one-member"),
        pytest.param([{"any": ["a", {"any": ["b", "c"]}]}], False, id="nested-any"),
        pytest.param([{"at_least": 3, "of": ["a", "b", "c"], "cutoff": "PT6H", "min": 2}], True, id="cutoff"),
        pytest.param([{"at_least": 2, "of": ["a", "b", "c"], "cutoff": "6h", "late": "never"}], False, id="late"),
    ],
)
def test_the_schema_accepts_what_the_loader_accepts(upstreams: Any, valid: bool) -> None:
    """The JSON Schema agrees with the loader on these groups (shape only)."""
    doc = {"version": 1, "dags": {"d": {"upstreams": upstreams}}}
    schema_ok = not list(jsonschema.Draft202012Validator(json_schema()).iter_errors(doc))
    try:
        parse_spec(json.dumps(doc))
        loader_ok = True
    except SpecError:
        loader_ok = False
    assert (schema_ok, loader_ok) == (valid, valid)
