"""dependencies.json loading and validation (coordinator.core.spec.loader), its schema and its renderings."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.spec.cycles import Edge, acyclic, shortest_cycles
from coordinator.core.spec.loader import DAG_FIELDS, FORM_KEYS, INSTANCE_FIELDS, parse_spec
from coordinator.core.spec.near_misses import spec_warnings
from coordinator.core.spec.render import render_dot, render_mermaid, render_text
from coordinator.core.spec.schema import json_schema, schema_text
from coordinator.errors import SpecError
from coordinator.runtime.spec_file import load_spec

ROOT = Path(__file__).resolve().parent.parent
REPO_DEPS = ROOT / "dependencies.json"
SCHEMA_FILE = ROOT / "docs" / "dependencies.schema.json"

EXTENDED = {
    "version": 1,
    "instances": {"team_a": {"description": "ingestion"}, "team_b": {}},
    "dags": {
        "team_a/extract": {"description": "pulls the sources"},
        "transform": {"instance": "team_a", "upstreams": "extract"},
        "team_b/load": {"upstreams": ["team_a/transform"]},
        "report": {"upstreams": ["load", "calendar"]},
        "alert": {"on_failure_of": ["team_a/transform", "load"], "description": "pages the on-call"},
    },
}


def n(ref: str) -> NodeId:
    return NodeId.parse(ref)


def edges_of(graph: Graph) -> set[tuple[str, str, bool]]:
    """(source, target, failure) for every edge, with qualified names."""
    found = set()
    for spec in graph.dags.values():
        found |= {(up.qualified, spec.node.qualified, False) for up in spec.upstreams}
        found |= {(src.qualified, spec.node.qualified, True) for src in spec.on_failure_of}
    return found


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# ---- valid files ---------------------------------------------------------------------------------------------------


def test_repository_file_loads() -> None:
    """The committed dependencies.json is 7 DAGs and 9 edges with 01_pipeline as the only root."""
    graph = load_spec(REPO_DEPS)
    assert len(graph.dags) == 7
    assert graph.edge_count == 9
    assert graph.roots == (n("01_pipeline"),)
    assert graph.dags[n("06_pipeline")].upstreams == tuple(n(f"0{i}_pipeline") for i in (2, 3, 4, 5))
    assert graph.instances == frozenset({"default"})
    assert graph.source == str(REPO_DEPS)


def test_shorthand_loads_unchanged() -> None:
    """The proof of concept's shorthand: a string or a list per downstream, upstream-only DAGs become roots."""
    graph = parse_spec('{"02_pipeline": "01_pipeline", "06_pipeline": ["02_pipeline", "03_pipeline"]}', "deps.json")
    assert set(graph.dags) == {n("01_pipeline"), n("02_pipeline"), n("03_pipeline"), n("06_pipeline")}
    assert {node.instance for node in graph.dags} == {"default"}
    assert graph.roots == (n("01_pipeline"), n("03_pipeline"))
    assert graph.dags[n("06_pipeline")].upstreams == (n("02_pipeline"), n("03_pipeline"))
    assert graph.source == "deps.json"


def test_extended_form_with_instances_and_failure_routing() -> None:
    """Qualified keys, the instance field, bare and qualified references and on_failure_of resolve as documented."""
    graph = parse_spec(json.dumps(EXTENDED))
    assert graph.instances == frozenset({"default", "team_a", "team_b"})
    assert edges_of(graph) == {
        ("team_a/extract", "team_a/transform", False),
        ("team_a/transform", "team_b/load", False),
        ("team_b/load", "default/report", False),
        ("default/calendar", "default/report", False),
        ("team_a/transform", "default/alert", True),
        ("team_b/load", "default/alert", True),
    }
    assert graph.roots == (n("calendar"), n("team_a/extract"))
    assert graph.dags[n("alert")].is_failure_handler
    assert graph.dags[n("alert")].description == "pages the on-call"
    assert graph.dags[n("team_a/extract")].description == "pulls the sources"


