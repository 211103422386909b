"""Assets across deployments (semantics rules 16-17) with real etcd, real watcher processes and two fake Airflows:
the stack's own (instance ``default``, the producer) and a second one (``team_b``, the consumer side).

What the consumer's Airflow would see is its list of asset events: each producer event must be there exactly once,
in the producer's order, with its partition key and the delivery marker, whatever is lost or killed on the way.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.core.assets import MARKER, AssetKeys
from coordinator.watcher.faults import CRASH_EXIT_CODE
from tests.scenario.conftest import Stack, wait_for
from tests.scenario.test_metrics_health import scrape, total
from tests.support.fake_airflow import FakeAirflow

pytestmark = pytest.mark.scenario

URI = "s3://lake/orders"
B = "team_b"
# A short Airflow call timeout: a leader taking over an earlier leader's delivery waits it + 2 s (delivery rule 8).
FAST = {"COORDINATOR_ASSET_INTERVAL_S": "0.2", "COORDINATOR_ERROR_RETRY_S": "1", "COORDINATOR_AIRFLOW_TIMEOUT_S": "3"}


@pytest.fixture
def target(stack: Stack) -> Iterator[FakeAirflow]:
    """The second deployment (``team_b``) knowing the asset, and a dependencies.json routing it both ways."""
    fake = FakeAirflow([]).start()
    stack.add_cleanup(fake.stop)
    fake.add_asset(URI, name="orders")
    stack.fake.add_asset(URI, name="orders")
    stack.set_deps(
        {
            "version": 1,
            "instances": {B: {}},
            "dags": {},
            # Both ways: a copy delivered into team_b must not come back (rule 16c).
            "assets": [
                {"asset": "s3://lake/*", "from": "default", "to": [B]},
                {"asset": "orders", "from": B, "to": ["default"]},
            ],
        }
    )
    instances = stack.tmp_path / "instances.json"
    instances.write_text(json.dumps({B: {"url": fake.url, "username": "admin", "password_env": "B_PASSWORD"}}))
    stack.add_cleanup(instances.unlink)
    yield fake


def start(stack: Stack, name: str = "w1", **env: Any) -> Any:
    settings = {**FAST, **env}
    return stack.start_watcher(
        name, COORDINATOR_INSTANCES_FILE=str(stack.tmp_path / "instances.json"), B_PASSWORD="admin", **settings
    )


def delivered(fake: FakeAirflow) -> list[str]:
    """The markers of the events the coordinator created in ``fake``, in creation order."""
    return [str(e["extra"][MARKER]) for e in fake.asset_events(URI) if MARKER in (e["extra"] or {})]


def wait_delivered(target: FakeAirflow, count: int) -> None:
    wait_for(lambda: len(delivered(target)) >= count, f"{count} delivered events in {B}")


def ledger(stack: Stack) -> dict[str, dict[str, Any]]:
    items = stack.etcd.items(AssetKeys(stack.prefix).deliveries)
    return {key: json.loads(value) for key, value in items.items()}


def statuses_of(stack: Stack) -> dict[int, str]:
    """Each delivery entry's status by its event's id."""
    return {r["event_id"]: r["status"] for r in ledger(stack).values()}


def test_three_events_arrive_once_each_in_order_with_partition_keys_and_never_come_back(
    stack: Stack, target: FakeAirflow
) -> None:
    """Three producer events, one POST answer lost after the effect: three events in team_b, once each, in order,
    each with its partition key, extra and marker; none is forwarded back to the producer; status (text and json)
    shows the stream delivered 3, pending 0."""
    watcher = start(stack)
    target.drop_next(1, endpoint="post_asset_event", after=True)  # the first POST applies, its answer is lost
    ids = [stack.fake.emit_asset_event(URI, partition_key=f"2026-03-0{i}", extra={"rows": i}) for i in (1, 2, 3)]
    wait_delivered(target, 3)
    stack.settle()
    events = [e for e in target.asset_events(URI) if MARKER in e["extra"]]
    assert [e["extra"][MARKER] for e in events] == [f"default:{i}" for i in ids]
    assert [e["partition_key"] for e in events] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [e["extra"]["rows"] for e in events] == [1, 2, 3]
    # The lost answer's event was found by the look-up of the retry, not posted again.
    assert len(target.requests("post_asset_event")) == 3, "an event was posted twice"
    assert target.requests("list_asset_events"), "the retry did not look before posting again"
    assert [e["id"] for e in stack.fake.asset_events(URI)] == ids, "a delivered copy came back to the producer"
    records = ledger(stack)
    assert sorted(r["status"] for r in records.values()) == ["done"] * 3
    assert all(r["target_event_id"] for r in records.values())
    samples = scrape(watcher)
    assert total(samples, "coordinator_asset_events_delivered_total", source="default", target=B) == 3
    assert total(samples, "coordinator_asset_delivery_failures_total", target=B) == 1  # the lost answer
    assert total(samples, "coordinator_asset_events_pending", target=B) == 0
    status = stack.cli("status").stdout
    row = next(line for line in status.splitlines() if URI in line)
    assert [cell.strip() for cell in row.split("│")[1:7]] == [URI, "default", B, "3", "0", "-"], status
    as_json = json.loads(stack.cli("status", "--format", "json").stdout)["assets"]
    expected = {"asset": URI, "from": "default", "to": B, "delivered": 3, "pending": 0, "next_event_id": None}
    assert as_json == [{**expected, "next_error": None, "skipped": 0}], as_json


@pytest.mark.parametrize("point", ["asset-after-intent", "asset-after-post"])
def test_a_watcher_killed_inside_a_delivery_leaves_exactly_one_event(
    stack: Stack, target: FakeAirflow, point: str
) -> None:
    """The leader dies with the intent recorded and nothing posted, or with the event posted and the ledger pending:
    the next leader delivers (or finds) it, and team_b holds it exactly once."""
    first = start(stack, "first", ttl=2, crash_at=point)
    event_id = stack.fake.emit_asset_event(URI, partition_key="2026-03-09")
    wait_for(lambda: not first.alive, "the first watcher to die at the crash point")
    assert first.proc.returncode == CRASH_EXIT_CODE
    posted = len(target.requests("post_asset_event"))
    assert posted == (1 if point == "asset-after-post" else 0)
    assert [r["status"] for r in ledger(stack).values()] == ["pending"]
    start(stack, "second", ttl=2)
    wait_delivered(target, 1)
    stack.settle()
    assert delivered(target) == [f"default:{event_id}"]
    assert len(target.requests("post_asset_event")) == 1, "posted a second time"


def test_an_asset_unknown_in_the_target_waits_and_a_backlog_drains_in_order_after_downtime(
    stack: Stack, target: FakeAirflow
) -> None:
    """An asset team_b does not know stays pending with the reason in the ledger (and in status json), then goes once
    it exists; events
    produced while no watcher ran are all delivered once, in order, when one starts again."""
    other = "s3://lake/refunds"
    stack.fake.add_asset(other)
    watcher = start(stack)
    first = stack.fake.emit_asset_event(other)
    wait_for(lambda: any("not known in the target" in (r.get("last_error") or "") for r in ledger(stack).values()),
             "the reason in the ledger")  # fmt: skip
    # Each retry rewrites the entry as an intent for a moment ("being delivered"): read until the refusal shows.
    refused = f"delivered to {B}: 0, pending 1; next #{first} of default: refused (AssetUnknown"
    why = wait_for(lambda: out if refused in (out := stack.cli("why", "asset", other).stdout) else None, "why: refused")
    assert f"route $.assets[0] shares 's3://lake/*' from default with {B}" in why, why

    def status_row() -> dict[str, Any] | None:
        rows = json.loads(stack.cli("status", "--format", "json").stdout)["assets"]
        (row,) = [r for r in rows if r["asset"] == other]
        return row if "not known in the target" in (row["next_error"] or "") else None

    row = wait_for(status_row, "status: the refusal")
    assert (row["to"], row["delivered"], row["pending"], row["next_event_id"]) == (B, 0, 1, first), row
    target.add_asset(other)
    wait_for(lambda: [e["extra"].get(MARKER) for e in target.asset_events(other)] == [f"default:{first}"], "refunds")

    watcher.stop()
    backlog = [stack.fake.emit_asset_event(other, extra={"n": i}) for i in range(4)]
    start(stack, "w2")
    wait_for(lambda: len(target.asset_events(other)) == 5, "the backlog in team_b")
    stack.settle()
    markers = [e["extra"][MARKER] for e in target.asset_events(other)]
    assert markers == [f"default:{i}" for i in [first, *backlog]]


def hint(stack: Stack) -> None:
    """What the plugin writes when Airflow records an event of ``default``: a nudge to list its events now."""
    change = {"uri": URI, "partition_key": None, "at": "2026-03-01T00:00:00+00:00", "source": "airflow-plugin:default"}
    stack.etcd.put(AssetKeys(stack.prefix).change_key("default"), json.dumps(change))


def test_the_plugin_hint_wakes_the_asset_round_long_before_its_interval(stack: Stack, target: FakeAirflow) -> None:
    """With rounds 10 minutes apart, an event is delivered only because the plugin's hint key was written."""
    start(stack, COORDINATOR_ASSET_INTERVAL_S="600")
    event_id = stack.fake.emit_asset_event(URI)
    stack.settle()
    assert delivered(target) == [], "delivered without a hint: the round ran early"
    hint(stack)
    wait_delivered(target, 1)
    stack.settle()
    assert delivered(target) == [f"default:{event_id}"]


