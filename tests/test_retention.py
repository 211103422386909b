"""Semantics rule 11 (retention), pure: durations, the floor, what prune selects, retired decisions, forgetting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.core.actions import Resume, Trigger
from coordinator.core.model import RunState, TriggerStatus, dump_record
from coordinator.core.retention import (
    KeepReason,
    KeyKind,
    RetentionFloor,
    Retirement,
    cutoff_before,
    cutoff_problem,
    dump_floor,
    facts_from_kvs,
    facts_from_view,
    forget_retired,
    next_floor,
    parse_duration,
    parse_floor,
    select,
)
from coordinator.core.spec.loader import parse_spec
from tests.support.examples import examples
from tests.support.world import P1, P2, SEVEN, World, n

NOW = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
FLOOR_P2 = RetentionFloor(before=P2, by="prune@test", at=datetime(2026, 2, 1, tzinfo=UTC))
PIPES = tuple(f"0{i}_pipeline" for i in range(2, 8))


def cascaded(*partitions: str) -> World:
    world = World(SEVEN)
    world.adopt()
    for p in partitions:
        world.state("01_pipeline", p, RunState.SUCCESS, f"scheduled__{p}")
    world.settle()
    return world


def triggers(world: World, floor: RetentionFloor | None) -> list[Trigger]:
    plan = Retirement(world.graph, floor).apply(world.plan())
    return [a for a in plan.actions if isinstance(a, Trigger)]


def kvs(world: World) -> list[tuple[str, bytes, int]]:
    """The world's keys as a snapshot would hand them out (value bytes rebuilt from the view's records)."""
    found = [(world.keys.run_key(node, p), dump_record(f.record), f.rev) for (node, p), f in world.view.runs.items()]
    found += [(world.keys.trigger_key(node, p), dump_record(f.record), f.mod_rev)
              for (node, p), f in world.view.ledger.items()]  # fmt: skip
    found += [(world.keys.config_key(f"backfill/{node.instance}/{node.dag_id}/{p}"), b"{}", rev)
              for (node, p), rev in world.view.backfills.items()]  # fmt: skip
    return sorted(found)


# -- durations, cutoffs, the floor -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90d", 90 * 86400), ("12h", 43200), ("2w", 14 * 86400), ("1d12h", 129600), ("45m", 2700), (" 30S ", 30)],
    ids=["days", "hours", "weeks", "combined", "minutes", "spaces-and-case"],
)
def test_durations_parse(text: str, seconds: int) -> None:
    """Durations are numbers with units s, m, h, d, w, combinable."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "90", "d", "3y", "-1d", "0d", "1.5d", "90 days"],
                         ids=["empty", "no-unit", "no-number", "unknown-unit", "negative", "zero", "fraction",
                              "words"])  # fmt: skip
def test_bad_durations_are_refused_with_the_accepted_form(text: str) -> None:
    """Anything but positive whole numbers with a known unit is a ValueError that says what is accepted."""
    with pytest.raises(ValueError, match=r"invalid duration .*(90d|zero)"):
        parse_duration(text)


def test_older_than_cuts_at_the_whole_second_and_future_cutoffs_are_refused() -> None:
    """--older-than's cutoff is now minus the duration to the second; a cutoff after now is a problem."""
    assert cutoff_before(NOW, timedelta(days=1)) == "2026-02-28T12:30:15Z"
    assert cutoff_problem("2026-03-01T12:30:15Z", NOW) is None
    problem = cutoff_problem("2026-03-02T00:00:00Z", NOW)
    assert problem is not None and "in the future" in problem


def test_the_floor_only_moves_forward_unless_lowered() -> None:
    """A later cutoff raises the floor; an earlier one keeps it, unless explicitly lowered (rule 11d)."""
    assert next_floor(None, P1) == P1
    assert next_floor(FLOOR_P2, P1) == P2
    assert next_floor(FLOOR_P2, "2026-02-01T00:00:00Z") == "2026-02-01T00:00:00Z"
    assert next_floor(FLOOR_P2, P1, lower=True) == P1


def test_floor_values_round_trip_and_garbage_is_reported() -> None:
    """The stored floor parses back; a non-canonical or non-JSON value is no floor plus a reason."""
    assert parse_floor(dump_floor(FLOOR_P2)) == (FLOOR_P2, None)
    assert json.loads(dump_floor(FLOOR_P2))["before"] == P2
    for raw in (b"nope", b'{"before": "2026-01-02"}', b"{}"):
        floor, problem = parse_floor(raw)
        assert floor is None and problem
    assert "retired by retention since 2026-02-01T00:00:00+00:00 (set by prune@test)" in FLOOR_P2.describe()


# -- selection (rule 11e) ----------------------------------------------------------------------------------------


