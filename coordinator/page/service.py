"""Serve the dependencies page: read one snapshot of etcd, plan, render. No web framework and no Airflow here.

Rules:
1. Read-only: one snapshot of ``{prefix}/`` per request, never a write; the same ``plan`` and ``why`` as
   ``coordinator status``.
2. The graph drawn is the one the leading watcher adopted (``{prefix}/config/graph`` records every DAG's sources),
   so the page shows what the watcher acts on; before a watcher recorded it, the ``COORDINATOR_DEPS`` file.
3. Every failure is a page that says what is wrong and what to do (etcd unreachable, no graph, a bad partition),
   with an HTTP status for it; never a traceback, never a secret (endpoints and credentials are not shown).
4. The caller (the Airflow plugin's FastAPI app, later the watcher's listener) authenticates the user first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from coordinator.core.deadlines import deadline_states
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId, canonical_partition
from coordinator.core.planner import plan
from coordinator.core.view import View
from coordinator.errors import ConfigError, CoordinatorError, SpecError
from coordinator.page.model import build_page, graph_from_activation
from coordinator.page.render import render_message, render_page
from coordinator.settings import EtcdSettings, Settings
from coordinator.spec_file import load_spec

log = logging.getLogger(__name__)
TITLE = "Dependencies"


@dataclass(frozen=True, slots=True)
class PageResponse:
    status: int
    html: str


async def read_view(settings: Settings, etcd: EtcdSettings | None = None) -> View:
    from coordinator.etcd import EtcdStore  # the gRPC import only when the page is asked for

    async with await EtcdStore.connect(etcd or settings.etcd()) as store:
        snap = await store.snapshot(settings.keys.root)
    view = View(settings.keys)
    view.load(snap.revision, ((kv.key, kv.value, kv.mod_revision) for kv in snap.kvs))
    return view


def choose_graph(view: View, settings: Settings) -> Graph | None:
    """Rule 2; raise SpecError when only the file is left and it is invalid."""
    adopted = graph_from_activation(view.activation, f"adopted by the watcher ({view.graph_key})")
    if adopted is not None:
        return adopted
    if settings.deps.is_file():
        return load_spec(settings.deps)
    return None


async def dependencies_page(
    partition: str | None,
    node: str | None,
    *,
    instance: str,
    ui_base: str = "",
    settings: Settings | None = None,
    etcd: EtcdSettings | None = None,
) -> PageResponse:
    """The page for one request (rules 1-3). ``etcd``: the connection settings when the caller resolved them
    itself (the plugin's, which may come from an Airflow connection); else ``settings.etcd()``."""
    try:
        settings = settings or Settings()
        settings.etcd()
    except (ValidationError, ConfigError) as exc:
        log.warning("page.config_error error=%s", type(exc).__name__)
        return PageResponse(503, render_message(TITLE, f"The coordinator is not configured here: {_first(exc)}"))
    chosen: str | None = None
    if partition:
        try:
            chosen = canonical_partition(partition)
        except ValueError as exc:
            return PageResponse(400, render_message(TITLE, str(exc)))
    try:
        view = await read_view(settings, etcd)
    except CoordinatorError as exc:
        log.warning("page.etcd_error error=%s", exc)
        return PageResponse(503, render_message(TITLE, "etcd cannot be read right now; try again in a moment."))
    try:
        graph = choose_graph(view, settings)
    except SpecError as exc:
        return PageResponse(503, render_message(TITLE, "dependencies file is invalid: " + "; ".join(exc.problems)))
    if graph is None:
        return PageResponse(
            200,
            render_message(
                TITLE,
                "No dependency graph yet: start a watcher (it records the graph it adopts in etcd) or set "
                "COORDINATOR_DEPS for the api-server.",
            ),
        )
    partitions = view.all_partitions()
    if chosen is None and partitions:
        chosen = partitions[-1]
    result = plan(graph, view, [chosen] if chosen is not None else [])
    # Deadlines are judged at the page's own clock, like `status` (semantics rule 13).
    deadlines = deadline_states(graph, view, datetime.now(UTC), partitions=[chosen]) if chosen is not None else {}
    model = build_page(graph, view, result, chosen, partitions, deadlines)
    selected: NodeId | None = None
    if node:
        try:
            selected = NodeId.parse(node)
        except ValueError:
            selected = None
    return PageResponse(200, render_page(model, selected=selected, instance=instance, ui_base=ui_base, title=TITLE))


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return str(exc)