def test_an_event_produced_while_no_watcher_ran_before_any_was_recorded_is_delivered(
    stack: Stack, target: FakeAirflow
) -> None:
    """A watcher that ran (no event yet) and stopped leaves its first mark in etcd: an event produced before the next
    watcher starts is still delivered, once."""
    first = start(stack)
    wait_for(lambda: stack.etcd.get(AssetKeys(stack.prefix).mark_key("default")), "the first listing's mark")
    first.stop()
    event_id = stack.fake.emit_asset_event(URI)
    start(stack, "w2")
    wait_delivered(target, 1)
    stack.settle()
    assert delivered(target) == [f"default:{event_id}"]


def test_an_event_airflow_cannot_list_yet_holds_its_successors_and_all_arrive_in_order_once_it_can(
    stack: Stack, target: FakeAirflow
) -> None:
    """While the producer's Airflow answers 500 for one event (apache/airflow#71360: its consumer run has not
    started), the events before it are delivered, it and its successors wait (the gauge says so), and once it is
    readable all of them arrive once each, in order."""
    watcher = start(stack)
    before = stack.fake.emit_asset_event(URI)
    wait_delivered(target, 1)
    stuck = stack.fake.emit_asset_event(URI)
    stack.fake.set_event_unreadable(stuck)
    after = [stack.fake.emit_asset_event(URI) for _ in range(2)]
    wait_for(lambda: total(scrape(watcher), "coordinator_asset_listing_stopped", instance="default") == 1, "gauge")
    stack.settle()
    assert delivered(target) == [f"default:{before}"], "an event passed the one Airflow could not list"
    assert len(ledger(stack)) == 1, "an event after the unreadable one was recorded"
    stack.fake.set_event_unreadable(stuck, False)
    wait_delivered(target, 4)
    stack.settle()
    assert delivered(target) == [f"default:{i}" for i in [before, stuck, *after]]
    assert total(scrape(watcher), "coordinator_asset_listing_stopped", instance="default") == 0
    assert watcher.lines(r"asset\.listing_stopped instance=default .*apache/airflow#71360"), watcher.tail()


