"""The ``"assets"`` section of ``dependencies.json``: which assets are shared with which instances (semantics rule
14a). Validated like edges: every problem is reported with its JSON path and a hint; an undeclared instance is an
error. Whether a consumer in the target schedules on the asset is checked against Airflow by ``validate --airflow``
(a warning: the event is not lost, nobody consumes it yet).

```json
"assets": [{"asset": "s3://lake/orders/*", "from": "team_a", "to": ["team_b"], "description": "..."}]
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from coordinator.core.assets import AssetRoute
from coordinator.core.spec.source import JsonPath

ROUTE_FIELDS = ("asset", "from", "to", "description")
ROUTE_HINT = '"assets": [{"asset": "s3://bucket/orders/*", "from": "team_a", "to": ["team_b"]}]'
#: Airflow's asset URI and name columns hold 1500 characters.
MAX_ASSET_LEN = 1500

Report = Callable[[JsonPath, str, str], None]


def read_routes(doc: Mapping[str, Any], instances: set[str], report: Report) -> tuple[AssetRoute, ...]:
    """The routes of ``doc["assets"]`` (none when absent); each problem goes to ``report(path, what, hint)``."""
    if "assets" not in doc:
        return ()
    value = doc["assets"]
    if not isinstance(value, list):
        report(("assets",), f"expected a list, got {type(value).__name__}", ROUTE_HINT)
        return ()
    routes: list[AssetRoute] = []
    for index, body in enumerate(value):
        route = _read_route(body, ("assets", index), instances, report)
        if route is not None:
            routes.append(route)
    return tuple(routes)


def _read_route(body: Any, path: JsonPath, instances: set[str], report: Report) -> AssetRoute | None:
    if not isinstance(body, dict):
        report(path, f"expected an object, got {type(body).__name__}", ROUTE_HINT)
        return None
    ok = True
    for key in body:
        if key not in ROUTE_FIELDS:
            report((*path, key), f"unknown field {key!r}", f"allowed: {', '.join(ROUTE_FIELDS)}")
            ok = False
    pattern = body.get("asset")
    if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > MAX_ASSET_LEN:
        report((*path, "asset"), "expected an asset URI or name (wildcards * ? [...] allowed)", ROUTE_HINT)
        ok = False
    source = body.get("from")
    if not isinstance(source, str) or source not in instances:
        report((*path, "from"), f"undeclared instance {source!r}", _declare_hint(instances))
        ok = False
    targets = body.get("to")
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets:
        report((*path, "to"), "expected a list of instances", ROUTE_HINT)
        return None
    for i, target in enumerate(targets):
        if not isinstance(target, str) or target not in instances:
            report((*path, "to", i), f"undeclared instance {target!r}", _declare_hint(instances))
            ok = False
        elif target == source:
            report(
                (*path, "to", str(i)),
                f"{target!r} is the route's own source",
                "an asset is shared with other instances",
            )
            ok = False
    if not ok:
        return None
    assert isinstance(pattern, str) and isinstance(source, str)
    return AssetRoute(pattern, source, tuple(dict.fromkeys(str(t) for t in targets)))


def _declare_hint(instances: set[str]) -> str:
    return f'declare it under "instances" (declared: {", ".join(sorted(instances))})'
