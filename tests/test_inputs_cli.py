"""``coordinator inputs`` and ``core.inputs.required_inputs``: what one run of a DAG waits for, without etcd."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from coordinator.core.inputs import OffGrid, RequiredInput, required_inputs
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from tests.test_spec_cli import run

SPEC = {
    "version": 1,
    "instances": {"team_a": {}},
    "dags": {
        "u": {"partitions": {"cron": "0 1 * * *"}},
        "d": {"partitions": {"cron": "0 5 * * *"}, "upstreams": [{"dag": "u", "shift": "-4h"}]},
        "t": {
            "partitions": {"cron": "0 5 * * *"},
            "upstreams": [
                {"dag": "u", "shift": "-4h", "task": "load"},
                {"dag": "u", "shift": "-4h", "task": "check", "condition": "finished"},
                {"dag": "t", "offset": -1},
            ],
        },
        "w": {"partitions": {"cron": "@weekly"}, "upstreams": [{"dag": "x", "member": "last"}]},
        "x": {"partitions": {"cron": "@daily"}},
        "rollup": {"partitions": {"cron": "@daily"}, "upstreams": ["h"]},
        "h": {"partitions": {"cron": "@hourly"}},
        "team_a/plain": {"upstreams": ["x"]},
        "alert": {"on_failure_of": "x"},
    },
}


def node(dag_id: str, instance: str = "default") -> NodeId:
    return NodeId(instance, dag_id)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "deps.json"
    path.write_text(json.dumps(SPEC), encoding="utf-8")
    return path


GRAPH = parse_spec(json.dumps(SPEC))


def test_required_inputs_of_a_shift_a_task_and_a_self_gate() -> None:
    """One RequiredInput per edge, sorted by (dag, task): the tasks of u at P - 4h and t's own previous day."""
    assert required_inputs(GRAPH, node("t"), "2024-03-10T05:00:00Z") == (
        RequiredInput(node("t"), None, "success", ("2024-03-09T05:00:00Z",)),
        RequiredInput(node("u"), "check", "finished", ("2024-03-10T01:00:00Z",)),
        RequiredInput(node("u"), "load", "success", ("2024-03-10T01:00:00Z",)),
    )


def test_required_inputs_of_a_rollup_are_sorted_and_canonical() -> None:
    """A rollup lists its 24 hours in order; the partition may be given in any accepted form."""
    (found,) = required_inputs(GRAPH, node("rollup"), "2024-03-10T01:00:00+01:00")
    assert len(found.partitions) == 24
    assert found.partitions[0] == "2024-03-10T00:00:00Z" and found.partitions[-1] == "2024-03-10T23:00:00Z"


def test_required_inputs_off_the_grid_names_the_nearest_points() -> None:
    """A date between two grid points raises OffGrid with the points before and after it."""
    with pytest.raises(OffGrid) as info:
        required_inputs(GRAPH, node("d"), "2024-03-10T06:00:00Z")
    assert info.value.nearest == ("2024-03-10T05:00:00Z", "2024-03-11T05:00:00Z")


def test_failure_sources_and_roots_wait_for_nothing() -> None:
    """Failure handlers and roots have no required inputs (they are not waiting for a success)."""
    assert required_inputs(GRAPH, node("alert"), "2024-03-10") == ()
    assert required_inputs(GRAPH, node("x"), "2024-03-10") == ()


def test_inputs_json_is_exactly_the_contract(spec_file: Path) -> None:
    """--format json prints the documented object: bare dag ids, instance, task, condition, sorted partitions."""
    result = run("inputs", "d", "--partition", "2024-03-10T05:00:00Z", "--deps", str(spec_file), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        '{"dag": "d", "partition": "2024-03-10T05:00:00Z", "upstreams": [{"dag": "u", "instance": "default", '
        '"task": null, "condition": "success", "partitions": ["2024-03-10T01:00:00Z"]}]}\n'
    )


def test_inputs_text_of_a_weekly_member(spec_file: Path) -> None:
    """The text form names each upstream, its condition and its partitions; a bare date is accepted."""
    result = run("inputs", "w", "-p", "2024-03-10", "--deps", str(spec_file))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "w 2024-03-10T00:00:00Z waits for:\n  x [success]: 2024-03-16T00:00:00Z\n"


def test_inputs_qualified_dag(spec_file: Path) -> None:
    """A DAG in another instance is named instance/dag_id and its upstream carries its own instance."""
    at = "2024-03-10T07:00:00Z"
    result = run("inputs", "team_a/plain", "-p", at, "--deps", str(spec_file), "-f", "json")
    assert json.loads(result.stdout)["upstreams"] == [
        {"dag": "x", "instance": "default", "task": None, "condition": "success", "partitions": [at]}
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("d", "-p", "2024-03-10T06:00:00Z"),
            "error: --partition: 2024-03-10T06:00:00Z is not a partition of d: its grid is 0 5 * * *; the nearest "
            "partitions are 2024-03-10T05:00:00Z and 2024-03-11T05:00:00Z\n",
            id="off-grid",
        ),
        pytest.param(("dd", "-p", "2024-03-10"), "(did you mean d?)", id="unknown-dag"),
        pytest.param(("d", "-p", "2024-03-10T05:00:00"), "has no time zone", id="naive-date"),
        pytest.param(("d", "-p", "2024-3-10"), "invalid partition '2024-3-10'", id="not-a-date"),
        pytest.param(
            ("d", "-p", "yesterday"),
            "yesterday is not a partition of d: its partitions are times on the grid 0 5 * * *, and a segment alone "
            "has none",
            id="a-segment-for-a-dag-of-times",
        ),
    ],
)
def test_inputs_bad_input_exits_2(spec_file: Path, args: tuple[str, ...], message: str) -> None:
    """A date off the DAG's grid, an unknown DAG, a malformed date or a segment for a DAG of times exit 2 with a
    message and no traceback."""
    result = run("inputs", *args, "--deps", str(spec_file))
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr


