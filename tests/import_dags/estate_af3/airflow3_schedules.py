"""Airflow 3 schedules that used to crash the importer: AssetOrTimeSchedule and partitioned assets (3.2+)."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    CronPartitionTimetable,
    CronTriggerTimetable,
    DayWindow,
    MonthWindow,
    PartitionedAssetTimetable,
    RollupMapper,
    StartOfDayMapper,
    StartOfMonthMapper,
)

START = pendulum.datetime(2024, 1, 1, tz="UTC")
RAW = Asset("s3://estate/raw")
HOURLY = Asset("s3://estate/hourly")
DAILY = Asset("s3://estate/daily")

with DAG("producer", schedule=CronPartitionTimetable("0 1 * * *", timezone="UTC"), start_date=START):
    EmptyOperator(task_id="publish", outlets=[RAW])

with DAG("hourly_producer", schedule=CronPartitionTimetable("0 * * * *", timezone="UTC"), start_date=START):
    EmptyOperator(task_id="publish", outlets=[HOURLY])

with DAG(
    "either",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"), assets=[RAW]),
    start_date=START,
):
    EmptyOperator(task_id="work")

with DAG("same_key", schedule=PartitionedAssetTimetable(assets=RAW), start_date=START):
    EmptyOperator(task_id="work")

with DAG(
    "daily_rollup",
    schedule=PartitionedAssetTimetable(assets=HOURLY, default_partition_mapper=StartOfDayMapper()),
    start_date=START,
):
    EmptyOperator(task_id="work")

# A partition mapper that is a date mapping: the daily producer's key at 01:00 maps to its day (a +1h shift).
with DAG(
    "day_of_producer",
    schedule=PartitionedAssetTimetable(assets=RAW, default_partition_mapper=StartOfDayMapper()),
    start_date=START,
):
    EmptyOperator(task_id="work")

# A rollup: the day's run waits for all 24 hourly keys (WaitForAll, the default policy).
with DAG(
    "hourly_rolled_up",
    schedule=PartitionedAssetTimetable(
        assets=HOURLY, default_partition_mapper=RollupMapper(upstream_mapper=StartOfDayMapper(), window=DayWindow())
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")
    EmptyOperator(task_id="publish", outlets=[DAILY])

# A chained rollup (Airflow's own example: hourly -> daily -> monthly): the month waits for all its days, the keys of
# a partitioned producer being its mapper's periods.
with DAG(
    "monthly_rolled_up",
    schedule=PartitionedAssetTimetable(
        assets=DAILY,
        default_partition_mapper=RollupMapper(
            upstream_mapper=StartOfMonthMapper(input_format="%Y-%m-%d"), window=MonthWindow()
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")