def test_selection_deletes_old_partitions_and_keeps_held_ones_whole_with_reasons() -> None:
    """Keys before the cutoff go, oldest first; a partition with an unfinished intent or an active run stays whole."""
    old, held_intent, held_run = "2025-12-01T00:00:00Z", "2025-12-02T00:00:00Z", "2025-12-03T00:00:00Z"
    world = cascaded(old, held_intent, held_run, P1)
    world.backfill("02_pipeline", old)
    ledger = world.view.ledger[(n("06_pipeline"), held_intent)]
    pending = ledger.record.model_copy(update={"status": TriggerStatus.PENDING})
    world.write(world.keys.trigger_key(n("06_pipeline"), held_intent), dump_record(pending))
    world.state("03_pipeline", held_run, RunState.RUNNING, clear_number=1)
    snapshot = [*kvs(world), (world.keys.run_key(n("x"), old), b"garbage", 1), (world.keys.runs + "x/bad", b"{}", 1)]

    selection = select(facts_from_kvs(world.keys, snapshot, P1), P1)

    assert selection.partitions == [old]
    # 7 runs + the garbage one; 6 ledgers
    assert selection.counts == {"run": 8, "ledger": 6, "backfill": 1, "permit": 0}
    assert [k.partition for k in selection.kept] == [held_intent, held_run]
    assert selection.kept[0].reasons == (KeepReason.UNFINISHED_INTENT,)
    assert selection.kept[0].details == (
        "default/06_pipeline: intent pending (create coordinator__2025-12-02T00:00:00Z)",
    )
    assert selection.kept[1].reasons == (KeepReason.ACTIVE_RUN,)
    assert "default/03_pipeline: running" in selection.kept[1].details[0]
    assert selection.kept_counts() == {"unfinished intent": 1, "queued or running run": 1}
    assert all(f.partition < P1 for f in selection.delete)


def test_the_view_and_a_snapshot_select_the_same_keys() -> None:
    """The leader's selection from its view equals the command's from a snapshot (parsable keys)."""
    world = cascaded("2025-12-01T00:00:00Z", "2025-12-02T00:00:00Z", P1)
    world.backfill("02_pipeline", "2025-12-02T00:00:00Z")
    world.state("04_pipeline", "2025-12-02T00:00:00Z", RunState.QUEUED, clear_number=1)
    from_view = select(facts_from_view(world.view, P1), P1)
    from_snapshot = select(facts_from_kvs(world.keys, kvs(world), P1), P1)
    assert from_view == from_snapshot
    assert {f.kind for f in from_view.delete} == {KeyKind.RUN, KeyKind.LEDGER}


# -- retired decisions (rules 11b, 11c) ------------------------------------------------------------------------------


def old_partition_world() -> tuple[World, list[str]]:
    """A finished cascade in P1 with every kind of history a deletion could "withdraw": a rerun after a clear, a DAG
    that failed for its current inputs, and a DAG that ran on its own (no ledger); P2 is live."""
    world = cascaded(P1)
    world.state("01_pipeline", P1, RunState.RUNNING, f"scheduled__{P1}", clear_number=1)
    world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}", clear_number=1)
    world.settle(fail=["05_pipeline"])
    world.write(world.keys.trigger_key(n("02_pipeline"), P1), None)  # as if 02 had run on its own: no ledger
    assert triggers(world, None) == []
    return world, [key for key, _, _ in kvs(world) if key.endswith(P1)]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_deleting_a_retired_partition_in_any_order_triggers_nothing(data: st.DataObject) -> None:
    """Whatever order and batching a prune's deletes take, no plan between them triggers anything (rule 11b)."""
    world, keys = old_partition_world()
    order = data.draw(st.permutations(keys))
    for key in order:
        world.write(key, None)
        assert triggers(world, FLOOR_P2) == [], f"after deleting {key}"


def test_without_the_floor_some_deletion_order_would_trigger() -> None:
    """Why the floor exists: deleting a DAG's failed run ahead of its ledger, or a self-run DAG's success ahead of
    its upstream's, makes it due again."""
    world, _ = old_partition_world()
    world.write(world.keys.trigger_key(n("05_pipeline"), P1), None)  # the ledger that said "already triggered"
    assert {(t.node, t.action) for t in triggers(world, None)} == {(n("05_pipeline"), "clear")}
    assert triggers(world, FLOOR_P2) == []
    world, _ = old_partition_world()
    world.write(world.keys.run_key(n("02_pipeline"), P1), None)
    assert [t.node for t in triggers(world, None)] == [n("02_pipeline")]
    assert triggers(world, FLOOR_P2) == []


