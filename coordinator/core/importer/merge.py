"""Merge an imported document into an existing ``dependencies.json``: the imported DAGs are replaced, the rest kept.

Rules:
- **Matched by meaning.** A DAG is matched by what its key means (instance and dag id), not by how the key is written:
  ``"etl"`` with ``"instance": "team_a"`` and ``"team_a/etl"`` are the same DAG. The existing key is kept as written.
- **The import decides.** For an imported DAG the import is the authority on ``partitions``, ``upstreams`` and
  ``data_interval`` (set, or removed when the folder says there are none); its ``description`` and ``instance`` as
  written by a person are kept. DAGs the folder does not have, and top-level ``instances``, are kept; instances the
  import needs are added.
- **Scheduled stays scheduled.** ``"runs"`` is set when the import says it (``--rewrite`` marks the DAGs whose sensors
  it replaced), else kept as written. A DAG the existing file has ``"runs": "scheduled"`` for, for which the import
  found no upstreams, keeps its ``upstreams`` and ``partitions``: its sensors became the permit's wait, which
  ``import-dags`` does not read, so importing the rewritten folder again must not take its edges away.
- **Extended form.** A shorthand file becomes the extended form (the same graph: the shorthand maps to exactly these
  entries).
- **Pure**: JSON values in, a JSON value out; the caller validates the result with the real loader and diffs it.
"""

from __future__ import annotations

from typing import Any

from coordinator.core.model import DEFAULT_INSTANCE, NODE_SEP, NodeId
from coordinator.core.spec.loader import FORM_KEYS, SPEC_VERSION

IMPORTED_FIELDS = ("partitions", "upstreams", "data_interval")


def _node(key: str, entry: Any) -> NodeId:
    if NODE_SEP in key:
        return NodeId.parse(key)
    instance = entry.get("instance") if isinstance(entry, dict) else None
    return NodeId(instance if isinstance(instance, str) else DEFAULT_INSTANCE, key)


def extended(existing: dict[str, Any]) -> dict[str, Any]:
    """The extended form of a valid document (**Extended form**)."""
    if any(k in existing for k in FORM_KEYS):
        return dict(existing)
    dags = {down: {"upstreams": [ups] if isinstance(ups, str) else list(ups)} for down, ups in existing.items()}
    return {"version": SPEC_VERSION, "dags": dags}


def merge(existing: dict[str, Any], imported: dict[str, Any]) -> dict[str, Any]:
    """``existing`` with the DAGs of ``imported`` replaced or added (**Matched by meaning**, **The import decides** and
    **Extended form**)."""
    result = extended(existing)
    dags: dict[str, Any] = dict(result.get("dags") or {})
    by_node = {_node(k, v): k for k, v in dags.items()}
    for key, entry in imported["dags"].items():
        node = _node(key, entry)
        found = by_node.get(node)
        if found is None:
            dags[key] = entry
            continue
        merged = dict(dags[found]) if isinstance(dags[found], dict) else {}
        if merged.get("runs") == "scheduled" and "upstreams" not in entry:
            continue  # **Scheduled stays scheduled**
        # a DAG is a dependent or a failure handler, never both (``spec.loader``'s **Dependent or handler**)
        if "upstreams" in entry:
            merged.pop("on_failure_of", None)
        for name in IMPORTED_FIELDS:
            if name in entry:
                merged[name] = entry[name]
            else:
                merged.pop(name, None)
        if "runs" in entry:
            merged["runs"] = entry["runs"]
        merged.setdefault("description", entry.get("description"))
        if merged.get("description") is None:
            merged.pop("description")
        dags[found] = merged
    instances = dict(result.get("instances") or {})
    for name, body in (imported.get("instances") or {}).items():
        instances.setdefault(name, body)
    out: dict[str, Any] = {k: v for k, v in result.items() if k not in ("instances", "dags")}
    out.setdefault("version", SPEC_VERSION)
    if instances:
        out["instances"] = instances
    out["dags"] = dags
    return out
