"""Hypothesis over schedules, zones and deltas: every generated sensor is either translated exactly (Airflow's own
dates on hundreds of dependent dates) or reported as never satisfied, and the report's claim holds in Airflow too; and
over asset conditions: every generated one is converted into groups Airflow's scheduler agrees with, or reported."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.core.grid import Grid
from coordinator.core.importer.facts import AssetCondition, ConditionOp
from coordinator.core.model import NodeId, partition_datetime
from tests.support.oracle_client import Oracle, running_oracle
from tests.test_import_conditions import ask_airflow, coordinator_runs
from tests.test_import_dags import Sensor, airflow_env, dependent_dates, imported, mismatches

#: Every test here loads DAG folders with Airflow's own DagBag (``make fast`` leaves them out).
pytestmark = pytest.mark.airflow

HEADER = """
from datetime import timedelta
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG
"""


@dataclass(frozen=True)
class Pair:
    up_cron: str
    up_zone: str
    down_cron: str
    down_zone: str
    #: Upstream periods between D's first 2024 point and the date the sensor waits for (None: a random delta).
    periods: int | None
    minutes: int
    deferrable: bool
    task: bool

    def delta(self) -> timedelta:
        """execution_delta: from D's first point of 2024 back to an upstream point (or a random distance)."""
        start = datetime(2024, 1, 1, tzinfo=UTC)
        down = Grid(self.down_cron, self.down_zone).next(start)
        if self.periods is None:
            return timedelta(minutes=self.minutes)
        up = Grid(self.up_cron, self.up_zone).shift(Grid(self.up_cron, self.up_zone).floor(down), self.periods)
        return down - up


MINUTES = st.sampled_from([0, 15, 30, 45])
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])


@st.composite
def crons(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["hourly", "daily", "daily", "weekly", "preset"]))
    minute, hour = draw(MINUTES), draw(st.integers(0, 23))
    if kind == "hourly":
        return f"{minute} * * * *"
    if kind == "daily":
        return f"{minute} {hour} * * *"
    if kind == "weekly":
        return f"{minute} {hour} * * {draw(st.integers(0, 6))}"
    return draw(st.sampled_from(["@hourly", "@daily", "@weekly"]))


@st.composite
def pairs(draw: st.DrawFn) -> Pair:
    return Pair(
        up_cron=draw(crons()),
        up_zone=draw(ZONES),
        down_cron=draw(crons()),
        down_zone=draw(ZONES),
        periods=draw(st.one_of(st.none(), st.integers(-3, 3))),
        minutes=draw(st.integers(-3 * 1440, 3 * 1440)),
        deferrable=draw(st.booleans()),
        task=draw(st.booleans()),
    )


def folder_text(items: list[Pair]) -> str:
    lines = [HEADER]
    for i, pair in enumerate(items):
        delta = pair.delta()
        task = ', external_task_id="work"' if pair.task else ""
        lines.append(
            f'with DAG("u{i}", schedule="{pair.up_cron}", '
            f'start_date=pendulum.datetime(2024, 1, 1, tz="{pair.up_zone}")):\n'
            f'    EmptyOperator(task_id="work")\n'
            f'with DAG("d{i}", schedule="{pair.down_cron}", '
            f'start_date=pendulum.datetime(2024, 1, 1, tz="{pair.down_zone}")):\n'
            f'    ExternalTaskSensor(task_id="wait", external_dag_id="u{i}"{task}, '
            f"execution_delta=timedelta(seconds={int(delta.total_seconds())}), deferrable={pair.deferrable})\n"
        )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    """One oracle process for every example: Airflow is imported once, each example's folder is a new DagBag."""
    tmp = tmp_path_factory.mktemp("oracle")
    with running_oracle(Path(sys.executable), airflow_env(tmp / "home"), tmp / "oracle.log") as running:
        yield running


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(pairs(), min_size=10, max_size=14))
def test_generated_sensors_are_translated_exactly_or_reported(
    tmp_path_factory: pytest.TempPathFactory, oracle: Oracle, items: list[Pair]
) -> None:
    """Every generated sensor gets an edge Airflow agrees with on every date, or a 'never satisfied' finding that
    Airflow confirms (none of its dates is a run of the upstream)."""
    tmp = tmp_path_factory.mktemp("generated")
    folder = tmp / "dags"
    folder.mkdir()
    (folder / "generated.py").write_text(folder_text(items), encoding="utf-8")
    result = imported(Path(sys.executable), folder, tmp)
    document = json.loads(result.path.read_text(encoding="utf-8"))["dags"]
    translated, reported = [], []
    for i, pair in enumerate(items):
        sensor = Sensor(f"d{i}", "wait", f"u{i}", ("work",) if pair.task else (None,))
        if "upstreams" in document[f"d{i}"]:
            translated.append(sensor)
        else:
            assert f"d{i}.wait: never satisfied" in result.stderr, (pair, result.stderr[-2000:])
            reported.append(sensor)
    sensors = translated + reported
    requests = [{"dag": s.dag, "task": s.task, "partitions": dependent_dates(result.graph, s.dag)} for s in sensors]
    answers = oracle.ask(folder, requests)
    problems = [m for s in translated for m in mismatches(result.graph, s, answers[(s.dag, s.task)])]
    assert not problems, f"{len(problems)} mismatches, e.g. " + "; ".join(problems[:5])
    for sensor in reported:
        up = result.graph.dags[NodeId("default", sensor.upstream)].grid
        assert up is not None
        for dates in answers[(sensor.dag, sensor.task)].values():
            assert not all(up.contains(partition_datetime(d)) for d in dates), (sensor, dates)


