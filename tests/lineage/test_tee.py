"""The tee (semantics rule 18d): a team keeps its lineage backend; the OpenLineage client's composite transport sends
each event to the backend and to the receiver, and a receiver that is down neither blocks nor drops the backend's
copy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunState
from openlineage.client.transport.composite import CompositeConfig, CompositeTransport

from coordinator.runtime.settings import EtcdSettings
from tests.lineage.receiver_proc import TOKENS, ReceiverProc, event, new_run_id
from tests.lineage.test_dbt_stack import CaptureServer
from tests.lineage.test_receiver import AT, run_state


@pytest.fixture
def backend() -> Iterator[CaptureServer]:
    """Stands for Marquez: answers 200 to every event and keeps them."""
    server = CaptureServer().start()
    try:
        yield server
    finally:
        server.stop()


def composite(backend_url: str, receiver_url: str) -> OpenLineageClient:
    """The composite transport as the docs configure it: the backend first, then the receiver, each its own key."""
    config = CompositeConfig.from_dict({
        "transports": [
            {"type": "http", "url": backend_url, "auth": {"type": "api_key", "apiKey": "marquez-key"}},
            {"type": "http", "url": receiver_url, "auth": {"type": "api_key", "apiKey": TOKENS["dbt"][0]},
             "retry": {"total": 1, "backoff_factor": 0.1}},
        ],
        "continue_on_failure": True,
    })  # fmt: skip
    return OpenLineageClient(transport=CompositeTransport(config))


def test_the_backend_and_the_receiver_each_get_every_event(
    backend: CaptureServer, etcd_endpoint: str, etcd_settings: EtcdSettings, etcd_prefix: str, tmp_path: Path
) -> None:
    """Both copies arrive: the backend holds the events, etcd the run state."""
    receiver = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path).start()
    try:
        client = composite(backend.url, receiver.url)
        run = new_run_id()
        client.emit(event(RunState.START, run, at=AT))
        client.emit(event(RunState.COMPLETE, run, at=AT))
        assert [e["eventType"] for e in backend.events()] == ["START", "COMPLETE"]
        assert run_state(etcd_settings, etcd_prefix)[0].state == "success"
    finally:
        receiver.stop()


def test_a_receiver_that_is_down_drops_nothing_of_the_backends_copy(backend: CaptureServer, tmp_path: Path) -> None:
    """With the receiver down, every event still reaches the backend and emit returns (the failure is only logged)."""
    receiver = ReceiverProc("http://127.0.0.1:1", "/unused", tmp_path)  # never started: its port refuses
    client = composite(backend.url, receiver.url)
    run = new_run_id()
    for kind in (RunState.START, RunState.COMPLETE):
        client.emit(event(kind, run, at=AT))
    assert [e["eventType"] for e in backend.events()] == ["START", "COMPLETE"]