def test_both_forms_of_one_graph_are_equal() -> None:
    """The shorthand and the extended form of the same dependencies give the same graph digest."""
    shorthand = parse_spec('{"b": "a", "c": ["a", "b"]}')
    extended = parse_spec(
        json.dumps({"version": 1, "dags": {"a": {}, "b": {"upstreams": "a"}, "c": {"upstreams": ["b", "default/a"]}}})
    )
    assert shorthand.dags == extended.dags
    assert shorthand.digest == extended.digest


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(
            {"version": 1, "dags": {"team_a/x": {"instance": "team_a"}}, "instances": {"team_a": {}}}, id="same"
        ),
        pytest.param({"$schema": "./docs/dependencies.schema.json", "version": 1, "dags": {}}, id="schema-key"),
        pytest.param(
            {"version": 1, "instances": {"default": {"description": "main"}}, "dags": {"x": {}}}, id="default"
        ),
        pytest.param({}, id="empty-object"),
    ],
)
def test_accepted_variants(doc: dict[str, Any]) -> None:
    """Redundant but consistent spellings, a $schema key, describing default and an empty object are valid."""
    assert isinstance(parse_spec(json.dumps(doc)), Graph)


def test_undeclared_bare_reference_is_a_default_root_even_beside_instances() -> None:
    """A bare reference to an undeclared DAG becomes a root in the default instance."""
    doc = {"version": 1, "instances": {"team_a": {}}, "dags": {"team_a/x": {"upstreams": "ingest"}}}
    graph = parse_spec(json.dumps(doc))
    assert graph.dags[n("team_a/x")].upstreams == (n("ingest"),)
    assert graph.dags[n("ingest")].is_root


def test_load_spec_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    """A UTF-8 BOM (added by some Windows editors) does not make the file invalid."""
    path = tmp_path / "deps.json"
    path.write_bytes(b'\xef\xbb\xbf{"b": "a"}')
    assert load_spec(path).edge_count == 1


# ---- invalid files -------------------------------------------------------------------------------------------------


def ext(dags: dict[str, Any], instances: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"version": 1, "dags": dags}
    if instances is not None:
        doc["instances"] = instances
    return json.dumps(doc, indent=2)


TWO_TEAMS: dict[str, Any] = {"team_a": {}, "team_b": {}}

