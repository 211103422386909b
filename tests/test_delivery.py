"""The asset delivery protocol (coordinator/core/delivery.py) and its planner (coordinator/core/assets.py): example
tables per numbered rule, then a Hypothesis search that crashes, loses answers and re-creates assets at every step
and checks that the target holds exactly one event per source event, in the source's order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core import delivery as d
from coordinator.core.assets import (
    MARKER,
    AssetEventFact,
    AssetRoute,
    DeliveryRecord,
    DeliveryStatus,
    DueDelivery,
    Ledger,
    SkipRequest,
    SourceEvent,
    due_deliveries,
    is_delivered_copy,
    prunable,
    streams,
    targets_of,
    why_asset,
)
from coordinator.core.effects import MOVED, SKIPPED, End, Ending, RecordError
from tests.support.examples import examples

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URI = "s3://lake/orders"
ROUTES = (AssetRoute("s3://lake/*", "team_a", ("team_b",)),)
RETRY_S = 30.0
#: A term that began long ago (rule 8 never defers under it): for the rules that are not about terms.
OLD_TERM = d.Term(revision=1, look_after=NOW - timedelta(hours=1))


def fact(event_id: int, uri: str = URI, partition_key: str | None = None) -> SourceEvent:
    return SourceEvent(
        "team_a",
        AssetEventFact(
            event_id=event_id, uri=uri, timestamp=NOW, partition_key=partition_key, extra={"rows": event_id}
        ),
    )


def due(event_id: int = 7, record: DeliveryRecord | None = None, rev: int = 0, **kw: str | None) -> DueDelivery:
    return DueDelivery(fact(event_id, **kw), "team_b", record, rev)  # type: ignore[arg-type]


ASSET = d.TargetAsset(asset_id=3, uri=URI)


def recorded(item: DueDelivery, rev: int = 10) -> tuple[d.DeliveryState, d.Instruction]:
    state, _ = d.start(item, NOW, "w1", RETRY_S, OLD_TERM)
    return d.step(state, d.LedgerWritten(rev), NOW)


# -- rules 16a-e: routes and what is due -------------------------------------------------------------------------------


def test_routes_match_uri_or_name_with_wildcards_and_never_route_back_to_the_source() -> None:
    """A route matches an asset by URI or by name, wildcards included; its own source is never a target."""
    routes = (AssetRoute("orders_*", "team_a", ("team_b", "team_a")), AssetRoute("s3://x/*", "team_a", ("team_c",)))
    assert targets_of(routes, "team_a", "s3://y/1", "orders_eu") == ("team_b",)
    assert targets_of(routes, "team_a", "s3://x/1", None) == ("team_c",)
    assert targets_of(routes, "team_b", "s3://x/1", "orders_eu") == ()


def test_only_the_oldest_undelivered_event_of_a_stream_is_due() -> None:
    """Per (target, source, asset) events go in id order: the second waits until the first is done."""
    events = [fact(9), fact(4), fact(6, uri="s3://lake/other")]
    due_now = due_deliveries(events, Ledger({}), ROUTES, NOW)
    assert sorted((x.event.fact.uri, x.event.fact.event_id) for x in due_now) == [(URI, 4), ("s3://lake/other", 6)]
    done = DeliveryRecord(status=DeliveryStatus.DONE, source="team_a", event_id=4, uri=URI, requested_at=NOW)
    after = due_deliveries(events, Ledger({("team_b", "team_a", URI, 4): (done, 11)}), ROUTES, NOW)
    assert (URI, 9) in [(x.event.fact.uri, x.event.fact.event_id) for x in after]


def test_an_errored_delivery_waits_for_its_retry_time() -> None:
    """A delivery in error is due again only once retry_at has passed (rule 16e)."""
    failed = DeliveryRecord(
        status=DeliveryStatus.ERROR, source="team_a", event_id=4, uri=URI, requested_at=NOW,
        retry_at=NOW + timedelta(seconds=30),
    )  # fmt: skip
    ledger = Ledger({("team_b", "team_a", URI, 4): (failed, 11)})
    assert due_deliveries([fact(4)], ledger, ROUTES, NOW) == []
    assert len(due_deliveries([fact(4)], ledger, ROUTES, NOW + timedelta(seconds=31))) == 1


def test_events_the_coordinator_created_are_recognised_by_their_marker() -> None:
    """An event carrying the delivery marker in extra is a delivered copy (never forwarded again)."""
    assert is_delivered_copy({MARKER: "team_a:4"})
    assert not is_delivered_copy({"rows": 3}) and not is_delivered_copy(None)


def test_retention_prunes_only_old_delivered_events_the_audit_can_no_longer_list() -> None:
    """Prunable: delivered to every target, older than the cutoff and than the audit's mark; never the newest."""
    hour = timedelta(hours=1)

    def at(event_id: int, age: timedelta) -> SourceEvent:
        return SourceEvent("team_a", AssetEventFact(event_id=event_id, uri=URI, timestamp=NOW - age))

    done = DeliveryRecord(status=DeliveryStatus.DONE, source="team_a", event_id=1, uri=URI, requested_at=NOW)
    ledger = Ledger(dict.fromkeys([("team_b", "team_a", URI, i) for i in (1, 2, 3, 4)], (done, 20)))
    events = [at(1, 5 * hour), at(2, 4 * hour), at(3, 3 * hour), at(4, 2 * hour), at(5, 0 * hour)]
    cutoff = NOW - 2.5 * hour
    assert [e.fact.event_id for e, _ in prunable(events, ledger, ROUTES, cutoff, timedelta(minutes=1))] == [1, 2, 3]
    # Within the audit's overlap of the newest event: kept, or the audit would record it again as new.
    assert [e.fact.event_id for e, _ in prunable(events, ledger, ROUTES, cutoff, 4.5 * hour)] == [1]
    undelivered = Ledger({k: v for k, v in ledger.entries.items() if k[3] != 2})
    assert [e.fact.event_id for e, _ in prunable(events, undelivered, ROUTES, cutoff, timedelta(0))] == [1, 3]
    # The newest event of an asset stays even when old and delivered.
    assert prunable(events[:1], ledger, ROUTES, NOW, timedelta(0)) == []


