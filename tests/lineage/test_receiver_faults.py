"""The receiver under faults, with the OpenLineage Python client's own retries: etcd down, the receiver killed."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from openlineage.client.event_v2 import RunState

from coordinator.core.model import KeyLayout
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from coordinator.watcher.faults import CRASH_EXIT_CODE
from devtools.etcd_server import EtcdServer
from tests.lineage.receiver_proc import ReceiverProc, client, event, new_run_id
from tests.lineage.test_receiver import AT, DBT_TOKEN, client_json, read, read_prefix, run_state


@pytest.fixture
def private_settings(private_etcd: EtcdServer) -> EtcdSettings:
    return EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))


class Emitter(threading.Thread):
    """One ``client.emit`` in a thread (the client blocks through its retries); keeps what it raised."""

    def __init__(self, send: object) -> None:
        super().__init__(daemon=True)
        self.send = send
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.send()  # type: ignore[operator]
        except BaseException as exc:
            self.error = exc


def test_etcd_down_is_a_503_the_client_retries_and_nothing_is_lost(
    private_etcd: EtcdServer, private_settings: EtcdSettings, tmp_path: Path
) -> None:
    """With etcd killed the receiver answers 503; the client's own retries land once etcd is back: one success."""
    receiver = ReceiverProc(private_etcd.endpoint, "/lin", tmp_path).start()
    try:
        ol = client(receiver.url, DBT_TOKEN)
        run = new_run_id()
        ol.emit(event(RunState.START, run, at=AT))
        private_etcd.kill()
        sender = Emitter(lambda: ol.emit(event(RunState.COMPLETE, run, at=AT + timedelta(minutes=1))))
        sender.start()
        deadline = time.monotonic() + 30
        while receiver.metric("coordinator_lineage_refused_total", reason="unavailable") < 1:
            assert time.monotonic() < deadline, receiver.log()
            time.sleep(0.2)
        private_etcd.start()
        sender.join(timeout=60)
        assert not sender.is_alive() and sender.error is None, sender.error
        record, _ = run_state(private_settings, "/lin")
        assert record.state == "success" and record.run_id == run
    finally:
        receiver.stop()


def test_a_receiver_killed_after_a_write_loses_nothing_and_counts_nothing_twice(
    etcd_endpoint: str, etcd_settings: EtcdSettings, etcd_prefix: str, tmp_path: Path
) -> None:
    """Killed (exit 86, like kill -9) after committing an event, before answering: the client's retry reaches the
    restarted receiver, finds a duplicate, and etcd holds the event once."""
    crashing = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path, crash="lineage-after-write:1").start()
    restarted = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path, port=crashing.port, http_port=crashing.http_port)
    try:
        run = new_run_id()
        ol = client(crashing.url, DBT_TOKEN)
        sender = Emitter(lambda: ol.emit(event(RunState.COMPLETE, run, at=AT)))
        sender.start()
        assert crashing.proc is not None and crashing.proc.wait(timeout=30) == CRASH_EXIT_CODE
        _, generation = run_state(etcd_settings, etcd_prefix)
        restarted.start()
        sender.join(timeout=60)
        assert not sender.is_alive() and sender.error is None, sender.error
        assert run_state(etcd_settings, etcd_prefix)[1] == generation
        assert restarted.metric("coordinator_lineage_events_total", outcome="duplicate") == 1
    finally:
        crashing.kill()
        restarted.stop()


def test_a_batch_cut_by_a_kill_is_completed_by_its_retry_without_doubles(
    etcd_endpoint: str, etcd_settings: EtcdSettings, etcd_prefix: str, tmp_path: Path
) -> None:
    """A batch of 6 events, the receiver killed after its 3rd write: the batch sent again writes the rest and finds
    the written ones duplicates; every run record holds each of its events once."""
    crashing = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path, crash="lineage-after-write:3").start()
    restarted = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path, port=crashing.port, http_port=crashing.http_port)
    try:
        runs = [new_run_id() for _ in range(3)]
        batch = [json.loads(client_json(event(kind, run, job=f"jaffle.model_{i}", at=AT)))
                 for i, run in enumerate(runs) for kind in (RunState.START, RunState.COMPLETE)]  # fmt: skip
        body = json.dumps(batch).encode()
        headers = {"Authorization": f"Bearer {DBT_TOKEN}", "Content-Type": "application/json"}
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"{crashing.url}/api/v1/lineage/batch", content=body, headers=headers, timeout=30)
        assert crashing.proc is not None and crashing.proc.wait(timeout=30) == CRASH_EXIT_CODE
        restarted.start()
        answer = httpx.post(f"{restarted.url}/api/v1/lineage/batch", content=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        # At least the 3 the crash point counted were written before the kill; runs are written side by side
        # (receiver rule 7), so a 4th in flight may have reached etcd too: each is then a duplicate, never twice.
        counts = answer.json()
        assert counts["duplicate"] >= 3 and counts["duplicate"] + counts["accepted"] == 6, counts
        keys = KeyLayout(etcd_prefix)
        for run in runs:
            stored = read(etcd_settings, keys.lineage_key("analytics", run))
            assert stored is not None and sorted(json.loads(stored.value)["events"]) == ["COMPLETE", "START"]
        states = read_prefix(etcd_settings, keys.runs)
        assert len(states) == 3 and all(b'"success"' in kv.value for kv in states)
    finally:
        crashing.kill()
        restarted.stop()