BAD_INPUTS = [
    pytest.param("", ["dependencies.json: $: the file is empty", "write {}"], id="empty-file"),
    pytest.param(" \n\t\n", ["the file is empty"], id="whitespace-only"),
    pytest.param(
        '{\n  "b": "a",\n}\n',
        ["dependencies.json:3:1: invalid JSON", "no comma after the last entry"],
        id="trailing-comma",
    ),
    pytest.param('{"b": "a"\n "c": "a"}', ["dependencies.json:2:2: invalid JSON", "a comma is missing"], id="no-comma"),
    pytest.param("{'b': 'a'}", ["dependencies.json:1:2: invalid JSON", "double-quoted"], id="single-quotes"),
    pytest.param('["a", "b"]', ["$: the top level is an array, not an object", '"version": 1'], id="top-level-array"),
    pytest.param(
        '{\n  "b": "a",\n  "b": "c"\n}',
        ["dependencies.json:3: $.b: duplicate key 'b' (lines 2, 3)", "keeps only the last value"],
        id="duplicate-key",
    ),
    pytest.param(
        '{"version": 1, "dags": {\n"x": {\n"upstreams": "a",\n"upstreams": "b"}}}',
        ["dependencies.json:4: $.dags.x.upstreams: duplicate key 'upstreams' (lines 3, 4)", "merge them"],
        id="duplicate-nested-key",
    ),
    pytest.param(
        ext({"x": {"upsteam": ["a"]}}),
        ["$.dags.x.upsteam: unknown field 'upsteam'", "did you mean 'upstreams'?"],
        id="typo-field",
    ),
    pytest.param(
        ext({"x": {"on_failure": "a"}}), ["$.dags.x.on_failure: unknown field", "'on_failure_of'"], id="typo-failure"
    ),
    pytest.param(
        json.dumps({"version": 1, "dags": {}, "02_pipeline": "01_pipeline"}),
        ["$.02_pipeline: unknown field '02_pipeline'", 'DAGs are declared under "dags"'],
        id="shorthand-entry-in-extended",
    ),
    pytest.param(
        ext({"x": {"upstreams": 3}}),
        ["$.dags.x.upstreams: expected a dag id or a list of them, got 3", 'write "upstreams": "a"'],
        id="upstreams-number",
    ),
    pytest.param(
        ext({"x": {"upstreams": ["a", None]}}),
        ["$.dags.x.upstreams[1]: expected a dag id, got null", "quote it"],
        id="upstream-null",
    ),
    pytest.param(
        '{"b": {"upstreams": ["a"]}}',
        ["$.b: expected a dag id or a list of them, got an object", "need the extended form"],
        id="shorthand-object",
    ),
    pytest.param(
        ext({"x": {"upstreams": []}}),
        ["$.dags.x.upstreams: empty upstreams list", 'remove "upstreams" to declare a root'],
        id="empty-upstreams",
    ),
    pytest.param('{"b": []}', ["$.b: empty upstream list", "is a root and needs no entry"], id="empty-shorthand-list"),
    pytest.param(
        ext({"06_pipeline": {"upstreams": ["02_pipeline", "03_pipeline", "bad id"]}}),
        ["$.dags.06_pipeline.upstreams[2]: invalid dag id 'bad id'", "use letters, digits, '_', '.', '-'"],
        id="invalid-dag-id",
    ),
    pytest.param('{"my dag": "a"}', ["$[\"my dag\"]: invalid dag id 'my dag'", "use letters"], id="invalid-key"),
    pytest.param(
        json.dumps({"x" * 251: "a"}), ["is 251 characters long", "Airflow allows at most 250"], id="dag-id-too-long"
    ),
    pytest.param('{"a": ["b", "a"]}', ["$.a[1]: self-dependency: 'a' is this DAG", "remove it"], id="self-dependency"),
    pytest.param('{"a": ["b", "b"]}', ["$.a[1]: b is listed twice (also at $.a[0])", "remove one"], id="listed-twice"),
    pytest.param(
        '{"a": "c", "b": "a", "c": "b"}',
        ["$.a: cycle a -> b -> c -> a", "remove one of these dependencies"],
        id="cycle",
    ),
    pytest.param(
        ext({"alert": {"on_failure_of": "load"}, "load": {"upstreams": "alert"}}),
        ["$.dags.alert.on_failure_of: cycle alert -> load -(on failure)-> alert", "remove one"],
        id="cycle-through-failure-edge",
    ),
    pytest.param(
        ext({"etl": {"instance": "team_c"}}, TWO_TEAMS),
        ["$.dags.etl.instance: undeclared instance 'team_c'", 'declare it under "instances"', "team_a, team_b"],
        id="undeclared-instance",
    ),
    pytest.param(
        ext({"team_a/etl": {}}), ['$.dags["team_a/etl"]: undeclared instance', "declared: default"], id="undeclared-key"
    ),
    pytest.param(
        ext({"x": {"upstreams": "team_c/etl"}}, TWO_TEAMS),
        ["$.dags.x.upstreams: undeclared instance 'team_c' in 'team_c/etl'", "did you mean"],
        id="undeclared-in-reference",
    ),
    pytest.param(
        ext({"etl": {"instance": "team_a"}, "team_a/etl": {}}, TWO_TEAMS),
        ['$.dags["team_a/etl"]: DAG team_a/etl is declared twice (also at $.dags.etl)', "keep one"],
        id="declared-twice",
    ),
    pytest.param(
        ext({"team_a/etl": {}, "team_b/etl": {}, "x": {"upstreams": ["etl"]}}, TWO_TEAMS),
        ["$.dags.x.upstreams[0]: ambiguous reference 'etl'", "qualify it as team_a/etl or team_b/etl"],
        id="ambiguous",
    ),
    pytest.param(
        json.dumps({"version": 2, "dags": {}}),
        ["$.version: unsupported version 2", "reads version 1"],
        id="unsupported-version",
    ),
    pytest.param(
        json.dumps({"version": "1", "dags": {}}),
        ['$.version: expected the number 1, got "1"', "unquoted"],
        id="version-string",
    ),
    pytest.param('{"dags": {}}', ['$: missing "version"', 'add "version": 1'], id="missing-version"),
    pytest.param('{"version": 1}', ['$: missing "dags"', 'add "dags"'], id="missing-dags"),
    pytest.param(
        ext({"x": {"upstreams": "a", "on_failure_of": "b"}}),
        ['$.dags.x: both "upstreams" and "on_failure_of"', "declare a separate DAG"],
        id="upstreams-and-on-failure-of",
    ),
    pytest.param(
        ext({}, {"team_a": {"url": "https://airflow.example"}}),
        ["$.instances.team_a.url: connection setting 'url'", "instances settings file"],
        id="url-in-instance",
    ),
    pytest.param(
        ext({}, {"team_a": {"password": "hunter2"}}),
        ["$.instances.team_a.password: connection setting", "environment"],
        id="password-in-instance",
    ),
    pytest.param(
        ext({"x": {"conn_id": "airflow_b"}}),
        ["$.dags.x.conn_id: connection setting", "settings file"],
        id="conn-in-dag",
    ),
    pytest.param(
        '{"b": "team_a/a"}',
        ["$.b: qualified reference 'team_a/a' in the shorthand form", "use the extended form"],
        id="qualified-in-shorthand",
    ),
    pytest.param(
        ext({"team_a/etl": {"instance": "team_b"}}, TWO_TEAMS),
        ["$.dags[\"team_a/etl\"].instance: instance 'team_b' contradicts the key's instance 'team_a'", "remove"],
        id="instance-contradicts-key",
    ),
    pytest.param(
        ext({}, {"team a": {}}), ['$.instances["team a"]: invalid instance name', "use letters"], id="bad-instance"
    ),
    pytest.param(
        json.dumps({"version": 1, "instances": ["team_a"], "dags": {}}),
        ["$.instances: expected an object, got an array", '"team_a": {"description"'],
        id="instances-array",
    ),
    pytest.param(
        ext({"x": "a"}), ['$.dags.x: expected an object, got "a"', "shorthand cannot be mixed in"], id="dag-as-string"
    ),
    pytest.param(
        ext({"x": {"description": 3}}), ["$.dags.x.description: expected a string, got 3", "quote"], id="description"
    ),
    pytest.param(
        ext({}, {"team_a": {"descripton": "x"}}),
        ["$.instances.team_a.descripton: unknown field", "did you mean 'description'?"],
        id="instance-typo",
    ),
]


