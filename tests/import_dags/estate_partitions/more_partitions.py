"""Partitioned DAGs beside Airflow's own example (``example_asset_partition.py``): the forms it has no converted
example of. Read by ``tests/test_import_partitions.py``."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import (
    DAG,
    AllowedKeyMapper,
    Asset,
    CronPartitionTimetable,
    DayWindow,
    FanOutMapper,
    FixedKeyMapper,
    IdentityMapper,
    MinimumCount,
    PartitionedAssetTimetable,
    PartitionedAtRuntime,
    RollupMapper,
    SegmentWindow,
    StartOfDayMapper,
)

START = datetime(2024, 1, 1)
SALES = Asset("s3://more/sales")
ALL_REGIONS = Asset("s3://more/all-regions")
HOURS = Asset("s3://more/hours")
STOCK = Asset("s3://more/stock")
BERLIN = Asset("s3://more/berlin")
REGIONS = ["eu", "us", "apac"]

# A load per region, triggered with partition_key eu, us or apac.
with DAG("regional_load", schedule=PartitionedAtRuntime(), start_date=START):
    EmptyOperator(task_id="publish", outlets=[SALES])

# All regions: one run keyed all_regions once the three have arrived; it publishes for the fan-out below.
with DAG(
    "regions_rollup",
    schedule=PartitionedAssetTimetable(
        assets=SALES,
        default_partition_mapper=RollupMapper(
            upstream_mapper=FixedKeyMapper("all_regions"), window=SegmentWindow(REGIONS)
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="publish", outlets=[ALL_REGIONS])

# Two of three regions with a negative count: MinimumCount(-1), at most one missing.
with DAG(
    "regions_but_one",
    schedule=PartitionedAssetTimetable(
        assets=SALES,
        default_partition_mapper=RollupMapper(
            upstream_mapper=FixedKeyMapper("all_regions"), window=SegmentWindow(REGIONS), wait_policy=MinimumCount(-1)
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")

# Each region of the load, the same region here.
with DAG(
    "per_region_clean",
    schedule=PartitionedAssetTimetable(assets=SALES, default_partition_mapper=AllowedKeyMapper(REGIONS)),
    start_date=START,
):
    EmptyOperator(task_id="work")

# Segment fan-out: the one all_regions run fans out to a run per region.
with DAG(
    "per_region_report",
    schedule=PartitionedAssetTimetable(
        assets=ALL_REGIONS,
        default_partition_mapper=FanOutMapper(
            upstream_mapper=IdentityMapper(), window=SegmentWindow(REGIONS), downstream_mapper=IdentityMapper()
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")

with DAG("hourly_meter", schedule=CronPartitionTimetable("0 * * * *", timezone="UTC"), start_date=START):
    EmptyOperator(task_id="publish", outlets=[HOURS])

# 20 of the day's 24 hours of one producer: an edge's at_least.
with DAG(
    "most_hours",
    schedule=PartitionedAssetTimetable(
        assets=HOURS,
        default_partition_mapper=RollupMapper(
            upstream_mapper=StartOfDayMapper(), window=DayWindow(), wait_policy=MinimumCount(20)
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")

# All but two of the day's hours: MinimumCount(-2) over a 24-hour window is 22.
with DAG(
    "all_but_two_hours",
    schedule=PartitionedAssetTimetable(
        assets=HOURS,
        default_partition_mapper=RollupMapper(
            upstream_mapper=StartOfDayMapper(), window=DayWindow(), wait_policy=MinimumCount(-2)
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")

# A daily CronPartitionTimetable with a key format of its own.
with DAG(
    "daily_stock",
    schedule=CronPartitionTimetable("0 2 * * *", timezone="UTC", key_format="%Y%m%d"),
    start_date=START,
):
    EmptyOperator(task_id="publish", outlets=[STOCK])

# The identity mapper: the consumer's key is the producer's, so is its key format.
with DAG("stock_copy", schedule=PartitionedAssetTimetable(assets=STOCK), start_date=START):
    EmptyOperator(task_id="work")

# 02:00 in Berlin happens twice on the day daylight saving ends: two runs, one key; the identity consumer runs once.
with DAG(
    "berlin_stock",
    schedule=CronPartitionTimetable("0 2 * * *", timezone="Europe/Berlin", key_format="%Y-%m-%dT%H"),
    start_date=START,
):
    EmptyOperator(task_id="publish", outlets=[BERLIN])

with DAG("berlin_copy", schedule=PartitionedAssetTimetable(assets=BERLIN), start_date=START):
    EmptyOperator(task_id="work")