GROUPS = {
    "version": 1,
    "dags": {
        "calendar": {"partitions": {"cron": "0 4 * * *"}},
        "primary": {"partitions": {"cron": "0 4 * * *"}},
        "fallback": {"partitions": {"cron": "0 4 * * *"}},
        "kpis": {
            "partitions": {"cron": "0 4 * * *"},
            "upstreams": ["calendar", {"any": [{"dag": "primary", "task": "land"}, "fallback"]}],
        },
        "eu": {"partitions": {"cron": "0 0 * * *"}},
        "us": {"partitions": {"cron": "0 0 * * *"}},
        "apac": {"partitions": {"cron": "0 0 * * *"}},
        "rollup": {
            "partitions": {"cron": "0 0 * * *"},
            "upstreams": [{"all": ["eu", "us", "apac"], "cutoff": "6h", "min": 2, "late": "ignore"}],
        },
    },
}


@pytest.fixture
def groups_file(tmp_path: Path) -> Path:
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(GROUPS), encoding="utf-8")
    return path


def test_inputs_lists_the_required_edges_then_each_group_with_its_rule(groups_file: Path) -> None:
    """A required input is listed as before; an any group says its rule, what satisfies it and its members."""
    result = run("inputs", "kpis", "-p", "2024-03-10T04:00:00Z", "--deps", str(groups_file))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "kpis 2024-03-10T04:00:00Z waits for:\n"
        "  calendar [success]: 2024-03-10T04:00:00Z\n"
        "  any of 2 (satisfied by one of these):\n"
        "    fallback [success]: 2024-03-10T04:00:00Z\n"
        "    primary task land [success]: 2024-03-10T04:00:00Z\n"
    )


def test_inputs_of_a_cutoff_group_names_the_cutoff_instant_min_and_late(groups_file: Path) -> None:
    """An all group with a cutoff reads "3 of 3, cutoff 6h then min 2, late: ignore" and, for the partition, the
    instant from which 2 members are enough."""
    result = run("inputs", "rollup", "-p", "2024-03-10", "--deps", str(groups_file))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "rollup 2024-03-10T00:00:00Z waits for:\n"
        "  3 of 3, cutoff 6h then min 2, late: ignore (satisfied by 3 of these 3; from 2024-03-10T06:00:00Z on, 2 of "
        "them):\n"
        "    apac [success]: 2024-03-10T00:00:00Z\n"
        "    eu [success]: 2024-03-10T00:00:00Z\n"
        "    us [success]: 2024-03-10T00:00:00Z\n"
    )


def test_inputs_json_carries_each_group_and_only_required_edges_as_upstreams(groups_file: Path) -> None:
    """--format json: "upstreams" are the required inputs; "groups" holds each rule, its cutoff and its members."""
    result = run("inputs", "rollup", "-p", "2024-03-10", "--deps", str(groups_file), "-f", "json")
    body = json.loads(result.stdout)
    assert body["upstreams"] == []
    (group,) = body["groups"]
    assert {k: v for k, v in group.items() if k != "members"} == {
        "rule": "at_least",
        "need": 3,
        "text": "3 of 3, cutoff 6h then min 2, late: ignore",
        "cutoff": "6h",
        "cutoff_at": "2024-03-10T06:00:00Z",
        "min": 2,
        "late": "ignore",
    }
    assert [m["dag"] for m in group["members"]] == ["apac", "eu", "us"]
    kpis = json.loads(
        run("inputs", "kpis", "-p", "2024-03-10T04:00:00Z", "--deps", str(groups_file), "-f", "json").stdout
    )
    assert [u["dag"] for u in kpis["upstreams"]] == ["calendar"]
    assert kpis["groups"][0]["rule"] == "any" and kpis["groups"][0]["cutoff_at"] is None


def test_a_dag_without_groups_prints_no_groups_key(spec_file: Path) -> None:
    """The JSON of a DAG without groups is unchanged: no "groups" key."""
    result = run("inputs", "d", "-p", "2024-03-10T05:00:00Z", "--deps", str(spec_file), "-f", "json")
    assert "groups" not in json.loads(result.stdout)


def test_the_segments_example_of_dependencies_md_lists_each_input(tmp_path: Path) -> None:
    """The command dependencies.md shows (`inputs per_region -p 2026-01-01~eu`) lists the same region and the day."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "dependencies.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL) if "per_region" in b)
    deps = tmp_path / "dependencies.json"
    deps.write_text(block, encoding="utf-8")
    result = run("inputs", "per_region", "-p", "2026-01-01~eu", "--deps", str(deps))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "per_region 2026-01-01T00:00:00Z~eu waits for:",
        "  calendar [success]: 2026-01-01T00:00:00Z",
        "  regions [success]: 2026-01-01T00:00:00Z~eu",
    ]
    rollup = run("inputs", "daily_rollup", "-p", "2026-01-01", "--deps", str(deps))
    assert "hourly [success], 20 of 24 partitions: 2026-01-01T00:00:00Z," in rollup.stdout