@pytest.mark.parametrize(("text", "pieces"), BAD_INPUTS)
def test_bad_input_is_reported_with_path_problem_and_hint(text: str, pieces: list[str]) -> None:
    """Each invalid input yields one problem line holding the location, what is wrong and the fix hint."""
    problems = problems_of(text)
    matching = [p for p in problems if all(piece in p for piece in pieces)]
    assert matching, f"no problem contains all of {pieces}: {problems}"
    assert all(p.startswith("dependencies.json") and " — " in p for p in problems)


def test_every_problem_of_a_file_is_reported() -> None:
    """Validation does not stop at the first problem: a file with five distinct problems lists all five."""
    text = ext(
        {
            "a": {"upsteam": "b"},
            "b": {"upstreams": ["c", "bad id"]},
            "c": {"upstreams": "b"},
            "d": {"instance": "nowhere"},
            "e": {"upstreams": []},
        }
    )
    problems = problems_of(text)
    expected = [
        "unknown field 'upsteam'",
        "invalid dag id 'bad id'",
        "cycle b -> c -> b",
        "'nowhere'",
        "empty upstreams",
    ]
    assert len(problems) == len(expected)
    for piece in expected:
        assert sum(piece in problem for problem in problems) == 1, piece
    lines = [int(problem.split(":")[1]) for problem in problems]
    assert lines == sorted(lines)


def test_problems_carry_the_line_of_the_value() -> None:
    """A problem inside the document is prefixed with the line of the offending value."""
    text = '{\n  "version": 1,\n  "dags": {\n    "x": {\n      "upstreams": ["a",\n        "bad id"]\n    }\n  }\n}'
    assert problems_of(text) == [
        "dependencies.json:6: $.dags.x.upstreams[1]: invalid dag id 'bad id' — use letters, digits, '_', '.', '-'"
    ]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    """An absent file raises SpecError naming the path and how to point at another one."""
    with pytest.raises(SpecError, match=r"nope\.json: cannot read the file: .* — check the path"):
        load_spec(tmp_path / "nope.json")