def test_a_look_up_that_cannot_read_the_delivered_copy_waits_instead_of_posting_again(
    stack: Stack, target: FakeAirflow
) -> None:
    """A leader dies after its POST; the copy in team_b cannot be listed (its consumer run has not started,
    apache/airflow#71360): the next leader's look-up does not take that for "not there" and posts nothing until the
    copy is readable, then confirms it: one event in team_b."""
    first = start(stack, "first", ttl=2, crash_at="asset-after-post")
    event_id = stack.fake.emit_asset_event(URI)
    wait_for(lambda: not first.alive, "the first watcher to die at the crash point")
    (copy,) = [e["id"] for e in target.asset_events(URI) if MARKER in e["extra"]]
    target.set_event_unreadable(copy)
    start(stack, "second", ttl=2)

    def waited_or_posted() -> bool:
        posts = len(target.requests("post_asset_event"))
        return posts > 1 or any(r.get("last_error") for r in ledger(stack).values())

    wait_for(waited_or_posted, "the look-up's failure in the ledger")
    stack.settle()
    assert len(target.requests("post_asset_event")) == 1, "posted again while the copy could not be listed"
    target.set_event_unreadable(copy, False)
    wait_for(lambda: [r["status"] for r in ledger(stack).values()] == ["done"], "the confirmation")
    assert delivered(target) == [f"default:{event_id}"]
    assert len(target.requests("post_asset_event")) == 1, "posted a second time"


