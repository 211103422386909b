"""Why the coordinator would trigger a DAG: the one list both kinds of upstream-only DAG are checked against (a node
an OpenLineage job runs, and a DAG of an external instance), so the two refusals can never disagree on what
"triggered by the coordinator" means."""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.core.graph import DagSpec


def level_handlers(specs: Iterable[DagSpec]) -> frozenset[str]:
    """The qualified name of every DAG a deadline level runs (the loader resolved the references)."""
    return frozenset(
        name
        for spec in specs
        if spec.expected_by is not None
        for level in spec.expected_by.levels
        for name in level.handlers
    )


def trigger_reasons(spec: DagSpec, handlers: frozenset[str]) -> list[str]:
    """What in the graph makes the coordinator trigger ``spec``'s DAG, in words (empty: nothing does)."""
    return [
        name
        for name, present in (
            ("upstreams", bool(spec.upstreams or spec.gates)),
            ("on_failure_of", bool(spec.on_failure_of)),
            ("on_late_of", bool(spec.on_late_of)),
            ("a deadline level names it as a handler", spec.node.qualified in handlers),
        )
        if present
    ]
