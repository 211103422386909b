"""What docs/dependencies.md says a ``nominalStartTime`` off the node's grid becomes, against the real receiver."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from openlineage.client.event_v2 import RunState

from coordinator.core.model import KeyLayout, NodeId, parse_run_record
from coordinator.runtime.settings import EtcdSettings
from tests.lineage.receiver_proc import TOKENS, ReceiverProc, client, event, new_run_id
from tests.lineage.test_receiver import AT, read


def test_a_nominal_start_off_the_grid_is_floored_to_the_grid_point_before_it(
    etcd_endpoint: str, etcd_prefix: str, etcd_settings: EtcdSettings, tmp_path: Path
) -> None:
    """A dbt model's run whose nominalStartTime is 05:30 on the 18th is the 18th's partition on its daily grid: not
    refused, not moved by the slot (the 17th), not placed by its event time (the 20th)."""
    receiver = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path).start()
    try:
        nominal = datetime(2026, 11, 18, 5, 30, tzinfo=UTC)
        client(receiver.url, TOKENS["dbt"][0]).emit(event(RunState.COMPLETE, new_run_id(), at=AT, nominal=nominal))
    finally:
        receiver.stop()
    keys = KeyLayout(etcd_prefix)
    kv = read(etcd_settings, keys.run_key(NodeId("analytics", "orders"), "2026-11-18T00:00:00Z"))
    assert kv is not None, "no run state at the floored partition"
    record, problem = parse_run_record(kv.value)
    assert record is not None and record.state == "success", problem
    for other in ("2026-11-17T00:00:00Z", "2026-11-20T00:00:00Z", "2026-11-18T05:30:00Z"):
        assert read(etcd_settings, keys.run_key(NodeId("analytics", "orders"), other)) is None, other