# -- rule 1: intent first --------------------------------------------------------------------------------------------


def test_rule1_a_delivery_starts_with_a_pending_entry_compared_with_the_planned_revision() -> None:
    """The first instruction writes a pending entry guarded by the revision the planner saw."""
    _, first = d.start(due(rev=0), NOW, "w1", RETRY_S, OLD_TERM)
    assert isinstance(first, d.WriteLedger) and first.expected_rev == 0
    assert first.record.status is DeliveryStatus.PENDING and first.record.event_id == 7


def test_rule1_a_moved_entry_ends_the_attempt_without_any_call() -> None:
    """A lost compare-and-swap ends the attempt: nothing is resolved or posted."""
    state, _ = d.start(due(), NOW, "w1", RETRY_S, OLD_TERM)
    _, nxt = d.step(state, d.LedgerMoved(), NOW)
    assert nxt == MOVED


# -- rules 2-4: resolve, look before a repeat, post with the marker ---------------------------------------------------


def test_rule3_a_fresh_intent_posts_without_looking() -> None:
    """An entry recorded from nothing cannot have been sent: resolve, then post at once."""
    state, resolve = recorded(due())
    assert isinstance(resolve, d.Resolve) and not resolve.fresh
    _, post = d.step(state, d.Resolved(ASSET), NOW)
    assert isinstance(post, d.Post)
    assert post.extra == {"rows": 7, MARKER: "team_a:7"}


def test_rule3_a_resumed_entry_looks_first_and_confirms_what_it_finds() -> None:
    """A pending entry (a crash after the intent) looks the marker up and confirms a found event without posting."""
    pending = DeliveryRecord(status=DeliveryStatus.PENDING, source="team_a", event_id=7, uri=URI, requested_at=NOW)
    state, _ = recorded(due(record=pending, rev=5))
    state, look = d.step(state, d.Resolved(ASSET), NOW)
    assert isinstance(look, d.Look) and look.marker == "team_a:7"
    _, confirm = d.step(state, d.Looked(41), NOW)
    assert isinstance(confirm, d.WriteLedger) and confirm.record.status is DeliveryStatus.DONE
    assert confirm.record.target_event_id == 41


