"""The "assets" section of dependencies.json (semantics rule 16a): routes are read and validated like edges."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordinator.core.assets import AssetRoute, TargetAssets, route_warnings
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError

BASE = {"version": 1, "instances": {"team_a": {}, "team_b": {}}, "dags": {}}


def spec(assets: object) -> str:
    return json.dumps({**BASE, "assets": assets}, indent=1)


def test_routes_are_read_in_file_order_with_duplicate_targets_once() -> None:
    """Each route keeps its pattern, source and targets (a target listed twice counts once)."""
    graph = parse_spec(spec([{"asset": "s3://lake/*", "from": "team_a", "to": ["team_b", "team_b"]}]))
    assert graph.asset_routes == (AssetRoute("s3://lake/*", "team_a", ("team_b",)),)


def test_routes_do_not_change_the_digest() -> None:
    """Adding a route changes the graph in force but not its digest (no DAG becomes due because of it)."""
    without = parse_spec(json.dumps(BASE))
    with_route = parse_spec(spec([{"asset": "x", "from": "team_a", "to": ["team_b"]}]))
    assert without.digest == with_route.digest and without != with_route


@pytest.mark.parametrize(
    ("assets", "message"),
    [
        pytest.param(
            [{"asset": "x", "from": "team_z", "to": ["team_b"]}],
            "$.assets[0].from: undeclared instance",
            id="unknown-source",
        ),
        pytest.param(
            [{"asset": "x", "from": "team_a", "to": ["team_q"]}],
            "$.assets[0].to[0]: undeclared instance",
            id="unknown-target",
        ),
        pytest.param([{"asset": "x", "from": "team_a", "to": ["team_a"]}], "own source", id="route-to-itself"),
        pytest.param([{"asset": "", "from": "team_a", "to": ["team_b"]}], "$.assets[0].asset", id="empty-asset"),
        pytest.param([{"asset": "x", "from": "team_a", "to": []}], "expected a list of instances", id="no-target"),
        pytest.param([{"asset": "x", "from": "team_a", "to": ["team_b"], "uri": 1}], "unknown field 'uri'", id="typo"),
        pytest.param({"asset": "x"}, "$.assets: expected a list", id="not-a-list"),
    ],
)
def test_bad_routes_are_refused_with_their_path_and_line(assets: object, message: str) -> None:
    """Every problem of a route names where it is (JSON path, line) and what to write instead."""
    with pytest.raises(SpecError) as caught:
        parse_spec(spec(assets))
    assert message in str(caught.value)
    assert "dependencies.json:" in str(caught.value)


def test_an_airflow2_target_is_warned_about_partition_keys() -> None:
    """A route into an Airflow 2 says its events arrive without their partition keys (Airflow 2 has none)."""
    route = AssetRoute("s3://lake/*", "team_a", ("team_b",))
    seen = {"team_b": TargetAssets("team_b", (("s3://lake/orders", None, ("load",)),), airflow2=True)}
    (warning,) = route_warnings([route], seen)
    assert "team_b is an Airflow 2 (no partition keys)" in warning
    seen3 = {"team_b": TargetAssets("team_b", (("s3://lake/orders", None, ("load",)),), airflow2=False)}
    assert route_warnings([route], seen3) == []


def test_doctor_checks_each_route_against_its_targets() -> None:
    """doctor's "asset routes" check: ok when a target DAG schedules on the asset, warn (with the route) when none
    does, fail when a target could not be read."""
    from datetime import UTC, datetime

    from coordinator.diagnosis import CheckStatus, DoctorFacts, diagnose

    graph = parse_spec(spec([{"asset": "s3://lake/*", "from": "team_a", "to": ["team_b"]}]))

    def check(**facts: Any) -> Any:
        found = diagnose(DoctorFacts(settings=[], prefix="/p", local_graph=graph, **facts), datetime.now(UTC))
        return next(c for c in found if c.name == "asset routes")

    consumed = TargetAssets("team_b", (("s3://lake/orders", None, ("report",)),), airflow2=False)
    assert check(asset_targets={"team_b": consumed}).status is CheckStatus.OK
    unconsumed = TargetAssets("team_b", (("s3://lake/orders", None, ()),), airflow2=False)
    warned = check(asset_targets={"team_b": unconsumed})
    assert warned.status is CheckStatus.WARN and "no DAG of team_b schedules on s3://lake/orders" in warned.details[0]
    failed = check(asset_errors={"team_b": "no Airflow is configured for it"})
    assert failed.status is CheckStatus.FAIL and failed.details == ("team_b: no Airflow is configured for it",)
