"""The "openlineage" section of dependencies.json (semantics rule 18a): entries are read into LineageJob values and
every problem is refused with its JSON path and line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordinator.core.grid import Grid
from coordinator.core.lineage.mapping import LineageJob, PartitionSource, Slot
from coordinator.core.spec.lineage import LINEAGE_FIELDS
from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.schema import json_schema
from coordinator.errors import SpecError

DAILY = {"cron": "0 0 * * *"}
HOURLY = {"cron": "0 * * * *"}
#: The line opening an entry of "openlineage" (``spec`` writes one value a line).
ENTRY = "  {"
ORDERS = {"namespace": "dbt_prod", "job": "jaffle.main.jaffle.orders.build.run", "instance": "analytics"}


def spec(entries: object, dags: dict[str, Any] | None = None) -> str:
    """A file with the instances analytics and team_b, ``dags`` and ``entries`` under "openlineage", one value a
    line (so every value's line can be found)."""
    doc = {
        "version": 1,
        "instances": {"analytics": {}, "team_b": {}},
        "dags": dags if dags is not None else {},
        "openlineage": entries,
    }
    return json.dumps(doc, indent=1)


def jobs(entries: object, dags: dict[str, Any] | None = None) -> tuple[LineageJob, ...]:
    return parse_spec(spec(entries, dags)).lineage_jobs


def problems(entries: object, dags: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec(entries, dags), "deps.json")
    return list(caught.value.problems)


def line_of(text: str, marker: str) -> int:
    """The 1-based line of the last line of ``text`` containing ``marker`` ("openlineage" comes after "dags", so
    the last is the entry's), or equal to it for an entry's opening brace."""
    rows = enumerate(text.splitlines(), start=1)
    return [i for i, row in rows if (row == marker if marker == ENTRY else marker in row)][-1]


# ---- valid files -------------------------------------------------------------------------------------------------


def test_the_nodes_own_grid_is_the_entrys() -> None:
    """An entry with "dag" takes the grid the node declares, with the defaults auto and previous and its index."""
    dags = {"analytics/orders": {"partitions": DAILY}}
    (job,) = jobs([{**ORDERS, "dag": "orders"}], dags)
    assert job == LineageJob(
        "dbt_prod", ORDERS["job"], "analytics", "orders", PartitionSource.AUTO, Slot.PREVIOUS, Grid("0 0 * * *"), 0
    )


def test_an_entry_repeating_the_nodes_grid_is_accepted() -> None:
    """Entry partitions equal to the node's (a preset for the same cron included) are not a conflict."""
    dags = {"analytics/orders": {"partitions": DAILY}}
    (job,) = jobs([{**ORDERS, "dag": "orders", "partitions": {"cron": "@daily"}}], dags)
    assert job.grid == Grid("0 0 * * *")


def test_the_entrys_grid_places_a_node_without_one() -> None:
    """Without a grid on the node (declared without one, or not in the file), the entry's partitions are the grid."""
    entries = [
        {**ORDERS, "dag": "orders", "partitions": {"cron": "0 * * * *", "timezone": "Europe/Berlin"}},
        {**ORDERS, "job": "other", "dag": "elsewhere", "partitions": DAILY},
    ]
    first, second = jobs(entries, {"analytics/orders": {}})
    assert first.grid == Grid("0 * * * *", "Europe/Berlin")
    assert (second.grid, second.index, second.dag) == (Grid("0 0 * * *"), 1, "elsewhere")


def test_nominal_needs_no_grid_and_slot_current_is_kept() -> None:
    """ "partition": "nominal" loads without any grid; "slot": "current" is carried as written."""
    (job,) = jobs([{**ORDERS, "dag": "orders", "partition": "nominal", "slot": "current", "description": "dbt"}])
    assert (job.partition, job.slot, job.grid) == (PartitionSource.NOMINAL, Slot.CURRENT, None)


def test_a_literal_job_that_is_a_dag_id_names_its_node() -> None:
    """Without "dag", a job name that is a valid dag id is the node, and that node's grid is used."""
    (job,) = jobs([{"namespace": "spark", "job": "export_orders", "instance": "analytics"}],
                  {"analytics/export_orders": {"partitions": HOURLY}})  # fmt: skip
    assert (job.dag, job.grid) == (None, Grid("0 * * * *"))
    node = job.node_for("export_orders")
    assert node is not None and node.qualified == "analytics/export_orders"


def test_a_wildcard_job_with_matching_nodes_of_the_same_grid_loads() -> None:
    """A wildcard job maps the instance's matching DAGs; those declaring the entry's grid (or none) are fine."""
    dags = {
        "analytics/export_orders": {"partitions": DAILY},
        "analytics/export_misc": {},
        "team_b/export_x": {"partitions": HOURLY, "upstreams": "other"},  # another instance: not mapped
        "analytics/report": {"upstreams": "export_orders"},  # does not match the pattern
    }
    (job,) = jobs([{"namespace": "spark-*", "job": "export_*", "instance": "analytics", "partitions": DAILY}], dags)
    assert (job.job, job.dag, job.grid) == ("export_*", None, Grid("0 0 * * *"))


def test_entries_keep_file_order_and_do_not_change_the_digest() -> None:
    """Entries are kept in file order (rule 1: first match wins) and never enter the digest (no DAG becomes due)."""
    entries = [{**ORDERS, "dag": "orders", "partitions": DAILY}, {**ORDERS, "job": "*", "partitions": DAILY}]
    graph = parse_spec(spec(entries))
    assert [(j.job, j.index) for j in graph.lineage_jobs] == [(ORDERS["job"], 0), ("*", 1)]
    assert graph.digest == parse_spec(spec([])).digest and graph != parse_spec(spec([]))


def test_the_schema_allows_exactly_the_loaders_fields() -> None:
    """The schema's entry has the loader's fields, accepts a valid file and refuses an unknown field."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    assert tuple(schema["$defs"]["lineageJob"]["properties"]) == LINEAGE_FIELDS
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(json.loads(spec([{**ORDERS, "dag": "orders", "partitions": DAILY}])))
    assert not validator.is_valid(json.loads(spec([{**ORDERS, "nmespace": "x"}])))


# ---- problems ----------------------------------------------------------------------------------------------------

GATED = {"partitions": DAILY, "upstreams": [{"dag": "orders", "offset": -1}]}
LEVELS = {"after_end": "2h", "levels": [{"name": "page", "handlers": ["analytics/orders"]}]}


@pytest.mark.parametrize(
    ("entries", "dags", "path", "marker", "message"),
    [
        pytest.param({"job": "x"}, {}, "$.openlineage", '"openlineage": {', "expected a list", id="not-a-list"),
        pytest.param(["x"], {}, "$.openlineage[0]", '  "x"', "expected an object", id="entry-not-an-object"),
        pytest.param(
            [{"job": "x", "instance": "analytics", "partition": "nominal"}], {}, "$.openlineage[0]",
            ENTRY, 'missing "namespace"', id="missing-namespace",
        ),
        pytest.param(
            [{**ORDERS, "job": " ", "partition": "nominal"}], {}, "$.openlineage[0].job",
            '"job": " "', "expected a non-empty job pattern", id="blank-job",
        ),
        pytest.param(
            [{**ORDERS, "job": "a\nb", "partition": "nominal"}], {}, "$.openlineage[0].job",
            '"job": "a\\nb"', "control character in the job pattern", id="newline-in-job",
        ),
        pytest.param(
            [{**ORDERS, "namespace": "n" * 1001, "partition": "nominal"}], {}, "$.openlineage[0].namespace",
            '"namespace": "nnn', "is 1001 characters long", id="namespace-too-long",
        ),
        pytest.param(
            [{**ORDERS, "nmespace": "x", "partition": "nominal"}], {}, "$.openlineage[0].nmespace",
            '"nmespace"', "unknown field 'nmespace' — did you mean 'namespace'?", id="typo",
        ),
        pytest.param(
            [{**ORDERS, "instance": "analytcs", "partition": "nominal"}], {}, "$.openlineage[0].instance",
            '"instance": "analytcs"', "undeclared instance \"analytcs\" — declare it under \"instances\"",
            id="undeclared-instance",
        ),
        pytest.param(
            [{"namespace": "n", "job": "x", "partition": "nominal"}], {}, "$.openlineage[0]",
            ENTRY, 'missing "instance"', id="missing-instance",
        ),
        pytest.param(
            [{**ORDERS, "dag": "analytics/orders", "partition": "nominal"}], {}, "$.openlineage[0].dag",
            '"dag": "analytics/orders"', "invalid dag id", id="qualified-dag",
        ),
        pytest.param(
            [{**ORDERS, "dag": "o", "partition": "always"}], {}, "$.openlineage[0].partition",
            '"partition": "always"', 'expected "auto" or "nominal", got "always"', id="bad-partition",
        ),
        pytest.param(
            [{**ORDERS, "dag": "o", "partition": "nominal", "slot": "next"}], {}, "$.openlineage[0].slot",
            '"slot": "next"', 'expected "previous" or "current", got "next"', id="bad-slot",
        ),
        pytest.param(
            [{**ORDERS, "dag": "o", "partitions": {"cron": "0 0 * *"}}], {}, "$.openlineage[0].partitions.cron",
            '"cron": "0 0 * *"', "invalid cron", id="bad-cron",
        ),
        pytest.param(
            [{**ORDERS, "dag": "o", "partition": "nominal", "description": 3}], {}, "$.openlineage[0].description",
            '"description": 3', "expected a string", id="description-not-a-string",
        ),
        pytest.param(
            [{**ORDERS, "dag": "orders", "partitions": HOURLY}], {"analytics/orders": {"partitions": DAILY}},
            "$.openlineage[0].partitions", '"partitions": {',
            "these partitions (0 * * * *) differ from those of analytics/orders (0 0 * * *)", id="grid-differs",
        ),
        pytest.param(
            [{**ORDERS, "dag": "orders"}], {"analytics/orders": {}}, "$.openlineage[0]", ENTRY,
            '"partition": "auto" without a grid: a run event without a nominalTime facet (dbt-ol sends none)',
            id="auto-without-grid",
        ),
        pytest.param(
            [{**ORDERS, "job": "jaffle.*"}], {"analytics/jaffle.x": {"partitions": DAILY}}, "$.openlineage[0]",
            ENTRY, 'declare "partitions": {"cron": ...} on this entry', id="auto-wildcard-without-grid",
        ),
        pytest.param(
            [{**ORDERS, "job": "orders/run", "partition": "nominal"}], {}, "$.openlineage[0].job",
            '"job": "orders/run"', 'is not a dag id, and without "dag" it names the node — add "dag"',
            id="literal-job-not-a-dag-id",
        ),
        pytest.param(
            [{**ORDERS, "job": "export_*", "partitions": HOURLY}], {"analytics/export_a": {"partitions": DAILY}},
            "$.openlineage[0].partitions", '"partitions": {', "differ from those of analytics/export_a",
            id="wildcard-node-grid-differs",
        ),
        pytest.param(
            [{**ORDERS, "dag": "orders"}], {"analytics/orders": {"partitions": DAILY, "upstreams": "a"}},
            "$.openlineage[0].dag", '"dag": "orders"',
            "analytics/orders is mapped by openlineage[0] but the coordinator would trigger it (upstreams)",
            id="node-with-upstreams",
        ),
        pytest.param(
            [{**ORDERS, "dag": "orders"}], {"analytics/orders": {"partitions": DAILY, "on_failure_of": "a"}},
            "$.openlineage[0].dag", '"dag": "orders"', "would trigger it (on_failure_of)", id="failure-handler",
        ),
        pytest.param(
            [{**ORDERS, "dag": "orders"}], {"analytics/orders": GATED}, "$.openlineage[0].dag", '"dag": "orders"',
            "would trigger it (upstreams)", id="self-dependency",
        ),
        pytest.param(
            [{**ORDERS, "dag": "orders"}], {"analytics/orders": {"partitions": DAILY, "on_late_of": "a"}},
            "$.openlineage[0].dag", '"dag": "orders"', "would trigger it (on_late_of)", id="late-handler",
        ),
        pytest.param(
            [{**ORDERS, "dag": "orders"}],
            {"analytics/orders": {"partitions": DAILY}, "a": {"expected_by": LEVELS}},
            "$.openlineage[0].dag", '"dag": "orders"', "(a deadline level names it as a handler)",
            id="level-handler",
        ),
        pytest.param(
            [{**ORDERS, "job": "exp?rt_*", "partitions": DAILY}],
            {"analytics/export_a": {"upstreams": "team_b/x"}},
            "$.openlineage[0].job", '"job": "exp?rt_*"',
            "analytics/export_a is mapped by openlineage[0] but the coordinator would trigger it (upstreams)",
            id="wildcard-node-with-upstreams",
        ),
        pytest.param(
            [{**ORDERS, "dag": "a", "partition": "nominal"}, {**ORDERS, "dag": "b", "partition": "nominal"}], {},
            "$.openlineage[1]", ENTRY, "the same namespace and job patterns as $.openlineage[0]: this entry never "
            "matches", id="duplicate-patterns",
        ),
    ],
)  # fmt: skip
def test_each_problem_is_refused_with_its_path_and_line(
    entries: object, dags: dict[str, Any], path: str, marker: str, message: str
) -> None:
    """Each problem of an entry is reported at its JSON path and the line of that value, saying what is wrong."""
    text = spec(entries, dags)
    found = [p for p in problems(entries, dags) if f": {path}: " in p]
    assert found, problems(entries, dags)
    (problem,) = found
    assert message in problem
    assert problem.startswith(f"deps.json:{line_of(text, marker)}: {path}: ")


def test_every_problem_of_one_entry_is_reported_at_once() -> None:
    """An entry with several mistakes reports each of them, and the file does not load."""
    found = problems([{"namespace": "", "job": "x", "instance": "nowhere", "slot": "later"}])
    assert [p.split(": ")[1] for p in found] == [
        "$.openlineage[0].namespace",
        "$.openlineage[0].instance",
        "$.openlineage[0].slot",
    ]


def test_the_openlineage_key_is_a_dag_in_the_shorthand() -> None:
    """In the shorthand form "openlineage" is an ordinary DAG key (the section exists only in the extended form)."""
    graph = parse_spec(json.dumps({"openlineage": "a"}))
    assert graph.lineage_jobs == () and {n.dag_id for n in graph.dags} == {"openlineage", "a"}
