"""Which partitions an Airflow run stands for (``coordinator.core.run_partition``, semantics
`asset-triggered-partitions`): every kind of run measured on Airflow 3.3 (``docs/keys.md``, "Partitions"), runs
that merged events of several partitions, and keys that name no partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from coordinator.core.run_partition import (
    AirflowRun,
    ConsumedEvent,
    RunPartitions,
    Unrecorded,
    own_partition,
    run_partitions,
)

DAY = datetime(2026, 11, 26, tzinfo=UTC)
HOUR = datetime(2026, 11, 26, 17, tzinfo=UTC)
BERLIN = timezone(timedelta(hours=1))


def _asset_run(*events: ConsumedEvent) -> AirflowRun:
    return AirflowRun(run_type="asset_triggered", consumed=events)


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        pytest.param(AirflowRun(DAY, run_type="manual"), ("2026-11-26T00:00:00Z",), id="rest-with-logical-date"),
        pytest.param(AirflowRun(DAY, run_type="scheduled"), ("2026-11-26T00:00:00Z",), id="cron-scheduled"),
        pytest.param(
            AirflowRun(None, HOUR, "2026-11-26T17:00:00", "scheduled"),
            ("2026-11-26T17:00:00Z",),
            id="cron-partition-timetable-own-run",
        ),
        pytest.param(
            AirflowRun(None, HOUR.astimezone(BERLIN), "2026-11-26T18:00:00", "manual"),
            ("2026-11-26T17:00:00Z",),
            id="cron-partition-rest-key-in-berlin",
        ),
        pytest.param(
            AirflowRun(DAY, HOUR, "2026-11-26T17:00:00", "manual"),
            ("2026-11-26T00:00:00Z",),
            id="rest-with-logical-date-and-key",
        ),
        pytest.param(AirflowRun(None, None, "eu", "manual"), ("eu",), id="partitioned-at-runtime-segment"),
        pytest.param(
            AirflowRun(None, DAY, "2026-11-26T00:00:00|eu", "manual"),
            ("2026-11-26T00:00:00Z~eu",),
            id="product-key-time-and-segment",
        ),
        pytest.param(
            AirflowRun(DAY, None, "eu", "manual"), ("2026-11-26T00:00:00Z~eu",), id="logical-date-and-segment-key"
        ),
        pytest.param(
            AirflowRun(None, None, "2026-11-26T00:00:00Z|eu", "manual"),
            ("2026-11-26T00:00:00Z~eu",),
            id="key-time-with-zone-no-date",
        ),
    ],
)
def test_each_kind_of_run_stands_for_its_own_partition(run: AirflowRun, expected: tuple[str, ...]) -> None:
    """Time, Segment, Own partition: logical date, else partition date, else zoned key time; and the key's segment."""
    assert run_partitions(run) == RunPartitions(expected)


def test_an_asset_triggered_run_stands_for_its_source_runs_partition() -> None:
    """Consumed partitions: a dateless asset-triggered run stands for its consumed event's source run's partition."""
    run = _asset_run(ConsumedEvent(source=AirflowRun(DAY, run_type="scheduled")))
    assert run_partitions(run) == RunPartitions(("2026-11-26T00:00:00Z",), consumed=True)


def test_a_run_that_merged_two_dates_stands_for_each_once() -> None:
    """Consumed partitions: events of two dates (one of them twice) give both dates, sorted, each once."""
    day2 = DAY + timedelta(days=1)
    run = _asset_run(
        ConsumedEvent(source=AirflowRun(day2)),
        ConsumedEvent(source=AirflowRun(DAY)),
        ConsumedEvent(source=AirflowRun(day2)),
    )
    assert run_partitions(run).partitions == ("2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z")


def test_an_event_without_a_readable_source_counts_by_its_own_key() -> None:
    """Consumed partitions: an event whose source run is unknown (a REST event) stands for its own partition key."""
    run = _asset_run(ConsumedEvent(partition_key="eu"), ConsumedEvent())
    assert run_partitions(run) == RunPartitions(("eu",), consumed=True)


def test_the_source_run_decides_over_the_events_key() -> None:
    """Consumed partitions: the source run's partition (how the upstream was recorded) wins over the event's own key."""
    run = _asset_run(ConsumedEvent(partition_key="eu", source=AirflowRun(DAY)))
    assert run_partitions(run).partitions == ("2026-11-26T00:00:00Z",)


def test_an_asset_triggered_source_passes_on_what_it_consumed() -> None:
    """Consumed partitions: a chain of asset-triggered runs carries the first dated run's partition down."""
    middle = _asset_run(ConsumedEvent(source=AirflowRun(DAY)))
    assert run_partitions(_asset_run(ConsumedEvent(source=middle))).partitions == ("2026-11-26T00:00:00Z",)


def test_an_asset_triggered_run_with_its_own_key_is_not_read_by_its_events() -> None:
    """Own partition before Consumed partitions: a partitioned asset consumer stands for its own key."""
    run = AirflowRun(None, None, "eu", "asset_triggered", (ConsumedEvent(source=AirflowRun(DAY)),))
    assert run_partitions(run) == RunPartitions(("eu",))


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        pytest.param(AirflowRun(run_type="manual"), Unrecorded.NO_PARTITION, id="manual-without-anything"),
        pytest.param(_asset_run(), Unrecorded.NO_PARTITION, id="asset-triggered-without-events"),
        pytest.param(
            _asset_run(ConsumedEvent(), ConsumedEvent(source=AirflowRun(run_type="manual"))),
            Unrecorded.NO_PARTITION,
            id="asset-triggered-sources-without-partition",
        ),
        pytest.param(
            AirflowRun(partition_key="a b", run_type="manual"), Unrecorded.UNUSABLE_PARTITION_KEY, id="bad-characters"
        ),
        pytest.param(
            AirflowRun(partition_key="eu|sales", run_type="manual"),
            Unrecorded.UNUSABLE_PARTITION_KEY,
            id="two-segment-parts",
        ),
        pytest.param(
            AirflowRun(partition_key="2026-11-26T17:00:00", run_type="manual"),
            Unrecorded.UNUSABLE_PARTITION_KEY,
            id="time-without-zone-and-no-partition-date",
        ),
        pytest.param(
            AirflowRun(partition_key="2026-13-45", run_type="manual"),
            Unrecorded.UNUSABLE_PARTITION_KEY,
            id="date-written-wrong",
        ),
        pytest.param(
            _asset_run(ConsumedEvent(partition_key="a b")),
            Unrecorded.UNUSABLE_PARTITION_KEY,
            id="asset-triggered-event-key-unusable",
        ),
        pytest.param(
            AirflowRun(DAY + timedelta(microseconds=5), run_type="manual"),
            Unrecorded.UNNAMEABLE_DATE,
            id="sub-second-logical-date",
        ),
        pytest.param(AirflowRun(datetime(2026, 1, 1), run_type="manual"), Unrecorded.UNNAMEABLE_DATE, id="naive-date"),
    ],
)
def test_runs_that_stand_for_no_partition_say_why(run: AirflowRun, reason: Unrecorded) -> None:
    """Unrecorded: no partition is ever invented; the reason names what was missing or unusable."""
    found = run_partitions(run)
    assert found.partitions == () and found.unrecorded is reason and found.detail


def test_a_logical_date_partition_is_exactly_todays() -> None:
    """A run with a logical date and no key stands for canonical_partition(logical date), as before keys existed."""
    assert own_partition(AirflowRun(datetime(2026, 1, 1, 1, tzinfo=BERLIN))).partitions == ("2026-01-01T00:00:00Z",)