def test_rule2_an_asset_unknown_in_the_target_stays_pending_with_a_reason() -> None:
    """The target does not know the asset: an error entry saying so, retried; never dropped."""
    state, _ = recorded(due())
    _, write = d.step(state, d.Resolved(None), NOW)
    assert isinstance(write, d.WriteLedger) and write.record.status is DeliveryStatus.ERROR
    assert "not known in the target" in (write.record.last_error or "")
    assert write.record.retry_at == NOW + timedelta(seconds=RETRY_S)


def test_rule4_partition_keys_are_carried_and_dropped_only_for_airflow_2() -> None:
    """The partition key goes with the event to Airflow 3; an Airflow 2 target gets none and the entry says so."""
    state, _ = recorded(due(partition_key="2026-03-01"))
    _, post = d.step(state, d.Resolved(ASSET), NOW)
    assert isinstance(post, d.Post) and post.partition_key == "2026-03-01"
    v1 = d.TargetAsset(asset_id=3, uri=URI, v1=True)
    state, _ = recorded(due(partition_key="2026-03-01"))
    state, post = d.step(state, d.Resolved(v1), NOW)
    assert isinstance(post, d.Post) and post.partition_key is None
    _, confirm = d.step(state, d.Posted(5), NOW)
    assert isinstance(confirm, d.WriteLedger) and confirm.record.partition_dropped


def test_rule5_a_404_to_the_post_resolves_afresh_once() -> None:
    """A stale asset id (404) is resolved again bypassing the cache; a second 404 is recorded as an error."""
    state, _ = recorded(due())
    state, _ = d.step(state, d.Resolved(ASSET), NOW)
    state, again = d.step(state, d.NotFound("404"), NOW)
    assert isinstance(again, d.Resolve) and again.fresh
    state, post = d.step(state, d.Resolved(d.TargetAsset(9, URI)), NOW)
    assert isinstance(post, d.Post) and post.asset.asset_id == 9
    _, write = d.step(state, d.NotFound("404 again"), NOW)
    assert isinstance(write, d.WriteLedger) and write.record.status is DeliveryStatus.ERROR


def test_rule7_a_lost_answer_is_recorded_soon_and_the_retry_looks_first() -> None:
    """No answer to the POST: an error entry retried within TRANSIENT_RETRY_S; the resume looks before posting."""
    state, _ = recorded(due())
    state, _ = d.step(state, d.Resolved(ASSET), NOW)
    _, write = d.step(state, d.Transient("timed out"), NOW)
    assert isinstance(write, d.WriteLedger)
    assert write.record.retry_at == NOW + timedelta(seconds=d.TRANSIENT_RETRY_S)
    state, _ = recorded(due(record=write.record, rev=12))
    _, look = d.step(state, d.Resolved(ASSET), NOW)
    assert isinstance(look, d.Look)


SKIP = SkipRequest(by="ops@host", at=NOW, reason="team_b rejects this extra")


def refused(skip: SkipRequest | None = SKIP) -> DeliveryRecord:
    return DeliveryRecord(status=DeliveryStatus.ERROR, source="team_a", event_id=7, uri=URI, requested_at=NOW,
                          last_error="422", retry_at=NOW, skip=skip)  # fmt: skip


def test_rule10_a_skip_request_is_applied_where_the_post_would_come_and_nothing_is_posted() -> None:
    """An entry with a skip request looks first; nothing found: it becomes skipped, with no POST, and the attempt
    says so."""
    state, _ = recorded(due(record=refused(), rev=5))
    state, look = d.step(state, d.Resolved(ASSET), NOW)
    assert isinstance(look, d.Look), "a skip must look before giving up: the event may be there"
    state, write = d.step(state, d.Looked(None), NOW)
    assert isinstance(write, d.WriteLedger) and write.record.status is DeliveryStatus.SKIPPED
    assert write.record.skip == SKIP and write.record.last_error is None
    _, done = d.step(state, d.LedgerWritten(13), NOW)
    assert done == SKIPPED


