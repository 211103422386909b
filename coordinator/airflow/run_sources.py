"""What a DAG run listed over REST says about its partition (:class:`coordinator.core.run_partition.AirflowRun`), for
the audit: its own columns, and for an asset-triggered run without a partition of its own, the runs its consumed
asset events came from (``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents``, then each source run).

Rules:
- **Only runs that need it.** The upstream events are read only for an asset-triggered run whose logical date,
  partition date and partition key name no partition (``core/run_partition``'s **Consumed partitions**); every
  other run costs no request. Airflow 2 (API v1) never needs it: its dataset-triggered runs have a logical date.
- **Bounded.** At most :data:`MAX_UPSTREAM_EVENTS` events per run (Airflow lists them unpaged) and
  :data:`MAX_SOURCE_DEPTH` asset-triggered runs deep, as the plugin reads them; one pass reads each source run once
  (:class:`RunSources` is made per pass).
- **Errors are the caller's.** An AirflowError of a read propagates: the audit counts and logs it and skips that run
  (the next pass reads it again), never recording a guess.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from coordinator.airflow.assets import AssetEventInfo, parse_asset_event
from coordinator.airflow.client import AirflowClient, ApiVersion, DagRunInfo
from coordinator.core.run_partition import ASSET_TRIGGERED, AirflowRun, ConsumedEvent, Unrecorded, own_partition
from coordinator.errors import AirflowError

#: Consumed events read per run: as the plugin (``MAX_CONSUMED_EVENTS``); beyond it the partitions are the first ones'.
MAX_UPSTREAM_EVENTS = 200
#: Asset-triggered sources followed: as the plugin (``MAX_SOURCE_DEPTH``).
MAX_SOURCE_DEPTH = 3


def run_marks(run: DagRunInfo) -> AirflowRun:
    """The run's own columns (no consumed events)."""
    return AirflowRun(run.logical_date, run.partition_date, run.partition_key, run.run_type)


def needs_sources(run: AirflowRun) -> bool:
    """Whether **Consumed partitions** applies: an asset-triggered run whose own columns name no partition."""
    return run.run_type == ASSET_TRIGGERED and own_partition(run).unrecorded is Unrecorded.NO_PARTITION


class RunSources:
    """One audit pass's reader of consumed events and source runs of one Airflow (each source read once)."""

    def __init__(self, client: AirflowClient) -> None:
        self._client = client
        self._runs: dict[tuple[str, str], DagRunInfo | None] = {}
        #: Requests made (upstream event lists and source runs): the audit logs them.
        self.reads = 0

    async def of(self, run: DagRunInfo, depth: int = 0) -> AirflowRun:
        """``run`` as :func:`coordinator.core.run_partition.run_partitions` reads it (**Only runs that need it**)."""
        marks = run_marks(run)
        if depth >= MAX_SOURCE_DEPTH or not needs_sources(marks):
            return marks
        consumed: list[ConsumedEvent] = []
        for event in (await self.upstream_events(run.dag_id, run.run_id))[:MAX_UPSTREAM_EVENTS]:
            source = await self._source(event)
            read = None if source is None else await self.of(source, depth + 1)
            consumed.append(ConsumedEvent(event.partition_key, read))
        return replace(marks, consumed=tuple(consumed))

    async def upstream_events(self, dag_id: str, run_id: str) -> list[AssetEventInfo]:
        """The asset events run ``run_id`` consumed (API v2; none on v1)."""
        client = self._client
        if await client.api_version() is ApiVersion.V1:
            return []
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/upstreamAssetEvents"
        self.reads += 1
        data = await client.send("GET", path, None)
        items = data.get("asset_events") if isinstance(data, dict) else None
        try:
            if not isinstance(items, list):
                raise ValueError("no asset_events list")
            return [parse_asset_event(item) for item in items]
        except ValueError as exc:
            raise AirflowError(f"{client.name}: GET {path}: unexpected payload: {exc}") from exc

    async def _source(self, event: AssetEventInfo) -> DagRunInfo | None:
        if not event.source_dag_id or not event.source_run_id:
            return None
        key = (event.source_dag_id, event.source_run_id)
        if key not in self._runs:
            self.reads += 1
            self._runs[key] = await self._client.get_run(*key)
        return self._runs[key]
