"""The dependencies page authorizes per DAG (coordinator.page.access and the api-server glue in page_app): only
the DAGs the user may read are drawn, the others are counted, and the check never comes from the query string."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.page.access import HIDDEN_NAME, Access, restrict
from coordinator.page.model import build_page
from coordinator.page.render import render_page

P = "2026-01-01T00:00:00Z"
GRAPH = {
    "version": 1,
    "instances": {"team_a": {}, "team_b": {}},
    "dags": {
        "team_a/extract": {},
        "team_a/secret_ingest": {},
        "team_a/report": {"upstreams": ["extract", "secret_ingest"]},
        "team_b/load": {"upstreams": ["team_a/extract"]},
    },
}


def page_html(access: Access | None, selected: str | None = None) -> str:
    """The page of P with extract succeeded (report waits on secret_ingest), drawn for ``access``."""
    keys = KeyLayout("/p")
    graph = parse_spec(json.dumps(GRAPH), "deps.json")
    activation = adopt(graph.shapes, graph.digest, None, 1, sources=graph.dags)
    assert activation is not None
    view = View(keys)
    view.apply(keys.config_key("graph"), dump_activation(activation), 1)
    view.apply(keys.run_key(NodeId("team_a", "extract"), P), dump_record(RunRecord(state=RunState.SUCCESS,
               run_id="scheduled__x")), 5)  # fmt: skip
    model = build_page(graph, view, plan(graph, view, [P]), P)
    if access is not None:
        model = restrict(model, access)
    return render_page(model, instance="team_a", selected=NodeId.parse(selected) if selected else None)


def drawn(html: str) -> set[str]:
    import re

    return set(re.findall(r'data-dag="([^"]+)"', html))


def test_only_readable_dags_of_this_instance_are_drawn_and_the_rest_counted() -> None:
    """A team_a user who may read extract and report sees those two; secret_ingest and team_b's load are counted,
    and neither name appears anywhere on the page (not in report's reasons either)."""
    everything = page_html(None)
    assert drawn(everything) == {"team_a/extract", "team_a/secret_ingest", "team_a/report", "team_b/load"}
    assert "secret_ingest" in everything
    html = page_html(Access("team_a", frozenset({"extract", "report"})), selected="team_a/report")
    assert drawn(html) == {"team_a/extract", "team_a/report"}
    assert "2 DAG(s) you may not read in Airflow are not shown" in html
    assert "secret_ingest" not in html and "team_b" not in html, html
    assert HIDDEN_NAME in html  # report's reason says it waits, without naming what on


def test_other_instances_are_drawn_only_when_shared() -> None:
    """With COORDINATOR_PAGE_OTHER_INSTANCES=shown the other instance's DAGs are drawn; this instance's still per
    the user's permissions."""
    html = page_html(Access("team_a", frozenset({"extract", "report"}), other_instances=True))
    assert drawn(html) == {"team_a/extract", "team_a/report", "team_b/load"}
    assert "1 DAG(s) you may not read" in html


@dataclass
class _Writer:
    instance: str = "team_a"


@dataclass
class _Config:
    writer: _Writer
    settings: Any


class _Resolver:
    def __init__(self, settings: Any) -> None:
        self.config = _Config(_Writer(), settings)

    async def etcd(self) -> None:
        return None


class _Manager:
    """Airflow's auth manager as the glue sees it: answers which DAGs the user may read, and records the asks."""

    def __init__(self, readable: set[str]) -> None:
        self.readable = readable
        self.asked: list[tuple[Any, str]] = []

    def get_authorized_dag_ids(self, *, user: Any, method: str = "GET") -> set[str]:
        self.asked.append((user, method))
        return set(self.readable)

    def get_url_login(self) -> str:
        return "/login"


@pytest.mark.airflow
@pytest.mark.parametrize("query", ["", "?dag_id=report", "?dag_id=secret_ingest&node=team_a/secret_ingest"],
                         ids=["no-query", "dag-id-of-a-readable-dag", "dag-id-of-a-hidden-dag"])  # fmt: skip
def test_page_app_takes_the_readable_dags_from_the_auth_manager_never_the_query(
    monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """Whatever ``?dag_id=`` says, the page asks the auth manager for the user's readable DAGs and draws only
    those; a user who may read none gets 403 and no graph."""
    pytest.importorskip("airflow.api_fastapi.core_api.security")
    import airflow.api_fastapi.app as airflow_app
    import airflow.api_fastapi.core_api.security as security
    from fastapi.testclient import TestClient

    from coordinator.airflow_plugin import page_app
    from coordinator.page.service import PageResponse
    from coordinator.runtime.settings import Settings

    seen: list[Access | None] = []

    async def fake_page(partition: Any, node: Any, **kwargs: Any) -> PageResponse:
        seen.append(kwargs["access"])
        return PageResponse(200, "drawn")

    async def bearer(request: Any) -> str:
        return "token"

    async def user(request: Any, _oauth: Any, credentials: Any) -> str:
        return "alice"

    manager = _Manager({"extract", "report"})
    monkeypatch.setattr(security, "bearer_scheme", bearer)
    monkeypatch.setattr(security, "get_user", user)
    monkeypatch.setattr(airflow_app, "get_auth_manager", lambda: manager)
    monkeypatch.setattr(page_app, "dependencies_page", fake_page)
    monkeypatch.setattr(page_app, "_settings", lambda: _Resolver(Settings()))
    client = TestClient(page_app.create_app())
    answer = client.get("/" + query)
    assert answer.status_code == 200, answer.text
    assert manager.asked == [("alice", "GET")]
    assert seen == [Access("team_a", frozenset({"extract", "report"}), False)]

    manager.readable = set()
    refused = client.get("/" + query)
    assert refused.status_code == 403 and "drawn" not in refused.text