def test_rule10_a_skip_never_hides_a_delivery_that_happened() -> None:
    """The look-up finds the event in the target: the entry is confirmed done, not skipped."""
    state, _ = recorded(due(record=refused(), rev=5))
    state, _ = d.step(state, d.Resolved(ASSET), NOW)
    _, write = d.step(state, d.Looked(41), NOW)
    assert isinstance(write, d.WriteLedger) and write.record.status is DeliveryStatus.DONE
    assert write.record.target_event_id == 41


def test_rule10_an_asset_the_target_does_not_know_is_skipped_on_request() -> None:
    """No such asset in the target (no copy can be there): a skip request gives it up instead of waiting."""
    state, _ = recorded(due(record=refused(), rev=5))
    _, write = d.step(state, d.Resolved(None), NOW)
    assert isinstance(write, d.WriteLedger) and write.record.status is DeliveryStatus.SKIPPED


def test_rule16g_a_skipped_event_is_settled_counted_apart_and_the_next_one_is_due() -> None:
    """After a skip the stream's next event is due; status counts it as skipped, never as delivered."""
    skipped = refused().model_copy(update={"status": DeliveryStatus.SKIPPED})
    ledger = Ledger({("team_b", "team_a", URI, 7): (skipped, 3)})
    events = [fact(7), fact(8)]
    assert [x.event.fact.event_id for x in due_deliveries(events, ledger, ROUTES, NOW)] == [8]
    (stream,) = streams(events, ledger, ROUTES)
    assert (stream.delivered, stream.skipped, stream.pending) == (0, 1, 1)


def test_rule6_a_done_entry_is_left_alone() -> None:
    """A delivery already done does nothing at all."""
    done = DeliveryRecord(status=DeliveryStatus.DONE, source="team_a", event_id=7, uri=URI, requested_at=NOW)
    _, first = d.start(due(record=done, rev=3), NOW, "w1", RETRY_S, OLD_TERM)
    assert first == End(Ending.SETTLED)


# -- rule 8: a new term's look waits for the old term's calls --------------------------------------------------------

TERM = d.Term(revision=50, look_after=NOW + timedelta(seconds=12))


def pending(status: DeliveryStatus = DeliveryStatus.PENDING) -> DeliveryRecord:
    return DeliveryRecord(status=status, source="team_a", event_id=7, uri=URI, requested_at=NOW, watcher="old")


def test_rule8_an_entry_of_an_earlier_term_waits_without_any_write_until_look_after() -> None:
    """A pending or error entry written before the term began: nothing is written or called until look_after."""
    for record in (pending(), pending(DeliveryStatus.ERROR)):
        state, first = d.start(due(record=record, rev=49), NOW + timedelta(seconds=11), "w1", RETRY_S, TERM)
        assert first == End(Ending.DEFERRED, retry_in_s=1.0), "deferred until look_after, a second later"
        assert state.record == record, "a deferral must leave the entry as it is"


def test_rule8_after_look_after_the_entry_of_an_earlier_term_is_looked_up() -> None:
    """At look_after the earlier term's entry is taken over (fenced write) and looked up before any post."""
    state, first = d.start(due(record=pending(), rev=49), TERM.look_after, "w1", RETRY_S, TERM)
    assert isinstance(first, d.WriteLedger) and first.expected_rev == 49
    state, resolve = d.step(state, d.LedgerWritten(51), TERM.look_after)
    assert isinstance(resolve, d.Resolve) and resolve.fresh
    _, look = d.step(state, d.Resolved(ASSET), TERM.look_after)
    assert isinstance(look, d.Look)


def test_rule8_this_terms_own_entries_and_new_deliveries_never_wait() -> None:
    """An entry written in this term (a revision above the term's) and a delivery with no entry start at once."""
    _, own = d.start(due(record=pending(), rev=51), NOW, "w1", RETRY_S, TERM)
    assert isinstance(own, d.WriteLedger)
    _, new = d.start(due(), NOW, "w1", RETRY_S, TERM)
    assert isinstance(new, d.WriteLedger) and new.expected_rev == 0


