"""The permit of a scheduled dependent (semantics `scheduled-permit`): the value of
``{prefix}/permits/{instance}/{dag_id}/{partition}``, which the package's wait task in Airflow watches. Pure.

Rules:
- **A projection of the ledger.** A permit is a function of the trigger ledger record it is written with
  (:func:`permit_of`), in the same transaction as every write of that record (semantics `permit-not-run`); nothing else
  writes it, so it can never say more than the ledger: granted exactly when the intent is done and no retraction
  withdrew it (the record's ``withdrawn``, semantics `permit-retracted`).
- **Generation.** ``generation`` is the intent's ``trigger_count`` (1 for the first grant of a partition, one more
  for each rerun): a wait that saw generation n granted and then sees n + 1 not granted knows its run was cleared for
  a newer one.
- **Said as a person would.** :func:`still_waiting_for` says what a wait still waits for (its upstreams' states in the
  partitions it needs, then the permit's own state), from the graph in force and the facts a wait can read itself;
  the caller reads them (``upstream_keys`` names them).
- **Readers forgive.** :func:`parse_permit` answers None for anything that is not a permit (a value written by hand,
  a newer format's unknown fields are ignored); a reader then waits as if no permit was granted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coordinator.core.facts import LedgerFact
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, TriggerRecord, TriggerStatus

#: The key family, under the prefix (``docs/keys.md``, **Permits**).
PERMITS = "permits"


class Permit(BaseModel):
    """Value of a permit key (``docs/keys.md``, **Permits**)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: True once the intent is confirmed: the wait of the partition's run may go on.
    granted: bool
    #: **Generation**: the intent's trigger count.
    generation: int = Field(ge=1)
    #: The upstream generations the grant is for (the ledger's ``inputs``).
    inputs: dict[str, int] = Field(default_factory=dict)
    #: Why the coordinator granted it (the ledger's ``reason``), in ``why``'s words.
    reason: str = ""
    #: Airflow's run of the partition when the coordinator knows it (a rerun clears it); "" before its first state.
    run_id: str = ""
    requested_at: datetime | None = None
    granted_at: datetime | None = None
    #: The intent's last error (a clear Airflow refused), while not granted.
    error: str | None = None
    #: Semantics `permit-retracted`: why the leader withdrew this permit before its run started (``granted`` is then
    #: false: an input it was granted on is no longer that success); absent otherwise.
    withdrawn: str | None = None


def permit_key(keys: KeyLayout, node: NodeId, partition: str) -> str:
    """``{prefix}/permits/{instance}/{dag_id}/{partition}``."""
    return f"{keys.prefix}/{PERMITS}/{node.instance}/{node.dag_id}/{partition}"


def permits_prefix(keys: KeyLayout) -> str:
    return f"{keys.prefix}/{PERMITS}/"


def parse_permit_key(keys: KeyLayout, key: str) -> tuple[NodeId, str] | None:
    """(DAG, partition) of a permit key; None for any other key."""
    rest = key.removeprefix(permits_prefix(keys))
    if rest == key:
        return None
    parts = rest.split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return NodeId(parts[0], parts[1]), parts[2]


def permit_of(record: TriggerRecord) -> Permit:
    """**A projection of the ledger**: the permit written with ``record``."""
    done = record.status is TriggerStatus.DONE and record.withdrawn is None
    return Permit(
        granted=done,
        generation=record.trigger_count,
        inputs=dict(record.inputs),
        reason=record.reason,
        run_id="" if record.run_id.startswith("coordinator__") else record.run_id,
        requested_at=record.requested_at,
        granted_at=record.done_at if done else None,
        error=None if done else record.last_error,
        withdrawn=record.withdrawn,
    )


def dump_permit(permit: Permit) -> bytes:
    return json.dumps(permit.model_dump(mode="json"), separators=(",", ":"), sort_keys=True).encode()


def parse_permit(value: bytes | str) -> Permit | None:
    """**Readers forgive**."""
    try:
        return Permit.model_validate_json(value)
    except ValidationError:
        return None


def permit_writes(keys: KeyLayout, node: NodeId, partition: str) -> PermitWrites:
    """The companion write of every ledger write of ``node``'s intent for ``partition`` (semantics
    `permit-not-run`)."""
    return PermitWrites(permit_key(keys, node, partition))


class PermitWrites:
    """Called with each ledger record written: the (key, value) to put in the same transaction."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, record: TriggerRecord) -> Sequence[tuple[str, bytes]]:
        return ((self.key, dump_permit(permit_of(record))),)


def lost_input(ledger: LedgerFact, current: Iterable[tuple[str, str, int | None]]) -> str | None:
    """Semantics `permit-retracted`: why a granted permit no longer stands, or None: the first input it was granted on
    (``current``: each upstream partition's ledger input key, name and generation now) that is no longer that
    success (withdrawn by a retraction, rerun, or succeeded again). An upstream the grant did not record (a group
    member not consumed) is not one of its inputs."""
    for key, name, generation in current:
        recorded = ledger.input(key)
        if recorded is not None and generation != recorded:
            now = "is no longer a success" if generation is None else f"succeeded again at revision {generation}"
            return f"{name} {now} (the permit was granted on revision {recorded})"
    return None


def upstream_keys(graph: Graph | None, node: NodeId, partition: str) -> tuple[tuple[NodeId, str], ...]:
    """(upstream, partition) of every run state :func:`still_waiting_for` reads: the upstreams of ``node`` in the
    partitions its ``partition`` needs (the grids' mapping); none when the graph does not know ``node``."""
    if graph is None or node not in graph.dags:
        return ()
    spec = graph.dags[node]
    return tuple((up, q) for up in spec.upstreams for q in graph.source_partitions(node, up, partition))


def still_waiting_for(
    graph: Graph | None,
    node: NodeId,
    partition: str,
    runs: Mapping[tuple[NodeId, str], RunRecord],
    permit: Permit | None,
) -> str:
    """**Said as a person would**: why ``node``'s run of ``partition`` still waits."""
    if permit is not None and permit.granted:
        return f"{node} {partition}: the permit is granted (generation {permit.generation})"
    if graph is None or node not in graph.dags:
        return f"{node} {partition}: no permit yet, and the graph in force does not name {node}"
    if not graph.dags[node].scheduled:
        return f'{node} {partition}: no permit yet, and {node} is not "runs": "scheduled" in the graph in force'
    missing = []
    for up, q in upstream_keys(graph, node, partition):
        record = runs.get((up, q))
        if record is None:
            missing.append(f"{up} {q} has not run")
        elif record.state is not RunState.SUCCESS:
            missing.append(f"{up} {q} is {record.state} (run {record.run_id})")
    if missing:
        return f"{node} {partition} waits for: " + "; ".join(missing)
    if permit is not None and permit.error:
        return f"{node} {partition}: its upstreams succeeded; the permit is not granted yet: {permit.error}"
    return (
        f"{node} {partition}: its upstreams succeeded but no permit is granted yet (a hold, the trigger budget, a "
        "condition of the graph, or no watcher leading: `coordinator why "
        f"{node} -p {partition}` says which)"
    )
