"""The plugin's asset hooks (semantics rule 16b): an asset event in this Airflow writes a hint that wakes the leader's
asset round; a copy the coordinator delivered here writes nothing. Real etcd for the write, Airflow's own hook specs
for the signatures (pluggy matches hook arguments by name)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.airflow_plugin.listener import LISTENER
from coordinator.airflow_plugin.records import AssetChange, WriterConfig
from coordinator.airflow_plugin.writer import BackgroundWriter, RecordingWriter, install_writer
from coordinator.core.assets import MARKER, AssetKeys
from coordinator.core.model import KeyLayout
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings


def config(etcd_settings: EtcdSettings, prefix: str) -> WriterConfig:
    return WriterConfig(etcd=etcd_settings, keys=KeyLayout(prefix), instance="team_a")


@pytest.fixture
def recorder(etcd_settings: EtcdSettings) -> Iterator[RecordingWriter]:
    writer = RecordingWriter(config(etcd_settings, "/p"))
    install_writer(writer)
    yield writer
    install_writer(None)


def event(uri: str, extra: dict[str, Any] | None = None, partition_key: str | None = None) -> Any:
    """Airflow 3.3's listener AssetEvent as the hook gets it (asset, extra, partition_key; no event id)."""
    return SimpleNamespace(
        asset=SimpleNamespace(uri=uri, name="orders"), extra=extra or {}, partition_key=partition_key
    )


def test_an_asset_event_writes_the_instance_hint_to_etcd(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Any
) -> None:
    """on_asset_event_emitted puts {prefix}/asset_changes/{instance} with the asset's URI and partition key."""
    writer = BackgroundWriter(config(etcd_settings, etcd_prefix))
    install_writer(writer)
    try:
        LISTENER.on_asset_event_emitted(asset_event=event("s3://lake/orders", partition_key="2026-03-01"))
        assert writer.flush(10)
    finally:
        writer.close(0.5)
        install_writer(None)

    async def read() -> bytes | None:
        async with await EtcdStore.connect(etcd_settings) as store:
            kv = await store.get(AssetKeys(etcd_prefix).change_key("team_a"))
        return None if kv is None else kv.value

    value = arun(read())
    assert value is not None
    hint = json.loads(value)
    assert (hint["uri"], hint["partition_key"], hint["source"]) == (
        "s3://lake/orders",
        "2026-03-01",
        "airflow-plugin:team_a",
    )


def test_a_delivered_copy_writes_no_hint(recorder: RecordingWriter) -> None:
    """An event carrying the delivery marker (the coordinator created it here) is not hinted: it never travels on."""
    LISTENER.on_asset_event_emitted(asset_event=event("s3://lake/orders", extra={MARKER: "team_x:4"}))
    assert recorder.items == []


def test_an_airflow2_dataset_change_is_hinted(recorder: RecordingWriter) -> None:
    """Airflow 2.8+'s on_dataset_changed(dataset) hints the dataset's URI."""
    LISTENER.on_dataset_changed(dataset=SimpleNamespace(uri="s3://lake/orders"))
    (fact,) = recorder.items
    assert isinstance(fact, AssetChange) and fact.key == "/p/asset_changes/team_a"


@pytest.mark.airflow
def test_the_asset_hooks_take_the_arguments_airflow_passes() -> None:
    """The hook implementations' parameter names are those of the installed Airflow's hook specs."""
    from airflow.listeners.spec import asset as spec

    ours = inspect.signature(LISTENER.on_asset_event_emitted).parameters
    assert list(ours) == list(inspect.signature(spec.on_asset_event_emitted).parameters)


def test_a_successful_task_with_outlets_hints_once_and_one_without_outlets_not_at_all(
    recorder: RecordingWriter,
) -> None:
    """on_task_instance_success of a task with two asset outlets writes one hint (after Airflow committed its events);
    a task without outlets writes no hint."""
    outlets = [SimpleNamespace(uri="s3://lake/orders"), SimpleNamespace(uri="s3://lake/refunds")]
    with_outlets = SimpleNamespace(task=SimpleNamespace(outlets=outlets))
    LISTENER.on_task_instance_success(previous_state=None, task_instance=with_outlets)
    hints = [f for f in recorder.items if isinstance(f, AssetChange)]
    assert [f.key for f in hints] == ["/p/asset_changes/team_a"], recorder.items
    assert json.loads(hints[0].value)["uri"] == "s3://lake/orders"
    recorder.items.clear()
    LISTENER.on_task_instance_success(previous_state=None, task_instance=SimpleNamespace(task=SimpleNamespace()))
    assert [f for f in recorder.items if isinstance(f, AssetChange)] == []