def test_rule8_a_skip_request_written_in_this_term_does_not_hide_an_earlier_terms_entry() -> None:
    """The operator's skip request rewrites the entry (a revision above the term's) without a fence: the entry is
    still judged by its last leader write and waits until look_after, so an old leader's POST is found, not skipped."""
    request = SKIP.model_copy(update={"entry_rev": 49})
    record = pending(DeliveryStatus.ERROR).model_copy(update={"skip": request})
    _, first = d.start(due(record=record, rev=60), NOW, "w1", RETRY_S, TERM)
    assert first == End(Ending.DEFERRED, retry_in_s=12.0)
    own = record.model_copy(update={"skip": SKIP.model_copy(update={"entry_rev": 55})})
    _, now_first = d.start(due(record=own, rev=60), NOW, "w1", RETRY_S, TERM)
    assert isinstance(now_first, d.WriteLedger), "an entry this term's leader wrote last does not wait"


# -- the search: crash at every step, lost answers, duplicate facts, stale ids ----------------------------------------


@dataclass
class Target:
    """A target Airflow as the notes describe it: POST creates a new event every time; ids by asset."""

    asset_ids: dict[str, int] = field(default_factory=lambda: {URI: 1})
    events: list[tuple[int, int, dict[str, object]]] = field(default_factory=list)  # (id, asset id, extra)

    def recreate(self, uri: str) -> None:
        """The asset gets a new id; its events stay its events (a cached id is stale, nothing else changes)."""
        old, new = self.asset_ids[uri], max(self.asset_ids.values()) + 1
        self.asset_ids[uri] = new
        self.events = [(i, new if a == old else a, x) for i, a, x in self.events]


#: The search's watcher: the longest an Airflow call can take, and rule 8's margin on top (as the job computes it).
CALL_TIMEOUT_S = 10.0
TERM_MARGIN_S = 2.0


@dataclass
class World:
    target: Target = field(default_factory=Target)
    ledger: dict[tuple[str, str, str, int], tuple[DeliveryRecord, int]] = field(default_factory=dict)
    rev: int = 0
    cache: dict[str, d.TargetAsset] = field(default_factory=dict)
    term: d.Term = OLD_TERM
    #: POSTs sent by a leader that died before they reached Airflow: (lands at, asset id, extra), landing in order.
    in_flight: list[tuple[datetime, int, dict[str, object]]] = field(default_factory=list)

    def new_term(self, now: datetime) -> None:
        """A crash: the next leader creates the leader key (one revision) and waits rule 8's time for old calls."""
        self.rev += 1
        self.term = d.Term(self.rev, now + timedelta(seconds=CALL_TIMEOUT_S + TERM_MARGIN_S))

    def land(self, now: datetime) -> None:
        """In-flight POSTs whose time came: Airflow creates their events now (a client that went away changes
        nothing)."""
        for item in [x for x in self.in_flight if x[0] <= now]:
            self.in_flight.remove(item)
            self.target.events.append((len(self.target.events) + 1, item[1], item[2]))

    def perform(self, key: tuple[str, str, str, int], ins: d.Instruction, fault: str, now: datetime) -> d.Event | None:
        """Do ``ins`` (unless the fault says it never happened); None: the watcher crashed before the answer."""
        self.land(now)
        if fault == "recreate":
            self.target.recreate(URI)
        if fault == "crash_before":
            return None
        if fault == "lost" and not isinstance(ins, d.Post):
            return d.Transient("unavailable")
        if isinstance(ins, d.WriteLedger):
            current = self.ledger.get(key)
            if (current[1] if current else 0) != ins.expected_rev:
                return d.LedgerMoved()
            self.rev += 1
            self.ledger[key] = (ins.record, self.rev)
            answer: d.Event = d.LedgerWritten(self.rev)
        elif isinstance(ins, d.Resolve):
            if ins.fresh or ins.uri not in self.cache:
                self.cache[ins.uri] = d.TargetAsset(self.target.asset_ids[ins.uri], ins.uri)
            answer = d.Resolved(self.cache[ins.uri])
        elif isinstance(ins, d.Look):
            found = [i for i, a, x in self.target.events if a == ins.asset.asset_id and x.get(MARKER) == ins.marker]
            answer = d.Looked(found[0] if found else None)
        elif isinstance(ins, d.Post):
            if self.target.asset_ids.get(ins.asset.uri) != ins.asset.asset_id:
                return d.NotFound("asset id not found")
            if fault.startswith("in_flight"):
                # Sent, then the leader died (or lost its lease) before Airflow created the event: it lands later,
                # but within the call timeout of when it was sent.
                late = CALL_TIMEOUT_S if fault == "in_flight_slow" else 0.5
                self.in_flight.append((now + timedelta(seconds=late), ins.asset.asset_id, dict(ins.extra)))
                return None
            new_id = len(self.target.events) + 1
            self.target.events.append((new_id, ins.asset.asset_id, dict(ins.extra)))
            answer = d.Posted(new_id)
            if fault == "lost":
                return d.Transient("timed out after the POST")
        else:  # pragma: no cover - an End is never performed
            raise AssertionError(ins)
        return None if fault == "crash_after" else answer

    def attempt(self, item: DueDelivery, now: datetime, faults: list[str]) -> None:
        key = (item.target, item.event.source, item.event.fact.uri, item.event.fact.event_id)
        state, ins = d.start(item, now, "w", RETRY_S, self.term)
        while not isinstance(ins, End):
            fault = faults.pop(0) if faults else "ok"
            answer = self.perform(key, ins, fault, now)
            if answer is None:
                self.new_term(now)
                return  # crashed: the next leader starts from the ledger
            if isinstance(ins, RecordError):
                return  # the driver ends the attempt once the error record is written (or its compare failed)
            state, ins = d.step(state, answer, now)