def test_a_new_write_in_a_retired_partition_triggers_nothing_and_live_ones_cascade() -> None:
    """An old date rerun in Airflow after it was retired cascades nowhere; a live partition cascades as before."""
    world = cascaded(P1)
    world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}", clear_number=1)
    assert {t.node for t in triggers(world, None)} == {n(d) for d in ("02_pipeline", "03_pipeline", "04_pipeline",
                                                                        "05_pipeline")}  # fmt: skip
    assert triggers(world, FLOOR_P2) == []
    world.state("01_pipeline", P2, RunState.SUCCESS)
    assert {t.partition for t in triggers(world, FLOOR_P2)} == {P2}


def test_an_unfinished_intent_in_a_retired_partition_is_still_completed() -> None:
    """Rule 11c: a pending intent recorded before retirement yields its Resume; the verdict says retired."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS)
    for action in world.plan().actions:
        world.apply_action(action, crash_after_intent=True)
    plan = Retirement(world.graph, FLOOR_P2).apply(world.plan())
    assert {a.node for a in plan.actions if isinstance(a, Resume)} == {n(d) for d in PIPES[:4]}
    verdict = Retirement(world.graph, FLOOR_P2).apply(world.plan([P1])).verdicts[(n("02_pipeline"), P1)]
    assert not verdict.due and "02_pipeline is retired for 2026-01-01T00:00:00Z: partitions before" in verdict.summary


DAY, NEXT = "2025-03-10T00:00:00Z", "2025-03-11T00:00:00Z"


def grid_world(dags: dict[str, object]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


@pytest.mark.parametrize(
    ("dags", "node", "live", "retired"),
    [
        ({"daily": {"partitions": {"cron": "0 0 * * *"}},
          "hourly": {"partitions": {"cron": "0 * * * *"}, "upstreams": "daily"}},
         "hourly", ["2025-03-11T00:00:00Z"], ["2025-03-10T12:00:00Z", "2025-03-10T23:00:00Z"]),
        ({"hourly": {"partitions": {"cron": "0 * * * *"}},
          "daily": {"partitions": {"cron": "0 0 * * *"}, "upstreams": "hourly"}},
         "daily", [NEXT], [DAY]),
        ({"a": {"partitions": {"cron": "0 0 * * *"}},
          "b": {"partitions": {"cron": "0 0 * * *"}, "upstreams": [{"dag": "a", "offset": -1}]}},
         "b", ["2025-03-12T00:00:00Z"], [NEXT]),
    ],
    ids=["fan-out-hour-of-a-retired-day", "rollup-from-the-floor-is-live", "offset-reads-a-retired-yesterday"],
)  # fmt: skip
def test_a_window_that_reaches_below_the_floor_is_retired_whole(
    dags: dict[str, object], node: str, live: list[str], retired: list[str]
) -> None:
    """Rule 11b with grids: a decision is retired when any partition it reads (rule 10) is before the floor."""
    floor = RetentionFloor(before="2025-03-10T12:00:00Z" if node == "hourly" else NEXT)
    retirement = Retirement(grid_world(dags).graph, floor)
    for p in live:
        assert retirement.why_retired(n(node), p) is None, p
    for p in retired:
        assert retirement.why_retired(n(node), p) is not None, p


def test_a_fan_out_of_a_retired_day_triggers_no_live_hour() -> None:
    """A daily rerun of a retired day reaches hourly partitions after the floor: none is triggered."""
    world = grid_world({"daily": {"partitions": {"cron": "0 0 * * *"}},
                        "hourly": {"partitions": {"cron": "0 * * * *"}, "upstreams": "daily"}})  # fmt: skip
    world.state("daily", DAY, RunState.SUCCESS)
    assert len(triggers(world, None)) == 24
    assert triggers(world, RetentionFloor(before="2025-03-10T12:00:00Z")) == []


# -- forgetting (rule 11f) -----------------------------------------------------------------------------------------


def test_the_view_forgets_retired_partitions_except_those_with_an_unfinished_intent() -> None:
    """Retired partitions leave the view (their facts are returned); one with a pending intent stays whole."""
    old, held = "2025-12-01T00:00:00Z", "2025-12-02T00:00:00Z"
    world = cascaded(old, held, P2)
    ledger = world.view.ledger[(n("02_pipeline"), held)]
    world.write(world.keys.trigger_key(n("02_pipeline"), held),
                dump_record(ledger.record.model_copy(update={"status": TriggerStatus.ERROR})))  # fmt: skip
    dropped = forget_retired(world.view, FLOOR_P2)
    assert sorted(world.view.partitions) == [held, P2]
    assert {f.partition for f in dropped} == {old} and len(dropped) == 13
    assert not any(p == old for _, p in world.view.runs) and not any(p == old for _, p in world.view.ledger)
    assert forget_retired(world.view, None) == []
