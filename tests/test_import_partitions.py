"""``import-dags`` on Airflow 3.2+ partitioned DAGs (issue 60): ``CronPartitionTimetable`` and
``PartitionedAssetTimetable`` DAGs and their mappers become partitions (a grid, segments, a key format) and edges,
with Airflow's own mappers as the oracle.

The folder ``tests/import_dags/estate_partitions/`` holds Airflow 3.3.2's own example DAGs for partitions
(``example_asset_partition.py``, copied) and the forms they have no converted example of (``more_partitions.py``). It
is loaded by the real Airflow in a child process, as ``tests/test_import_dags.py`` does; the oracle
(``tests/import_dags/partitions_oracle.py``) asks the scheduler's mappers, on sampled producer keys, which producer
partitions each consumer key waits for, and ``required_inputs`` of the written file must name the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.inputs import required_inputs
from coordinator.core.model import NodeId
from coordinator.core.partition import airflow_partition_key, split_partition
from tests.test_import_dags import HERE, Imported, airflow_env, dependent_dates, imported
from tests.test_spec_cli import run

#: Every test here loads the DAG folder with Airflow's own DagBag (``make fast`` leaves them out).
pytestmark = pytest.mark.airflow

FOLDER = HERE / "estate_partitions"


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    tmp = tmp_path_factory.mktemp("estate_partitions")
    yield imported(Path(sys.executable), FOLDER, tmp, "--report", str(tmp / "report.json"))


def entry(estate: Imported, dag: str) -> dict[str, Any]:
    found = json.loads(estate.path.read_text(encoding="utf-8"))["dags"][dag]
    return {k: v for k, v in found.items() if k != "description"}


HOURLY_KEYS = {"cron": "0 * * * *", "timezone": "UTC", "key_format": "%Y-%m-%dT%H:%M:%S"}
REGIONS = ["apac", "eu", "us"]
EXPECTED = {
    "cron-partition-timetable": ("ingest_team_a_player_stats", {"partitions": HOURLY_KEYS}),
    "start-of-hour-of-three-producers": (
        "clean_and_combine_player_stats",
        {
            "partitions": {"cron": "0 * * * *", "timezone": "UTC", "key_format": "%Y-%m-%dT%H"},
            "upstreams": [
                {"dag": "ingest_team_a_player_stats", "task": "ingest_team_a_stats"},
                {"dag": "team_b_player_stats", "shift": "+15m", "task": "team_b_player_stats"},
                {"dag": "team_c_player_stats", "shift": "+30m", "task": "team_c_player_stats"},
            ],
        },
    ),
    "identity-takes-its-producers-key-format": (
        "compute_player_odds",
        {
            "partitions": {"cron": "0 * * * *", "timezone": "UTC", "key_format": "%Y-%m-%dT%H"},
            "upstreams": [{"dag": "clean_and_combine_player_stats", "task": "combine_player_stats"}],
        },
    ),
    "day-rollup-wait-for-all": (
        "daily_team_a_rollup",
        {
            "partitions": {"cron": "0 0 * * *", "timezone": "UTC", "key_format": "%Y-%m-%d"},
            "upstreams": [{"dag": "ingest_team_a_player_stats", "task": "ingest_team_a_stats"}],
        },
    ),
    "month-rollup-of-a-rollup": (
        "monthly_team_a_rollup",
        {
            "partitions": {"cron": "0 0 1 * *", "timezone": "UTC", "key_format": "%Y-%m"},
            "upstreams": [{"dag": "daily_team_a_rollup", "task": "summarise_team_a_day"}],
        },
    ),
    "week-fans-out-to-its-days": (
        "daily_inference",
        {
            "partitions": {"cron": "0 0 * * *", "timezone": "UTC", "key_format": "%Y-%m-%d"},
            "upstreams": [{"dag": "train_weekly_model", "task": "train_model"}],
        },
    ),
    "allowed-keys-same-segment": (
        "regional_stats_breakdown",
        {"partitions": {"segments": REGIONS}, "upstreams": [{"dag": "ingest_region_stats", "task": "ingest_region"}]},
    ),
    "runtime-producer-takes-the-segments-read": ("ingest_region_stats", {"partitions": {"segments": REGIONS}}),
    "segment-rollup-wait-for-all": (
        "segment_region_stats_rollup",
        {
            "partitions": {"segments": ["all_regions"]},
            "upstreams": [{"dag": "multi_region_player_stats", "task": "multi_region_player_stats", "segments": "all"}],
        },
    ),
    "segment-rollup-minimum-count": (
        "segment_region_stats_early_rollup",
        {
            "partitions": {"segments": ["all_regions"]},
            "upstreams": [
                {
                    "dag": "multi_region_player_stats",
                    "task": "multi_region_player_stats",
                    "segments": "all",
                    "at_least": 2,
                }
            ],
        },
    ),
    "segment-rollup-negative-count": (
        "regions_but_one",
        {
            "partitions": {"segments": ["all_regions"]},
            "upstreams": [{"dag": "regional_load", "task": "publish", "segments": "all", "at_least": 2}],
        },
    ),
    "segment-fan-out-of-one-key": (
        "per_region_report",
        {
            "partitions": {"segments": REGIONS},
            "upstreams": [{"dag": "regions_rollup", "task": "publish", "segments": "all"}],
        },
    ),
    "minimum-count-of-one-producers-hours": (
        "most_hours",
        {
            "partitions": {"cron": "0 0 * * *", "timezone": "UTC", "key_format": "%Y-%m-%d"},
            "upstreams": [{"dag": "hourly_meter", "task": "publish", "at_least": 20}],
        },
    ),
    "all-but-two-hours": (
        "all_but_two_hours",
        {
            "partitions": {"cron": "0 0 * * *", "timezone": "UTC", "key_format": "%Y-%m-%d"},
            "upstreams": [{"dag": "hourly_meter", "task": "publish", "at_least": 22}],
        },
    ),
    "own-key-format": (
        "stock_copy",
        {
            "partitions": {"cron": "0 2 * * *", "timezone": "UTC", "key_format": "%Y%m%d"},
            "upstreams": [{"dag": "daily_stock", "task": "publish"}],
        },
    ),
    "identity-over-runtime-keys-passes-them-through": (
        "summarize_live_region_stats",
        {"upstreams": [{"dag": "live_region_player_stats", "task": "live_region_player_stats"}]},
    ),
}


@pytest.mark.parametrize(("dag", "written"), EXPECTED.values(), ids=EXPECTED.keys())
def test_partitioned_dags_become_these_entries(estate: Imported, dag: str, written: dict[str, Any]) -> None:
    """Each partitioned DAG's partitions and upstreams in the written file (which the fixture loads with the spec
    loader, as validate does)."""
    assert entry(estate, dag) == written


REPORTED = {
    "product-of-runtime-keys": "aggregate_regional_sales: asset 'file://incoming/sales/regional.csv': ProductMapper: "
    "ingest_regional_sales runs on a PartitionedAtRuntime",
    "trailing-week-fan-out": "trailing_week_inference: asset 'file://artifacts/models/weekly.bin': no edge maps "
    "train_weekly_model's dates",
    "segment-fan-out-of-any-key": "scatter_live_region_to_segments: asset "
    "'file://incoming/player-stats/live-region.csv': FanOutMapper runs every segment of ['apac', 'eu', 'us'] for "
    "each key live_region_player_stats emits",
    "one-key-for-two-runs": "berlin_copy: asset 's3://more/berlin': IdentityMapper: berlin_stock's runs at "
    "2024-10-27T00:00:00Z and 2024-10-27T01:00:00Z have one key '2024-10-27T02'",
    "incompatible-on-purpose": "player_odds_quality_check_wont_ever_to_trigger: asset 'file://curated/player-stats/"
    "combined.csv': StartOfYearMapper could not be evaluated",
}


@pytest.mark.parametrize("text", REPORTED.values(), ids=REPORTED.keys())
def test_what_is_not_converted_exactly_is_reported_with_why(estate: Imported, text: str) -> None:
    """A mapping with no exact form stays reported under "cannot express" with the mapper's name and the reason, and
    the consumer gets no edge for that asset."""
    report = json.loads((estate.path.parent / "report.json").read_text(encoding="utf-8"))
    lines = [f"{f['subject']}: {f['message']}" for f in report["findings"] if f["kind"] == "cannot express"]
    assert any(text in line for line in lines), text
    assert "upstreams" not in entry(estate, text.split(":")[0]) or text.startswith("player_odds")


#: (consumer, asset, producer) of every converted mapping the oracle checks.
CONVERTED = (
    ("clean_and_combine_player_stats", "file://incoming/player-stats/team_a.csv", "ingest_team_a_player_stats"),
    ("clean_and_combine_player_stats", "file://incoming/player-stats/team_b.csv", "team_b_player_stats"),
    ("daily_team_a_rollup", "file://incoming/player-stats/team_a.csv", "ingest_team_a_player_stats"),
    ("monthly_team_a_rollup", "s3://team-a/daily", "daily_team_a_rollup"),
    ("compute_player_odds", "file://curated/player-stats/combined.csv", "clean_and_combine_player_stats"),
    ("daily_inference", "file://artifacts/models/weekly.bin", "train_weekly_model"),
    ("regional_stats_breakdown", "file://incoming/player-stats/by-region.csv", "ingest_region_stats"),
    ("segment_region_stats_rollup", "file://incoming/player-stats/multi-region.csv", "multi_region_player_stats"),
    ("segment_region_stats_early_rollup", "file://incoming/player-stats/multi-region.csv", "multi_region_player_stats"),
    ("regions_but_one", "s3://more/sales", "regional_load"),
    ("per_region_clean", "s3://more/sales", "regional_load"),
    ("per_region_report", "s3://more/all-regions", "regions_rollup"),
    ("most_hours", "s3://more/hours", "hourly_meter"),
    ("all_but_two_hours", "s3://more/hours", "hourly_meter"),
    ("stock_copy", "s3://more/stock", "daily_stock"),
)


def ask_airflow(tmp: Path, requests: list[dict[str, Any]]) -> list[Any]:
    """tests/import_dags/partitions_oracle.py's answers, computed by Airflow in a child process."""
    done = subprocess.run(
        [sys.executable, str(HERE / "partitions_oracle.py"), str(FOLDER)],
        input=json.dumps(requests),
        env=airflow_env(tmp / "home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("ORACLE ")] or [done.stderr[-2000:]]
    return list(json.loads(line.removeprefix("ORACLE ")))


def producer_samples(estate: Imported, producer: str) -> list[str]:
    """Sample partitions of a producer: its grid's points from test_import_dags' windows, or its segments."""
    spec = estate.graph.dags[NodeId("default", producer)]
    if spec.grid is None:
        assert spec.segments is not None, f"{producer} has neither a grid nor segments"
        return list(spec.segments.names)
    return dependent_dates(estate.graph, producer)


def our_partition(key: str, answer: dict[str, Any]) -> str:
    """The coordinator's partition of Airflow's consumer key: its partition_date; a name is itself; the identity
    mapper carries its producer's partition (its one upstream)."""
    if answer["date"] is not None:
        return str(answer["date"])
    if answer["carries"]:
        (carried,) = answer["upstream"]
        return str(carried)
    assert split_partition(key) == (None, key), key
    return key


def test_converted_consumers_wait_for_the_partitions_airflows_mappers_map_to_their_keys(
    estate: Imported, tmp_path: Path
) -> None:
    """For sampled producer keys, every consumer key Airflow's mapper gives waits in the written file for exactly the
    producer partitions the mapper names (a rollup's whole window, or the keys mapped there), with the wait policy's
    count as the edge's at_least; the consumer is triggered with Airflow's own key, and each producer's key is the one
    its timetable formats."""
    graph = estate.graph
    requests = [
        {"dag": d, "asset": a, "producer": p, "partitions": producer_samples(estate, p)} for d, a, p in CONVERTED
    ]
    problems: list[str] = []
    compared = 0
    for (consumer, _, producer), answer in zip(CONVERTED, ask_airflow(tmp_path, requests), strict=True):
        down = graph.dags[NodeId("default", consumer)]
        up = graph.dags[NodeId("default", producer)]
        zone = up.grid.timezone if up.grid is not None else "UTC"
        for partition, key in answer["keys"].items():
            if airflow_partition_key(partition, up.key_format, zone) not in (key, None):
                problems.append(f"{producer} at {partition}: key {key}, ours differs")
        for key, found in answer["consumers"].items():
            partition = our_partition(key, found)
            compared += 1
            inputs = [i for i in required_inputs(graph, down.node, partition) if i.dag.dag_id == producer]
            got = [sorted(i.partitions) for i in inputs]
            if got != [found["upstream"]]:
                problems.append(f"{consumer} at {partition}: file {got}, Airflow {found['upstream']}")
            count = inputs[0].count.at_least if inputs and inputs[0].count is not None else None
            if count != found["need"]:
                problems.append(f"{consumer} at {partition}: at_least {count}, Airflow {found['need']}")
            ours = airflow_partition_key(partition, down.key_format, down.grid.timezone if down.grid else "UTC")
            if down.key_format is not None and ours != key:
                problems.append(f"{consumer} at {partition}: triggered with key {ours}, Airflow's is {key}")
    assert not problems, f"{len(problems)} mismatches, e.g. " + "; ".join(problems[:5])
    assert compared > 300


def test_inputs_of_converted_dags_list_what_airflow_waits_for(estate: Imported) -> None:
    """`coordinator inputs` on a converted segment rollup lists 2 of the 3 regions MinimumCount(2) waits for, and on
    a counted day 20 of the day's hours."""
    result = run("inputs", "segment_region_stats_early_rollup", "-p", "all_regions", "--deps", str(estate.path))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "segment_region_stats_early_rollup all_regions waits for:\n"
        "  multi_region_player_stats task multi_region_player_stats [success], 2 of 3 partitions: apac, eu, us\n"
    )
    daily = run("inputs", "most_hours", "-p", "2024-03-10", "--deps", str(estate.path), "-f", "json")
    (upstream,) = json.loads(daily.stdout)["upstreams"]
    assert (upstream["dag"], len(upstream["partitions"])) == ("hourly_meter", 24)
    assert "20" in json.dumps(upstream)


def test_every_written_dependent_is_told_the_schedule_airflow_accepts(estate: Imported) -> None:
    """Each DAG written with upstreams gets one schedule note: PartitionedAtRuntime() when its entry declares a
    key_format or segments (Airflow refuses a partition_key for schedule=None), schedule=None otherwise unless a
    run-time key passes through to it; no note tells a keyed dependent to set schedule=None."""
    report = json.loads((estate.path.parent / "report.json").read_text(encoding="utf-8"))
    notes = {f["subject"]: f["message"] for f in report["findings"] if f["message"].startswith("schedule:")}
    dags = json.loads(estate.path.read_text(encoding="utf-8"))["dags"]
    dependents = {dag: e for dag, e in dags.items() if e.get("upstreams")}
    assert dependents and set(dependents) <= set(notes)
    for dag, written in dependents.items():
        keyed = {"key_format", "segments"} & set(written.get("partitions", {}))
        if keyed:
            assert "PartitionedAtRuntime()" in notes[dag] and "schedule=None" not in notes[dag], (dag, notes[dag])
            said = [f["message"] for f in report["findings"] if f["subject"] == dag]
            assert not any("set schedule=None" in m for m in said), (dag, said)
        elif "pass through" not in notes[dag]:
            assert "schedule=None" in notes[dag], (dag, notes[dag])
    assert notes["summarize_live_region_stats"].startswith("schedule: set schedule=PartitionedAtRuntime()")
    assert notes["live_region_player_stats"].startswith("schedule: keep schedule=PartitionedAtRuntime()")