FAULTS = st.sampled_from(
    ["ok", "ok", "ok", "crash_before", "crash_after", "lost", "recreate", "in_flight_fast", "in_flight_slow"]
)
#: Seconds between two rounds: short ones let a new leader come back while an old POST is still in flight.
STEPS = st.lists(st.sampled_from([0.5, 1.0, 3.0, 31.0]), max_size=30)


@settings(max_examples=examples(300), deadline=None)
@given(
    ids=st.lists(st.integers(1, 50), min_size=1, max_size=6),
    faults=st.lists(FAULTS, max_size=40),
    duplicates=st.integers(0, 3),
    steps=STEPS,
)
def test_every_source_event_reaches_the_target_exactly_once_in_order_whatever_fails(
    ids: list[int], faults: list[str], duplicates: int, steps: list[float]
) -> None:
    """Crashes before/after any step, lost answers, POSTs still in flight when their leader died, stale asset ids and
    duplicate facts: one event per source event."""
    world = World()
    # Duplicate facts (the audit's overlapping windows): the same event id listed more than once.
    events = [fact(i) for i in ids] + [fact(i) for i in ids[:duplicates]]
    now = NOW
    for _ in range(200):
        due_now = due_deliveries(events, Ledger(dict(world.ledger)), ROUTES, now)
        if not due_now and all(r.status is DeliveryStatus.DONE for r, _ in world.ledger.values()):
            break
        for item in due_now:
            world.attempt(item, now, faults)
        now += timedelta(seconds=steps.pop(0) if steps else RETRY_S + 1)
    else:  # pragma: no cover - would be a livelock
        raise AssertionError("deliveries did not converge")
    world.land(now + timedelta(seconds=CALL_TIMEOUT_S))  # anything still in flight lands: it must not be a second
    markers = [str(x[MARKER]) for _, _, x in world.target.events]
    expected = [f"team_a:{i}" for i in sorted(set(ids))]
    assert markers == expected  # exactly once each, and in the source's order
    for i in set(ids):
        record, _ = world.ledger[("team_b", "team_a", URI, i)]
        assert record.status is DeliveryStatus.DONE and record.target_event_id is not None


def test_why_asset_says_a_delivery_of_an_earlier_term_waits_for_the_earlier_leaders_calls() -> None:
    """`why asset` on a pending entry written before the current leader's term names the writer and rule 8's wait;
    an entry of the current term does not."""
    key = ("team_b", "team_a", URI, 7)
    before = why_asset(URI, ROUTES, [fact(7)], Ledger({key: (pending(), 49)}), leader_rev=50)
    assert "written by old before the current leader took over (revision 50)" in before[-1], before
    assert "COORDINATOR_AIRFLOW_TIMEOUT_S + 2 s after the takeover" in before[-1], before
    current = why_asset(URI, ROUTES, [fact(7)], Ledger({key: (pending(), 51)}), leader_rev=50)
    assert "being delivered" in current[-1] and "earlier lease" not in current[-1], current