ASSET_HEADER = """
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset

START = pendulum.datetime(2024, 1, 1, tz="UTC")
"""


def python_condition(tree: AssetCondition) -> str:
    """The condition as a DAG file writes it, the assets being the variables A0..A3."""
    if tree.uri is not None:
        return f"A{tree.uri[-1]}"
    joined = f" {'&' if tree.op is ConditionOp.ALL else '|'} ".join(python_condition(i) for i in tree.items)
    return f"({joined})"


def asset_folder_text(trees: list[AssetCondition]) -> str:
    lines = [ASSET_HEADER]
    for i in range(4):
        lines.append(
            f'A{i} = Asset("s3://generated/a{i}")\n'
            f'with DAG("p{i}", schedule="0 4 * * *", start_date=START):\n'
            f'    EmptyOperator(task_id="t", outlets=[A{i}])\n'
        )
    for j, tree in enumerate(trees):
        written = python_condition(tree) if tree.uri is None else f"[{python_condition(tree)}]"
        lines.append(f'with DAG("c{j}", schedule={written}, start_date=START):\n    EmptyOperator(task_id="work")\n')
    return "\n".join(lines)


GENERATED_ASSETS = st.sampled_from([f"s3://generated/a{i}" for i in range(4)]).map(
    lambda uri: AssetCondition(ConditionOp.ASSET, uri)
)
GENERATED_CONDITIONS = st.recursive(
    GENERATED_ASSETS,
    lambda inner: st.builds(
        lambda op, items: AssetCondition(op, items=tuple(items)),
        st.sampled_from([ConditionOp.ALL, ConditionOp.ANY]),
        st.lists(inner, min_size=2, max_size=3),
    ),
    max_leaves=6,
)


@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trees=st.lists(GENERATED_CONDITIONS, min_size=8, max_size=12))
def test_generated_asset_conditions_are_converted_exactly_or_reported(
    tmp_path_factory: pytest.TempPathFactory, trees: list[AssetCondition]
) -> None:
    """Every generated asset condition (& and | nested up to three deep) is written as groups that hold for exactly
    the subsets of updated assets Airflow's scheduler runs the DAG for, or reported as deeper than one level."""
    tmp = tmp_path_factory.mktemp("generated_assets")
    folder = tmp / "dags"
    folder.mkdir()
    (folder / "generated.py").write_text(asset_folder_text(trees), encoding="utf-8")
    result = imported(Path(sys.executable), folder, tmp, "--report", str(tmp / "report.json"))
    document = json.loads(result.path.read_text(encoding="utf-8"))["dags"]
    report = json.loads((tmp / "report.json").read_text(encoding="utf-8"))
    refused = {f["subject"]: f["message"] for f in report["findings"] if f["kind"] == "cannot express"}
    consumers = [f"c{j}" for j in range(len(trees))]
    answers = ask_airflow(tmp, [{"dag": c, "kind": "condition"} for c in consumers], folder)
    for consumer, tree, answer in zip(consumers, trees, answers, strict=True):
        if "upstreams" not in document[consumer]:
            assert "cannot be written" in refused[consumer], tree.text()
            continue
        fired = [set(s) for s in answer["satisfied"]]
        for n in range(len(answer["assets"]) + 1):
            for updated in itertools.combinations(answer["assets"], n):
                producers = {(f"p{u[-1]}", "t") for u in updated}
                runs = coordinator_runs(result.graph, consumer, producers, "2024-03-10T04:00:00Z")
                assert runs == (set(updated) in fired), (tree.text(), updated)
