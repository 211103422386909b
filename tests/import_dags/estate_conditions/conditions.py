"""Asset conditions (issue 50): OR, AND, one level of nesting, and Airflow 3.3's MinimumCount rollup.

Every consumer here is what `import-dags` converts into condition groups or reports with why (docs/import-dags.md,
"Asset conditions -> condition groups").
"""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import (
    DAG,
    Asset,
    CronPartitionTimetable,
    DayWindow,
    MinimumCount,
    PartitionedAssetTimetable,
    RollupMapper,
    StartOfDayMapper,
)

START = pendulum.datetime(2024, 1, 1, tz="UTC")
PRIMARY = Asset("s3://feeds/primary")
FALLBACK = Asset("s3://feeds/fallback")
CALENDAR = Asset("s3://ref/calendar")
ORDERS = Asset("s3://sales/orders")
ELSEWHERE = Asset("s3://other/deployment")
REGIONAL = Asset("s3://sales/regional")
HOURLY = Asset("s3://sales/hourly")

with DAG("feed_primary", schedule="0 4 * * *", start_date=START):
    EmptyOperator(task_id="land", outlets=[PRIMARY])

with DAG("feed_fallback", schedule="0 4 * * *", start_date=START):
    EmptyOperator(task_id="land", outlets=[FALLBACK])

with DAG("calendar", schedule="0 4 * * *", start_date=START):
    EmptyOperator(task_id="publish", outlets=[CALENDAR])

with DAG("orders", schedule="0 4 * * *", start_date=START):
    EmptyOperator(task_id="load", outlets=[ORDERS])

# "the report runs when either the primary or the fallback feed has landed"
with DAG("report_any", schedule=(PRIMARY | FALLBACK), start_date=START):
    EmptyOperator(task_id="work")

with DAG("report_all", schedule=(PRIMARY & CALENDAR), start_date=START):
    EmptyOperator(task_id="work")

# A required input beside an any of two feeds: one level, as the groups nest.
with DAG("kpis", schedule=(CALENDAR & (PRIMARY | FALLBACK)), start_date=START):
    EmptyOperator(task_id="work")

# (A and B) or C: an all inside an any, which the groups cannot write.
with DAG("deep", schedule=((PRIMARY & CALENDAR) | ORDERS), start_date=START):
    EmptyOperator(task_id="work")

# An OR with an asset no DAG of this folder produces: without it the group would not run when it updates.
with DAG("half_known", schedule=(PRIMARY | ELSEWHERE), start_date=START):
    EmptyOperator(task_id="work")

# Four regional loads, each the day's key of one hour, all into one asset; the global rollup fires on three of them.
for region, hour in (("eu", 0), ("us", 6), ("apac", 12), ("latam", 18)):
    with DAG(f"load_{region}", schedule=CronPartitionTimetable(f"0 {hour} * * *", timezone="UTC"), start_date=START):
        EmptyOperator(task_id="publish", outlets=[REGIONAL])

with DAG(
    "global_rollup",
    schedule=PartitionedAssetTimetable(
        assets=REGIONAL,
        default_partition_mapper=RollupMapper(
            upstream_mapper=StartOfDayMapper(), window=DayWindow(), wait_policy=MinimumCount(3)
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")

# MinimumCount over one producer's 24 hours: part of one DAG's window, an edge's at_least (no group: one DAG).
with DAG("hourly_load", schedule=CronPartitionTimetable("0 * * * *", timezone="UTC"), start_date=START):
    EmptyOperator(task_id="publish", outlets=[HOURLY])

with DAG(
    "most_hours",
    schedule=PartitionedAssetTimetable(
        assets=HOURLY,
        default_partition_mapper=RollupMapper(
            upstream_mapper=StartOfDayMapper(), window=DayWindow(), wait_policy=MinimumCount(20)
        ),
    ),
    start_date=START,
):
    EmptyOperator(task_id="work")