def test_non_utf8_file_is_a_spec_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 raises SpecError with the byte offset."""
    path = tmp_path / "deps.json"
    path.write_bytes(b'{"b": "\xff"}')
    with pytest.raises(SpecError, match=r"byte 7: not UTF-8 text — save the file as UTF-8"):
        load_spec(path)


def test_long_chain_with_back_edge_is_reported_without_recursion_error() -> None:
    """Cycle detection is iterative: a 3000-DAG chain closed into a loop is reported, not a RecursionError."""
    doc = {f"d{i}": f"d{i - 1}" for i in range(1, 3000)}
    doc["d0"] = "d2999"
    (problem,) = problems_of(json.dumps(doc))
    assert "cycle d0 -> d1 -> d2 -> " in problem
    assert "-> d2999 -> d0 — " in problem


# ---- property tests ------------------------------------------------------------------------------------------------

# "." and ".." are path segments, never names (coordinator.core.model.NAME_RE).
dag_ids = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True).filter(lambda s: s not in (*FORM_KEYS, ".", ".."))


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[list[str], set[tuple[int, int]]]:
    """Distinct names and edges (i, j) with i < j: names[i] is an upstream of names[j], so it is acyclic."""
    names = draw(st.lists(dag_ids, min_size=2, max_size=10, unique=True))
    pairs = st.tuples(st.integers(0, len(names) - 1), st.integers(0, len(names) - 1)).filter(lambda p: p[0] < p[1])
    return names, draw(st.sets(pairs, min_size=1, max_size=25))


def shorthand(names: list[str], edges: set[tuple[int, int]], single_as_string: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for up, down in sorted(edges):
        doc.setdefault(names[down], []).append(names[up])
    if single_as_string:
        doc = {key: value[0] if len(value) == 1 else value for key, value in doc.items()}
    return doc


@settings(deadline=None)
@given(random_dags(), st.booleans())
def test_random_acyclic_shorthand_round_trips(dag: tuple[list[str], set[tuple[int, int]]], as_string: bool) -> None:
    """Any acyclic graph written in the shorthand loads back with exactly its edges, all in the default instance."""
    names, edges = dag
    graph = parse_spec(json.dumps(shorthand(names, edges, as_string)))
    expected = {(f"default/{names[up]}", f"default/{names[down]}", False) for up, down in edges}
    assert edges_of(graph) == expected
    assert set(graph.dags) == {n(names[i]) for edge in edges for i in edge}


def reachable(edges: set[tuple[int, int]], start: int) -> set[int]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for up, down in edges:
            if up == node and down not in seen:
                seen.add(down)
                todo.append(down)
    return seen


@settings(deadline=None)
@given(random_dags(), st.data())
def test_any_back_edge_is_reported_as_a_cycle(dag: tuple[list[str], set[tuple[int, int]]], data: st.DataObject) -> None:
    """Making an upstream depend on any DAG downstream of it is reported as a cycle made of real edges."""
    names, edges = dag
    start = data.draw(st.sampled_from(sorted({up for up, _ in edges})))
    target = data.draw(st.sampled_from(sorted(reachable(edges, start))))
    doc = shorthand(names, edges | {(target, start)}, single_as_string=False)
    cycles = [p for p in problems_of(json.dumps(doc)) if ": cycle " in p]
    assert len(cycles) == 1
    loop = cycles[0].split(": cycle ")[1].split(" — ")[0].split(" -> ")
    assert loop[0] == loop[-1]
    index = {name: i for i, name in enumerate(names)}
    all_edges = edges | {(target, start)}
    assert all((index[a], index[b]) in all_edges for a, b in itertools.pairwise(loop))


@settings(deadline=None)
@given(st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20))
def test_the_quick_acyclic_check_agrees_with_the_ordered_search(pairs: set[tuple[int, int]]) -> None:
    """``acyclic`` (the linear check every file gets) says no cycle exactly when the ordered search finds no cycle of
    two or more DAGs and no DAG depends on itself: a file without cycles skips that search and loses no report."""
    nodes = [NodeId("default", f"d{i}") for i in range(8)]
    edges = [Edge(nodes[a], nodes[b], False, ("dags", nodes[b].dag_id)) for a, b in sorted(pairs)]
    out: dict[NodeId, list[Edge]] = {node: [e for e in edges if e.source == node] for node in nodes}
    assert acyclic(nodes, edges) == (not shortest_cycles(out) and all(a != b for a, b in pairs))


# ---- schema and rendering ------------------------------------------------------------------------------------------


def test_committed_schema_is_current() -> None:
    """docs/dependencies.schema.json equals the schema the code generates."""
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text()


def test_schema_fields_match_the_loader() -> None:
    """The schema allows exactly the fields the loader allows."""
    defs = json_schema()["$defs"]
    assert tuple(defs["dag"]["properties"]) == DAG_FIELDS
    assert tuple(defs["instance"]["properties"]) == INSTANCE_FIELDS


@pytest.mark.parametrize(
    ("doc", "valid"),
    [
        pytest.param(json.loads(REPO_DEPS.read_text(encoding="utf-8")), True, id="repository-file"),
        pytest.param(EXTENDED, True, id="extended"),
        pytest.param({"version": 1, "dags": {"x": {"upstreams": "a", "on_failure_of": "b"}}}, False, id="both-fields"),
        pytest.param({"version": 1, "instances": {"a": {"url": "http://x"}}, "dags": {}}, False, id="url"),
        pytest.param({"b": {"upstreams": "a"}}, False, id="object-in-shorthand"),
        pytest.param({"version": 2, "dags": {}}, False, id="version-2"),
    ],
)
def test_schema_agrees_with_the_loader_on_shape(doc: dict[str, Any], valid: bool) -> None:
    """The schema is valid draft 2020-12 and accepts or rejects these documents as the loader does."""
    jsonschema = pytest.importorskip("jsonschema")
    validator_cls = jsonschema.Draft202012Validator
    validator_cls.check_schema(json_schema())
    assert validator_cls(json_schema()).is_valid(doc) is valid
    try:
        parse_spec(json.dumps(doc))
        loaded = True
    except SpecError:
        loaded = False
    assert loaded is valid


def test_documented_examples_are_valid() -> None:
    """Every JSON example in docs/dependencies.md loads, and draws no warning from validate's checks (an example a
    reader copies must not be one `coordinator validate` warns about)."""
    text = (ROOT / "docs" / "dependencies.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        graph = parse_spec(block, "docs/dependencies.md")
        assert graph.dags
        assert [w.format("docs/dependencies.md") for w in spec_warnings(graph)] == []


def test_text_rendering_lists_each_dag_with_its_sources() -> None:
    """Text output is one line per DAG in dependency order; roots and failure handlers are marked."""
    text = render_text(parse_spec(json.dumps(EXTENDED)))
    assert text.splitlines() == [
        "calendar (root)",
        "team_a/extract (root)  # pulls the sources",
        "team_a/transform <- team_a/extract",
        "team_b/load <- team_a/transform",
        "alert <- on failure of team_a/transform, team_b/load  # pages the on-call",
        "report <- calendar, team_b/load",
    ]


def test_mermaid_uses_subgraphs_and_dashed_failure_edges() -> None:
    """Mermaid output groups instances into subgraphs and draws failure routing as a labelled dashed edge."""
    text = render_mermaid(parse_spec(json.dumps(EXTENDED)))
    assert text.startswith("flowchart LR\n")
    assert "subgraph i1 [team_a]" in text
    assert text.count(" -. on failure .-> ") == 2
    assert text.count(" --> ") == 4


def test_dot_uses_clusters_and_dashed_failure_edges() -> None:
    """Dot output has one cluster per instance and dashed, labelled failure edges."""
    text = render_dot(parse_spec(json.dumps(EXTENDED)))
    assert text.count("subgraph cluster_") == 3
    assert '"team_a/transform" -> "default/alert" [style=dashed, label="on failure"];' in text
    assert '"team_a/extract" -> "team_a/transform";' in text


def test_single_instance_renderings_have_no_subgraphs() -> None:
    """With every DAG in one instance, neither Mermaid nor dot draws an instance box."""
    graph = load_spec(REPO_DEPS)
    assert "subgraph" not in render_mermaid(graph)
    assert "subgraph" not in render_dot(graph)
