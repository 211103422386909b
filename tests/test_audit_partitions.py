"""The REST audit repairs Airflow 3's runs without a logical date at the partitions the plugin would record
(``coordinator.core.run_partition``): a partitioned run at its key and date, an asset-triggered run at each partition
its consumed events' source runs stand for (upstreamAssetEvents read only for that run); against a real etcd and the
fake Airflow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.model import KeyLayout, parse_run_record
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.audit import AuditResult, audit_once
from tests.support.fake_airflow import FakeAirflow

DAY1, DAY2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def _estate(fake: FakeAirflow) -> None:
    """load ran for two days; clean (asset-triggered) merged both days' events; hourly and regional are partitioned;
    manual has a run of no partition."""
    fake.add_asset("s3://b/load", consumers=["clean"])
    for day, run_id in ((DAY1, "scheduled__1"), (DAY2, "scheduled__2")):
        fake.create_run("load", run_id, day)
    events = [
        fake.emit_asset_event("s3://b/load", source_dag_id="load", source_run_id=r)
        for r in ("scheduled__1", "scheduled__2")
    ]
    fake.create_run("clean", "asset_triggered__c", None, run_type="asset_triggered", consumed=events)
    fake.create_run("hourly", "scheduled__h", None, partition_key="2026-01-01T05:00:00",
                    partition_date=DAY1.replace(hour=5))  # fmt: skip
    fake.create_run("regional", "manual__eu", None, run_type="manual", partition_key="eu")
    fake.create_run("manual", "manual__x", None, run_type="manual")
    fake.wait_idle()


async def _audit(store: EtcdStore, keys: KeyLayout, fake: FakeAirflow) -> AuditResult:
    settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("pw"))
    async with AirflowClient(settings, timeout_s=5.0) as client:
        graph = parse_spec('{"b": ["load", "clean", "hourly", "regional", "manual"]}')
        return await audit_once(store, keys, graph, {"default": client}, timedelta(days=3650), View(keys))


def test_the_audit_records_runs_without_a_logical_date_at_their_partitions(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """Keys appear at each run's partitions, the merged run at both days; upstream events are read for clean only."""
    keys = KeyLayout(etcd_prefix)
    with FakeAirflow(
        ["load", "clean", "hourly", "regional", "manual", "b"], password="pw", run_duration_s=0.02
    ) as fake:
        _estate(fake)

        async def go() -> dict[str, tuple[str, str]]:
            async with await EtcdStore.connect(etcd_settings) as store:
                result = await _audit(store, keys, fake)
                assert result.errors == 0 and result.repaired == 6
                snap = await store.snapshot(f"{etcd_prefix}/runs/")
            found = {}
            for kv in snap.kvs:
                record, _ = parse_run_record(kv.value)
                assert record is not None
                found[kv.key.removeprefix(f"{etcd_prefix}/runs/default/")] = (record.run_id, str(record.state))
            return found

        found = arun(go())
        upstream = [r.dag_id for r in fake.requests() if r.endpoint == "upstream_events"]
    assert found == {
        "load/2026-01-01T00:00:00Z": ("scheduled__1", "success"),
        "load/2026-01-02T00:00:00Z": ("scheduled__2", "success"),
        "clean/2026-01-01T00:00:00Z": ("asset_triggered__c", "success"),
        "clean/2026-01-02T00:00:00Z": ("asset_triggered__c", "success"),
        "hourly/2026-01-01T05:00:00Z": ("scheduled__h", "success"),
        "regional/eu": ("manual__eu", "success"),
    }
    assert upstream == ["clean"]


def test_a_run_whose_sources_cannot_be_read_is_skipped_and_counted(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """upstreamAssetEvents failing (500): the asset-triggered run is counted as an error and not recorded at any
    guessed partition; the other runs are repaired."""
    keys = KeyLayout(etcd_prefix)
    with FakeAirflow(
        ["load", "clean", "hourly", "regional", "manual", "b"], password="pw", run_duration_s=0.02
    ) as fake:
        _estate(fake)
        fake.fail_next(1, 500, endpoint="upstream_events")

        async def go() -> tuple[AuditResult, list[str]]:
            async with await EtcdStore.connect(etcd_settings) as store:
                result = await _audit(store, keys, fake)
                snap = await store.snapshot(f"{etcd_prefix}/runs/default/clean/")
            return result, [kv.key for kv in snap.kvs]

        result, clean_keys = arun(go())
    assert result.errors == 1 and result.repaired == 4 and clean_keys == []
