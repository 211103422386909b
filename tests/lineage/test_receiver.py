"""The OpenLineage receiver against a real etcd, fed by the OpenLineage Python client's own HTTP transport."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from openlineage.client.event_v2 import RunState

from coordinator.core.floor import RetentionFloor, dump_floor
from coordinator.core.model import KeyLayout, NodeId, RunRecord, parse_run_record
from coordinator.etcd import KV, EtcdStore
from coordinator.lineage.retire import retire_records
from coordinator.runtime.settings import EtcdSettings
from tests.conftest import run_coro
from tests.lineage.receiver_proc import TOKENS, ReceiverProc, client, event, new_run_id

ORDERS = NodeId("analytics", "orders")
DBT_TOKEN = TOKENS["dbt"][0]
#: A run at 02:00 on the 21st is the 20th's (slot "previous", a daily grid).
AT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
PARTITION = "2026-11-20T00:00:00Z"


@pytest.fixture
def receiver(etcd_endpoint: str, etcd_prefix: str, tmp_path: Path) -> Iterator[ReceiverProc]:
    proc = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path)
    try:
        yield proc.start()
    finally:
        proc.stop()


def read(settings: EtcdSettings, key: str) -> KV | None:
    async def go() -> KV | None:
        async with await EtcdStore.connect(settings) as store:
            return await store.get(key)

    return run_coro(go())


def read_prefix(settings: EtcdSettings, prefix: str) -> list[KV]:
    async def go() -> list[KV]:
        async with await EtcdStore.connect(settings) as store:
            return list((await store.snapshot(prefix)).kvs)

    return run_coro(go())


def run_state(settings: EtcdSettings, prefix: str, partition: str = PARTITION) -> tuple[RunRecord, int]:
    kv = read(settings, KeyLayout(prefix).run_key(ORDERS, partition))
    assert kv is not None, "no run state written"
    record, problem = parse_run_record(kv.value)
    assert record is not None, problem
    return record, kv.mod_revision


def test_a_dbt_model_run_becomes_its_nodes_run_state(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """START then COMPLETE of a mapped job write running then success at the partition its grid and slot give."""
    ol = client(receiver.url, DBT_TOKEN)
    run = new_run_id()
    ol.emit(event(RunState.START, run, at=AT))
    assert run_state(etcd_settings, etcd_prefix)[0].state == "running"
    ol.emit(event(RunState.COMPLETE, run, at=AT + timedelta(minutes=3)))
    record, _ = run_state(etcd_settings, etcd_prefix)
    assert (record.state, record.run_id, record.clear_number, record.source) == (
        "success",
        run,
        0,
        "openlineage:dbt_prod",
    )
    assert record.start_date == AT and record.end_date == AT + timedelta(minutes=3)
    stored = read(etcd_settings, KeyLayout(etcd_prefix).lineage_key("analytics", run))
    assert stored is not None and json.loads(stored.value)["events"].keys() == {"START", "COMPLETE"}
    assert receiver.metric("coordinator_lineage_events_total", outcome="accepted") == 2


def test_a_duplicate_event_is_answered_and_written_once(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """The same COMPLETE sent three times leaves one success generation (its mod revision does not move)."""
    ol = client(receiver.url, DBT_TOKEN)
    run = new_run_id()
    ol.emit(event(RunState.COMPLETE, run, at=AT))
    _, first = run_state(etcd_settings, etcd_prefix)
    ol.emit(event(RunState.COMPLETE, run, at=AT))
    ol.emit(event(RunState.COMPLETE, run, at=AT))
    assert run_state(etcd_settings, etcd_prefix)[1] == first
    assert receiver.metric("coordinator_lineage_events_total", outcome="duplicate") == 2


def test_complete_before_start_stays_a_success(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """Events out of order: a START after the COMPLETE is recorded but does not take the run back to running."""
    ol = client(receiver.url, DBT_TOKEN)
    run = new_run_id()
    ol.emit(event(RunState.COMPLETE, run, at=AT + timedelta(minutes=5)))
    _, generation = run_state(etcd_settings, etcd_prefix)
    ol.emit(event(RunState.START, run, at=AT))
    record, revision = run_state(etcd_settings, etcd_prefix)
    assert record.state == "success" and revision == generation
    stored = read(etcd_settings, KeyLayout(etcd_prefix).lineage_key("analytics", run))
    assert stored is not None and set(json.loads(stored.value)["events"]) == {"START", "COMPLETE"}


def test_a_rerun_is_a_new_generation_and_an_older_runs_late_event_hides_nothing(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A second runId for the same partition writes a new success; the first run's late FAIL leaves it in place."""
    ol = client(receiver.url, DBT_TOKEN)
    first, second = new_run_id(), new_run_id()
    ol.emit(event(RunState.START, first, at=AT))
    ol.emit(event(RunState.COMPLETE, first, at=AT + timedelta(minutes=2)))
    _, generation = run_state(etcd_settings, etcd_prefix)
    ol.emit(event(RunState.START, second, at=AT + timedelta(hours=1)))
    ol.emit(event(RunState.COMPLETE, second, at=AT + timedelta(hours=1, minutes=2)))
    record, rerun = run_state(etcd_settings, etcd_prefix)
    assert record.run_id == second and record.state == "success" and rerun > generation
    ol.emit(event(RunState.FAIL, first, at=AT + timedelta(minutes=3)))
    assert run_state(etcd_settings, etcd_prefix) == (record, rerun)