def skip_event(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return stack.command("skip-event", *args, "--etcd", stack.endpoint, "--prefix", stack.prefix)


def test_an_event_the_target_refuses_for_good_holds_its_stream_until_an_operator_skips_it(
    stack: Stack, target: FakeAirflow
) -> None:
    """team_b refuses one event (422) and its stream waits behind it; `coordinator skip-event` (suggested by `why
    asset`) makes the leader give it up without posting it, the next event arrives, and status counts it skipped."""
    watcher = start(stack, COORDINATOR_ERROR_RETRY_S="600")  # a refusal would wait 10 minutes without the skip
    target.fail_next(1, 422, endpoint="post_asset_event")
    refused = stack.fake.emit_asset_event(URI)
    wait_for(lambda: [r["status"] for r in ledger(stack).values()] == ["error"], "the refusal in the ledger")
    later = stack.fake.emit_asset_event(URI)
    stack.settle()
    assert delivered(target) == [], "an event passed the refused one"
    command = f"coordinator skip-event {URI} {refused} --from default --to {B} --reason TEXT"
    assert command in stack.cli("why", "asset", URI).stdout
    assert skip_event(stack, URI, str(later), "--from", "default", "--to", B).returncode == 1, "no entry: nothing"
    done = skip_event(stack, URI, str(refused), "--from", "default", "--to", B, "--reason", "bad extra")
    assert done.returncode == 0 and "skip requested" in done.stdout, done.stderr
    wait_delivered(target, 1)
    stack.settle()
    assert delivered(target) == [f"default:{later}"]
    assert len(target.requests("post_asset_event")) == 2, "the skipped event was posted again"
    records = {r["event_id"]: r for r in ledger(stack).values()}
    assert records[refused]["status"] == "skipped" and records[refused]["skip"]["reason"] == "bad extra"
    (row,) = json.loads(stack.cli("status", "--format", "json").stdout)["assets"]
    assert (row["delivered"], row["skipped"], row["pending"]) == (1, 1, 0), row
    assert total(scrape(watcher), "coordinator_asset_events_skipped_total", source="default", target=B) == 1
    again = skip_event(stack, URI, str(refused), "--from", "default", "--to", B)
    assert again.returncode == 0 and "already skipped" in again.stdout


def test_a_skip_request_reaches_the_leader_through_its_watch_not_at_the_next_asset_round(
    stack: Stack, target: FakeAirflow
) -> None:
    """With asset rounds 10 minutes apart (events are listed only on the plugin's hint) and a refusal retried after
    10 minutes, `coordinator skip-event` alone gets the refused head skipped and the next event delivered."""
    start(stack, COORDINATOR_ASSET_INTERVAL_S="600", COORDINATOR_ERROR_RETRY_S="600")
    target.fail_next(1, 422, endpoint="post_asset_event")
    refused = stack.fake.emit_asset_event(URI)
    hint(stack)
    wait_for(lambda: [r["status"] for r in ledger(stack).values()] == ["error"], "the refusal in the ledger")
    later = stack.fake.emit_asset_event(URI)
    hint(stack)
    events = AssetKeys(stack.prefix).events
    wait_for(lambda: len(stack.etcd.items(events)) == 2, "the later event recorded")
    stack.settle()  # the hint's second round (a second later) is over too: no round is due for 10 minutes
    assert delivered(target) == [], "an event passed the refused one"
    done = skip_event(stack, URI, str(refused), "--from", "default", "--to", B)
    assert done.returncode == 0 and "skip requested" in done.stdout, done.stderr
    wait_delivered(target, 1)
    # The ledger says done only after team_b's answer is back: wait for that write, then let the rounds settle.
    statuses = {refused: "skipped", later: "done"}
    wait_for(lambda: statuses_of(stack) == statuses, "the later one done")
    stack.settle()
    assert delivered(target) == [f"default:{later}"]
    assert statuses_of(stack) == statuses


def test_coordinator_retention_prunes_delivered_events_in_a_running_watcher(stack: Stack, target: FakeAirflow) -> None:
    """COORDINATOR_RETENTION=1d reaches the leader's asset job: of three delivered events (3 and 2 days old, and
    new) the two old ones and their delivery entries are deleted; team_b holds each event once."""
    now = datetime.now(UTC)
    ids = [stack.fake.emit_asset_event(URI, at=now - age) for age in (timedelta(days=3), timedelta(days=2))]
    ids.append(stack.fake.emit_asset_event(URI))
    start(stack, COORDINATOR_RETENTION="1d", COORDINATOR_ASSET_LOOKBACK_S=str(5 * 86400))
    keys = AssetKeys(stack.prefix)
    wait_delivered(target, 3)
    wait_for(lambda: len(stack.etcd.items(keys.events)) == 1, "the two old events pruned")
    assert [k.rsplit("/", 1)[-1] for k in stack.etcd.items(keys.events)] == [str(ids[-1])]
    assert [k.rsplit("/", 1)[-1] for k in ledger(stack)] == [str(ids[-1])]
    stack.settle()
    assert delivered(target) == [f"default:{i}" for i in ids]


# -- delivery rules 8 and 9: the leader-lease race on a POST in flight -------------------------------------------------


def post_requests(fake: FakeAirflow) -> list[Any]:
    return fake.requests("post_asset_event")


def test_a_leader_killed_with_its_post_held_by_the_target_leaves_one_event_after_the_takeover(
    stack: Stack, target: FakeAirflow
) -> None:
    """Rule 8: team_b holds A's POST and creates the event only when it answers (5 s later, A long dead); B takes
    over within the TTL, waits for A's call (its timeout, 6 s, + 2 s) before looking, finds A's event: one event."""
    timeout = {"COORDINATOR_AIRFLOW_TIMEOUT_S": "6"}
    a = start(stack, "a", ttl=2, **timeout)
    b = start(stack, "b", ttl=2, ready="loaded", **timeout)
    target.delay_next(1, 5.0, endpoint="post_asset_event")  # held BEFORE the effect: created when it answers
    event_id = stack.fake.emit_asset_event(URI)
    wait_for(lambda: [r for r in post_requests(target) if r.status is None], "A's POST held by team_b")
    a.kill9()
    b.wait_log(r"asset\.delivery_deferred .*reason=entry_of_an_earlier_term")
    # Both ends must be over before counting: A's held POST answered (its event created though A is gone) and B's
    # delivery confirmed in the ledger.
    wait_for(lambda: all(r.status is not None for r in post_requests(target)), "A's held POST to be answered")
    wait_for(lambda: [r["status"] for r in ledger(stack).values()] == ["done"], "the delivery confirmed")
    stack.settle()
    assert delivered(target) == [f"default:{event_id}"], "the next leader posted a second event"
    assert len(post_requests(target)) == 1, "the next leader posted again"
    assert [r["watcher"] for r in ledger(stack).values()] == ["b"]


def test_a_leader_frozen_between_intent_and_post_past_its_lease_never_posts_once_resumed(
    stack: Stack, target: FakeAirflow
) -> None:
    """Rule 9: A is frozen (SIGSTOP) right after recording its intent; B takes over and delivers; A, resumed with
    its lease long expired, withholds its POST: team_b holds exactly one event."""
    timeout = {"COORDINATOR_AIRFLOW_TIMEOUT_S": "3"}
    a = start(stack, "a", ttl=2, crash_at="stop@asset-after-intent", **timeout)
    b = start(stack, "b", ttl=2, ready="loaded", **timeout)
    event_id = stack.fake.emit_asset_event(URI)
    a.wait_log(r"fault\.freeze point=asset-after-intent")
    wait_for(lambda: [r["watcher"] for r in ledger(stack).values()] == ["b"], "B to take the delivery over")
    wait_for(lambda: [r["status"] for r in ledger(stack).values()] == ["done"], "B's delivery confirmed")
    assert len(post_requests(target)) == 1
    a.thaw()
    a.wait_log(r"asset\.post_withheld .*reason=lease_in_doubt")
    stack.settle()
    assert delivered(target) == [f"default:{event_id}"], "the resumed leader posted a second event"
    assert len(post_requests(target)) == 1, "the resumed leader posted"
    assert a.alive and b.alive
