"""The words ``why`` prints that the guides quote are the words it prints: ``docs/howto/doctor.md``'s "Ask why"
session (a rerun's reason and the line of a run in flight) and ``docs/dependencies.md``'s group lines, each rebuilt
here on the graph the page shows (revision numbers apart: a real store's are its own)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coordinator.core.model import RunRecord, RunState, dump_record
from coordinator.core.spec.loader import parse_spec
from coordinator.explain.report import why
from tests.support.world import P1, SEVEN, World, n

DOCS = Path(__file__).resolve().parent.parent / "docs"
RUN = "scheduled__2026-01-01T00:00:00+00:00"


def _revisions(text: str) -> str:
    return re.sub(r"revision \d+", "revision N", text)


def _why(world: World, dag: str) -> list[str]:
    return why(world.graph, world.plan([P1]), n(dag), P1, world.view, world.clock)


def test_the_ask_why_session_is_what_why_prints() -> None:
    """01 cleared and succeeded again, 02, 04, 05 rerun and 03 not yet: why 06 and why 03 (then running) print the
    session of doctor.md's "Ask why" line for line."""
    page = (DOCS / "howto" / "doctor.md").read_text(encoding="utf-8")
    block = page.split("## Ask why", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS, RUN)
    world.settle()
    world.state("01_pipeline", P1, RunState.SUCCESS, RUN, clear_number=1)
    for action in world.plan().actions:
        if action.node != n("03_pipeline"):
            world.apply_action(action)
    for dag in ("02_pipeline", "04_pipeline", "05_pipeline"):
        world.start(dag, P1)
        world.finish(dag, P1)
    printed = ["$ coordinator status --partition 2026-01-01", "$ coordinator why 06_pipeline --partition 2026-01-01"]
    printed += _why(world, "06_pipeline")
    world.act()
    world.start("03_pipeline", P1)
    printed += ["$ coordinator why 03_pipeline --partition 2026-01-01", *_why(world, "03_pipeline")]
    assert _revisions(block).splitlines() == [_revisions(line) for line in printed]


def _lands(world: World, dag: str, end: datetime) -> None:
    record = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{dag}", start_date=end, end_date=end)
    world.write(world.keys.run_key(n(dag), P1), dump_record(record))


def _run(world: World) -> None:
    world.act()
    for node, partition in world.queued():
        world.start(node.dag_id, partition)
        world.finish(node.dag_id, partition)


def _world(group: dict[str, Any]) -> World:
    instances = {name: {} for name in ("eu", "us", "apac", "latam")}
    dags = {"global_rollup": {"upstreams": [group]}}
    world = World(parse_spec(json.dumps({"version": 1, "instances": instances, "dags": dags})))
    world.adopt()
    return world


def _group_lines(world: World) -> list[str]:
    return [line.strip() for line in _why(world, "global_rollup")[1:]]


def test_the_group_lines_dependencies_md_quotes_are_printed() -> None:
    """Every group line the condition-groups section quotes is printed by why for the groups it shows: 3 of the 4
    loads; the 3 loads with a cutoff at 6h and a minimum of 2, before and after the late load's rerun."""
    page = (DOCS / "dependencies.md").read_text(encoding="utf-8")
    bullet = page.split("- `coordinator why D -p P` (and `status`", 1)[1].split("The\n  page draws", 1)[0]
    quoted = [" ".join(q.split()) for q in re.findall(r"`([^`]+)`", bullet) if " of " in q or "all 3" in q]
    printed: list[str] = []
    loads = _world({"at_least": 3, "of": ["eu/load", "us/load", "apac/load", "latam/load"]})
    for dag in ("eu/load", "us/load", "apac/load"):
        loads.state(dag, P1, RunState.SUCCESS)
    loads.state("latam/load", P1, RunState.FAILED)
    printed += _group_lines(loads)
    three = {"all": ["eu/load", "us/load", "apac/load"], "cutoff": "6h", "min": 2}
    short = _world(three)
    _lands(short, "eu/load", datetime(2026, 1, 1, 5, tzinfo=UTC))
    short.clock = datetime(2026, 1, 1, 7, tzinfo=UTC)
    printed += _group_lines(short)
    late = _world(three)
    _lands(late, "eu/load", datetime(2026, 1, 1, 5, tzinfo=UTC))
    _lands(late, "us/load", datetime(2026, 1, 1, 5, 30, tzinfo=UTC))
    late.clock = datetime(2026, 1, 1, 6, tzinfo=UTC)
    _run(late)
    late.clock = datetime(2026, 1, 1, 8, tzinfo=UTC)
    _lands(late, "apac/load", datetime(2026, 1, 1, 7, 45, tzinfo=UTC))
    printed += _group_lines(late)
    _run(late)
    printed += _group_lines(late)
    assert len(quoted) == 4, quoted
    assert [q for q in quoted if q not in printed] == [], printed


def _plain_world(group: dict[str, Any]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": {"d": {"upstreams": [group]}}})))
    world.adopt()
    return world


def _plain_lines(world: World) -> list[str]:
    lines = why(world.graph, world.plan([P1]), n("d"), P1, world.view, world.clock)
    return [line.strip().replace(P1, "P") for line in lines[1:]]


def test_the_group_lines_semantics_quotes_are_printed() -> None:
    """Every group line (or part of one) semantics.md's **Explained** quotes is printed by why: any of a, b; 2 of eu,
    us, apac; 3 of 4 regions with a cutoff at 6h and a minimum of 2, through its cutoff and a late member's rerun."""
    page = (DOCS / "semantics.md").read_text(encoding="utf-8")
    paragraph = page.split("**Explained.** ", 1)[1].split("`status --format json` rows", 1)[0]
    spans = [" ".join(q.split()) for q in re.findall(r"`([^`]+)`", paragraph)]
    words = [part.strip() for q in spans for part in q.split("...") if part.strip()]
    quoted = [q for q in words if " " in q and q != "why D -p P"]  # `min`, `ignored`: a field and a word, no line
    printed = _plain_lines(_plain_world({"any": ["a", "b"]}))
    pair = _plain_world({"at_least": 2, "of": ["eu", "us", "apac"]})
    pair.state("eu", P1, RunState.SUCCESS)
    printed += _plain_lines(pair)
    pair.state("us", P1, RunState.SUCCESS)
    pair.state("apac", P1, RunState.FAILED)
    printed += _plain_lines(pair)
    regions = _plain_world({"at_least": 3, "of": ["eu", "us", "apac", "latam"], "cutoff": "6h", "min": 2})
    regions.clock = datetime(2026, 1, 1, 5, tzinfo=UTC)
    printed += _plain_lines(regions)
    _lands(regions, "eu", datetime(2026, 1, 1, 4, tzinfo=UTC))
    _lands(regions, "us", datetime(2026, 1, 1, 5, tzinfo=UTC))
    regions.clock = datetime(2026, 1, 1, 7, tzinfo=UTC)
    printed += _plain_lines(regions)
    _run(regions)
    _lands(regions, "apac", datetime(2026, 1, 1, 8, tzinfo=UTC))
    regions.clock = datetime(2026, 1, 1, 9, tzinfo=UTC)
    printed += _plain_lines(regions)
    _run(regions)
    printed += _plain_lines(regions)
    assert len(quoted) == 9, quoted
    assert [q for q in quoted if not any(q in line for line in printed)] == [], printed