def test_a_models_partition_follows_its_invocations_run(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A model whose parent run (the dbt invocation) is recorded lands on the parent's partition, not its own time's."""
    ol = client(receiver.url, DBT_TOKEN)
    parent, model = new_run_id(), new_run_id()
    ol.emit(event(RunState.START, parent, job="jaffle.invocation", at=datetime(2026, 11, 21, 23, 58, tzinfo=UTC)))
    late = datetime(2026, 11, 22, 0, 5, tzinfo=UTC)  # past midnight: on its own it would be the 21st's
    ol.emit(event(RunState.COMPLETE, model, at=late, parent=("dbt_prod", "jaffle.invocation", parent)))
    assert run_state(etcd_settings, etcd_prefix, "2026-11-20T00:00:00Z")[0].state == "success"


def test_a_nominal_time_is_the_partition(receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """With the nominalTime facet (Airflow's provider, Spark with a schedule), its start is the partition."""
    ol = client(receiver.url, TOKENS["spark"][0])
    nominal = datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
    ol.emit(event(RunState.COMPLETE, new_run_id(), namespace="spark_prod", job="orders", at=AT, nominal=nominal))
    assert run_state(etcd_settings, etcd_prefix, "2026-11-19T00:00:00Z")[0].state == "success"


def test_an_unmapped_job_is_answered_and_ignored(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A job no mapping names (a client teeing everything) is answered 2xx and writes nothing."""
    ol = client(receiver.url, DBT_TOKEN)
    ol.emit(event(RunState.COMPLETE, new_run_id(), job="other_project.model"))
    assert read_prefix(etcd_settings, f"{etcd_prefix}/") == []
    assert receiver.metric("coordinator_lineage_events_total", outcome="ignored") == 1


def test_a_pattern_writes_only_the_nodes_of_the_graph(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A job the "jaffle.*" pattern matches but whose node no DAG names (a task job) is answered and ignored."""
    ol = client(receiver.url, DBT_TOKEN)
    ol.emit(event(RunState.COMPLETE, new_run_id(), job="jaffle.orders.some_task", at=AT))
    assert read_prefix(etcd_settings, f"{etcd_prefix}/") == []
    assert receiver.metric("coordinator_lineage_events_total", outcome="ignored") == 1


def test_a_batch_and_a_gzip_body_are_taken(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """POST /api/v1/lineage/batch (a JSON array), gzip-compressed, writes each event in order and answers counts."""
    run = new_run_id()
    events = [json.loads(client_json(event(RunState.START, run, at=AT))),
              json.loads(client_json(event(RunState.COMPLETE, run, at=AT + timedelta(minutes=1))))]  # fmt: skip
    body = gzip.compress(json.dumps(events).encode())
    headers = {"Authorization": f"Bearer {DBT_TOKEN}", "Content-Encoding": "gzip", "Content-Type": "application/json"}
    answer = httpx.post(f"{receiver.url}/api/v1/lineage/batch", content=body, timeout=10, headers=headers)
    assert answer.status_code == 200 and answer.json()["accepted"] == 2, answer.text
    assert run_state(etcd_settings, etcd_prefix)[0].state == "success"


def client_json(run_event: object) -> str:
    from openlineage.client.serde import Serde

    return Serde.to_json(run_event)


BAD = "bad"


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("invalid_json", 400, "invalid_json"),
        ("no_job_name", 400, "invalid_event"),
        ("no_run_id", 400, "invalid_event"),
        ("unknown_event_type", 400, "invalid_event"),
        ("ten_megabytes", 413, "too_large"),
        ("other_namespace", 403, "forbidden"),
        ("newline_in_name", 400, "invalid_name"),
        ("dot_dot_in_name", 400, "invalid_name"),
        ("unknown_token", 401, "unauthorized"),
        ("a_bad_event_in_a_batch", 400, "invalid_event"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str, case: str, status: int, reason: str
) -> None:
    """Each bad request is refused with its status and reason, nothing reaches etcd, and the receiver still serves."""
    good = json.loads(client_json(event(RunState.COMPLETE, new_run_id(), at=AT)))
    token, path, body = DBT_TOKEN, "/api/v1/lineage", b""
    if case == "invalid_json":
        body = b'{"eventType": "COMPLETE", '
    elif case == "no_job_name":
        del good["job"]["name"]
    elif case == "no_run_id":
        del good["run"]["runId"]
    elif case == "unknown_event_type":
        good["eventType"] = "FINISHED"
    elif case == "ten_megabytes":
        good["job"]["facets"] = {"sql": {"query": "x" * (10 * 1024 * 1024)}}
    elif case == "other_namespace":
        token = TOKENS["spark"][0]
    elif case == "newline_in_name":
        good["job"]["name"] = "jaffle.orders\nlevel=ERROR forged"
    elif case == "dot_dot_in_name":
        good["job"]["name"] = "../../runs/x"
    elif case == "unknown_token":
        token = "not-a-token"
    elif case == "a_bad_event_in_a_batch":
        path = "/api/v1/lineage/batch"
        broken = json.loads(json.dumps(good))
        del broken["eventTime"]
        body = json.dumps([good, broken]).encode()
    body = body or json.dumps(good).encode()
    answer = httpx.post(f"{receiver.url}{path}", content=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert (answer.status_code, answer.json()["error"]) == (status, reason), answer.text
    assert answer.json()["detail"]
    assert read_prefix(etcd_settings, f"{etcd_prefix}/") == []
    assert receiver.metric("coordinator_lineage_refused_total", reason=reason) == 1
    client(receiver.url, DBT_TOKEN).emit(event(RunState.COMPLETE, new_run_id(), at=AT))
    assert run_state(etcd_settings, etcd_prefix)[0].state == "success"
    assert "\nlevel=ERROR forged" not in receiver.log()


def test_two_receivers_racing_one_run_record_it_once(
    etcd_endpoint: str, etcd_settings: EtcdSettings, etcd_prefix: str, tmp_path: Path
) -> None:
    """The same events sent at once to two receivers on one store give one record per event and one success."""
    first = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path)
    second = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path)
    try:
        first.start(), second.start()
        runs = [new_run_id() for _ in range(20)]
        bodies = [client_json(event(kind, run, job=f"jaffle.m{i}", at=AT)) for i, run in enumerate(runs)
                  for kind in (RunState.START, RunState.COMPLETE)]  # fmt: skip

        async def send_all() -> list[int]:
            headers = {"Authorization": f"Bearer {DBT_TOKEN}", "Content-Type": "application/json"}
            async with httpx.AsyncClient(timeout=30) as http:
                sends = [http.post(f"{proc.url}/api/v1/lineage", content=body, headers=headers)
                         for body in bodies for proc in (first, second)]  # fmt: skip
                return [r.status_code for r in await asyncio.gather(*sends)]

        assert set(run_coro(send_all())) == {200}

        def total(outcome: str) -> float:
            return sum(p.metric("coordinator_lineage_events_total", outcome=outcome) for p in (first, second))

        # Each event is recorded once (accepted, or recorded only: a START that arrived after its COMPLETE).
        assert (total("accepted") + total("recorded"), total("duplicate")) == (40, 40)
        states = [kv for kv in read_prefix(etcd_settings, f"{etcd_prefix}/runs/") if b'"success"' in kv.value]
        assert len(states) == 20
    finally:
        first.stop(), second.stop()


def test_records_before_the_retention_floor_are_retired(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """With a floor recorded, the receiver's records of retired partitions are deleted and the others kept."""
    ol = client(receiver.url, DBT_TOKEN)
    old, kept = new_run_id(), new_run_id()
    ol.emit(event(RunState.COMPLETE, old, at=AT - timedelta(days=10)))
    ol.emit(event(RunState.COMPLETE, kept, at=AT))
    keys = KeyLayout(etcd_prefix)

    async def retire() -> int:
        async with await EtcdStore.connect(etcd_settings) as store:
            assert await retire_records(store, keys, ["analytics"]) == 0  # no floor: nothing goes
            await store.put(keys.config_key("retention"), dump_floor(RetentionFloor(before=PARTITION, by="test")))
            return await retire_records(store, keys, ["analytics"])

    assert run_coro(retire()) == 1
    assert read(etcd_settings, keys.lineage_key("analytics", old)) is None
    assert read(etcd_settings, keys.lineage_key("analytics", kept)) is not None


def test_a_batch_keeps_a_parent_before_its_children(
    receiver: ReceiverProc, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """In one batch with other runs written side by side, a model after its invocation still lands on the
    invocation's partition (a run family is written in order)."""
    parent, model = new_run_id(), new_run_id()
    others = [json.loads(client_json(event(RunState.COMPLETE, new_run_id(), job=f"jaffle.m{i}", at=AT)))
              for i in range(10)]  # fmt: skip
    family = [
        json.loads(client_json(event(RunState.START, parent, job="jaffle.invocation",
                                     at=datetime(2026, 11, 21, 23, 58, tzinfo=UTC)))),
        json.loads(client_json(event(RunState.COMPLETE, model, at=datetime(2026, 11, 22, 0, 5, tzinfo=UTC),
                                     parent=("dbt_prod", "jaffle.invocation", parent)))),
    ]  # fmt: skip
    headers = {"Authorization": f"Bearer {DBT_TOKEN}", "Content-Type": "application/json"}
    answer = httpx.post(f"{receiver.url}/api/v1/lineage/batch", content=json.dumps([*others[:5], *family,
                        *others[5:]]).encode(), headers=headers, timeout=30)  # fmt: skip
    assert answer.status_code == 200 and answer.json()["accepted"] == 12, answer.text
    assert run_state(etcd_settings, etcd_prefix, "2026-11-20T00:00:00Z")[0].run_id == model
