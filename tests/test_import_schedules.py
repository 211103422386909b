"""``import-dags`` says the schedule each written DAG needs in Airflow (``core.importer.schedules_needed``): a
dependent triggered with a ``partition_key`` needs ``PartitionedAtRuntime()``, any other dependent ``None``, a
runtime-keyed producer keeps its own. Pure: facts built by hand as in tests/test_import_core.py; the real estate of
Airflow's partition examples is checked in tests/test_import_partitions.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from coordinator.core.importer.facts import AssetMapping, FindingKind, ScheduleFact, ScheduleKind
from coordinator.core.importer.translate import ImportResult, translate
from tests.test_import_core import ALLOWED, DAILY_5, ROLLUP, dag, partitioned, runtime, sensor

AT_RUNTIME = "schedule: set schedule=PartitionedAtRuntime() (from airflow.sdk import PartitionedAtRuntime)"


def schedule_notes(result: ImportResult) -> dict[str, str]:
    """DAG -> its ``schedule:`` note (one at most per DAG)."""
    found: dict[str, str] = {}
    for finding in result.of(FindingKind.NOTE):
        if finding.message.startswith("schedule:"):
            assert finding.subject not in found, finding
            found[finding.subject] = finding.message
    return found


def test_segment_dependents_need_partitioned_at_runtime_and_their_producer_keeps_it() -> None:
    """Consumers written with segments are told to set PartitionedAtRuntime() and why; the runtime producer is
    written as what it is: keyed by whoever triggers it, with the segments its consumers read."""
    notes = schedule_notes(translate([runtime("load", "s3://r"), partitioned("clean", ALLOWED),
                                      partitioned("rollup", ROLLUP)], []))  # fmt: skip
    assert notes["clean"] == (
        f"{AT_RUNTIME}: the coordinator triggers it with a partition_key (its segments apac, eu, us), which Airflow "
        "refuses for any schedule but a partitioned one"
    )
    assert notes["rollup"].startswith(f"{AT_RUNTIME}: the coordinator triggers it with a partition_key (its segments "
                                      "all)")  # fmt: skip
    assert notes["load"] == (
        "schedule: keep schedule=PartitionedAtRuntime(): its partition keys are decided at run time, so its runs are "
        "keyed by whoever triggers them (the coordinator does not: it has no upstreams); written with the segments "
        "its consumers read (apac, eu, us)"
    )


def test_keys_passing_through_an_identity_consumer_need_partitioned_at_runtime_too() -> None:
    """An identity consumer of a runtime producer without segments is triggered with the producer's keys: it is told
    PartitionedAtRuntime(), and the producer's note says each key passes through."""
    notes = schedule_notes(translate([runtime("load", "s3://r"), partitioned("copy", AssetMapping("s3://r",
                                                                                                  "IdentityMapper"))],
                                     []))  # fmt: skip
    assert notes["copy"].startswith(
        f"{AT_RUNTIME}: the coordinator triggers it with a partition_key (the keys of load, decided at run time, pass "
        "through to it)"
    )
    assert notes["load"].endswith("written without segments: each key passes through to the dependents that take it "
                                  "unchanged")  # fmt: skip


def test_unkeyed_dependents_need_schedule_none_and_roots_get_no_note() -> None:
    """A cron dependent is told to set schedule=None, one already None to keep it; the upstream (a root) gets no
    schedule note; no note tells a DAG to set schedule=None twice."""
    minus4 = lambda p: [p - timedelta(hours=4)]  # noqa: E731
    none = replace(dag("n"), schedule=ScheduleFact(ScheduleKind.NONE, "NullTimetable"))
    facts = [dag("u", "0 1 * * *"), dag("d", "0 5 * * *"), none]
    links = [sensor("d", "u", DAILY_5, minus4), sensor("n", "u", DAILY_5, minus4)]
    result = translate(facts, links)
    notes = schedule_notes(result)
    assert notes == {
        "d": "schedule: set schedule=None: the coordinator triggers it for each partition, and a schedule of its own "
        "would start runs besides",
        "n": "schedule: keep schedule=None: the coordinator triggers it",
    }
    assert sum("schedule=None" in f.message for f in result.findings) == 2
