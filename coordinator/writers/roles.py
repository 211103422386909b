"""The etcd role of every writer and reader of the coordinator's keys, derived from the key layout in ONE place.

``coordinator roles`` prints these as ``etcdctl`` commands; ``docs/howto/etcd-roles.md`` holds them for the example
setup and a test runs that block as written against a real etcd with authentication on (tests/test_roles.py).

Rules:
- **Least access.** Each component gets exactly what it reads and writes (docs/keys.md's "written by" / "read by"
  columns): an Airflow instance's plugin reads and writes only ``runs/{instance}/`` and ``tasks/{instance}/`` (the
  plugin reads before its compare-and-swap, so etcd's ``write`` alone is not enough) and reads ``config/graph`` (which
  tasks to record) and ``permits/`` (the triggerer's wait), and writes its own asset hint key
  ``asset_changes/{instance}`` (semantics `asset-facts`); the dependencies page and ``doctor`` read the prefix; the
  operator writes holds, the history and run states
  (``retract``), and only ``prune`` besides it deletes holds and history (the old audit trail); ``prune`` and
  ``backfill`` write only their families
  (``backfill`` also the delivery ledger, where ``skip-event`` adds an operator's skip request, semantics
  `asset-skip`); an outside writer writes only the run keys of its own DAG (or DAG-name family); an OpenLineage receiver
  (semantics `lineage-receiver`) reads and writes only ``runs/{instance}/`` and ``lineage/{instance}/`` of the instances
  it serves (its writer reads the run's record and the partition's run state before its guarded transaction) and reads
  the ``leader`` key (its readiness probe's read) and the retention floor ``config/retention`` (its records follow it),
  nothing else.
- **Watcher-only writes.** Only the watcher may write the trigger ledger, the graph activation, the plan checkpoint
  (semantics `checkpoint-first`), the deadlines, the leader key, the presence keys and the asset facts, marks and
  deliveries (semantics `assets-by-route`, `asset-exactly-once`): a plugin credential cannot forge an intent, a graph, a
  checkpoint, a leader or an asset event.
- **One range for the prefix.** Reading the whole prefix is granted as one range (``read --prefix=true {prefix}/``): a
  snapshot and a watch are one range over it, and etcd refuses a range that a single permission does not cover.
- **No password on a command line.** Passwords never appear on a command line (visible in ``ps`` and shell history):
  ``etcdctl user add NAME --interactive=false`` reads the password from its standard input, redirected from a file per
  user.
- **Names per prefix.** Role and user names are ``{base}-{component}``, ``base`` derived from the prefix, so several
  prefixes can share one etcd without their roles colliding.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from coordinator.core.assets import AssetKeys
from coordinator.core.model import NAME_RE, KeyLayout
from coordinator.core.permit import permits_prefix


class Perm(StrEnum):
    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"


@dataclass(frozen=True)
class Grant:
    """One ``etcdctl role grant-permission``: ``key`` alone, or every key starting with it (``prefix``)."""

    perm: Perm
    key: str
    prefix: bool


@dataclass(frozen=True)
class Role:
    """One etcd role (and the user of the same name that holds it)."""

    name: str
    purpose: str
    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class OutsideWriter:
    """A system outside Airflow that reports the runs of one DAG, or of every DAG whose id starts with ``family``
    (``dag`` ending in ``*``), of one instance."""

    name: str
    instance: str
    dag: str

    @classmethod
    def parse(cls, text: str) -> OutsideWriter:
        """``NAME=INSTANCE/DAG`` or ``NAME=INSTANCE/DAG_PREFIX*``; ValueError saying what is wrong."""
        name, eq, target = text.partition("=")
        instance, slash, dag = target.partition("/")
        if not eq or not slash:
            raise ValueError(f"--writer {text!r}: expected NAME=INSTANCE/DAG or NAME=INSTANCE/DAG_PREFIX*")
        stem = dag[:-1] if dag.endswith("*") else dag
        for what, value in (("name", name), ("instance", instance), ("dag", stem)):
            if not NAME_RE.match(value):
                raise ValueError(f"--writer {text!r}: {what} {value!r} is not a valid name ([A-Za-z0-9_.-]+)")
        return cls(name=name, instance=instance, dag=dag)


@dataclass(frozen=True)
class LineageReceiver:
    """An OpenLineage receiver (``coordinator lineage serve``) and the instances it writes (its ``--instance``).

    ``name`` None is the receiver of every instance the mapping names (``lineage serve`` without ``--instance``)."""

    name: str | None
    instances: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> LineageReceiver:
        """``INSTANCE`` (a receiver of that instance, named after it) or ``NAME=INSTANCE[,INSTANCE...]``;
        ValueError saying what is wrong."""
        name, eq, listed = text.partition("=")
        instances = tuple(i.strip() for i in listed.split(",")) if eq else (name,)
        for what, value in (("name", name), *(("instance", i) for i in instances)):
            if not NAME_RE.match(value) or value in (".", ".."):
                raise ValueError(f"--lineage {text!r}: {what} {value!r} is not a valid name ([A-Za-z0-9_.-]+)")
        if len(set(instances)) != len(instances):
            raise ValueError(f"--lineage {text!r}: an instance is named twice")
        return cls(name=name, instances=instances)


def base_name(keys: KeyLayout) -> str:
    """**Names per prefix**: ``/coordinator`` -> ``coordinator``, ``/a/b`` -> ``a-b``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", keys.prefix.strip("/")) or "coordinator"


def _read_all(keys: KeyLayout) -> Grant:
    return Grant(Perm.READ, keys.root, True)


def plugin_role(keys: KeyLayout, instance: str) -> Role:
    return Role(
        name=f"{base_name(keys)}-plugin-{instance}",
        purpose=f"the Airflow plugin of instance {instance} (scheduler, workers, check-plugin)",
        grants=(
            Grant(Perm.READWRITE, f"{keys.runs}{instance}/", True),
            Grant(Perm.READWRITE, f"{keys.tasks}{instance}/", True),
            Grant(Perm.READ, keys.config_key("graph"), False),
            Grant(Perm.READWRITE, AssetKeys(keys.prefix).change_key(instance), False),
            # The wait of a scheduled dependent runs in the triggerer with the plugin's settings and watches every
            # permit (semantics `scheduled-permit`): read only, so a plugin credential cannot grant one.
            Grant(Perm.READ, permits_prefix(keys), True),
        ),
    )


def lineage_role(keys: KeyLayout, receiver: LineageReceiver) -> Role:
    """**Least access**: the run states and run records of its instances, the leader key its readiness probe reads and
    the retention floor its records follow (``lineage/retire.py``)."""
    grants: list[Grant] = []
    for instance in receiver.instances:
        grants.append(Grant(Perm.READWRITE, f"{keys.runs}{instance}/", True))
        grants.append(Grant(Perm.READWRITE, f"{keys.lineage}{instance}/", True))
    grants.append(Grant(Perm.READ, keys.leader, False))
    grants.append(Grant(Perm.READ, keys.config_key("retention"), False))
    if receiver.name is None:
        name, how = f"{base_name(keys)}-lineage", "coordinator lineage serve, every instance the mapping names"
    else:
        name = f"{base_name(keys)}-lineage-{receiver.name}"
        how = "coordinator lineage serve " + " ".join(f"--instance {i}" for i in receiver.instances)
    return Role(name, f"the OpenLineage receiver of {', '.join(receiver.instances)} ({how})", tuple(grants))


def watcher_role(keys: KeyLayout) -> Role:
    rw = Perm.READWRITE
    assets = AssetKeys(keys.prefix)
    return Role(
        name=f"{base_name(keys)}-watcher",
        purpose="coordinator watch / reconcile (ledger, graph, checkpoint, retention, deadlines, leader, presence, "
        "audit)",
        grants=(
            _read_all(keys),
            # the audit repairs run and task states; the leader's retention deletes old partitions
            Grant(rw, keys.runs, True),
            Grant(rw, keys.tasks, True),
            Grant(rw, keys.triggers, True),
            Grant(rw, keys.deadlines, True),
            Grant(rw, keys.watchers, True),
            Grant(rw, keys.config_key("graph"), False),
            Grant(rw, keys.config_key("checkpoint"), False),  # semantics `checkpoint-first`: the leader's job
            Grant(rw, keys.config_key("retention"), False),
            Grant(rw, keys.config_key("backfill/"), True),
            Grant(rw, keys.budgets, True),
            Grant(rw, keys.flaps, True),  # semantics `flap-held`: the leader records a flapping run state
            # semantics `permit-not-run`: a scheduled dependent's permit, written with each write of its ledger entry
            Grant(rw, permits_prefix(keys), True),
            Grant(rw, keys.leader, False),
            # semantics `assets-by-route`, `asset-exactly-once`: the asset round records events, the first listing's
            # marks and the deliveries
            Grant(rw, assets.events, True),
            Grant(rw, assets.marks, True),
            Grant(rw, assets.deliveries, True),
        ),
    )


def roles(
    keys: KeyLayout,
    instances: Sequence[str],
    writers: Sequence[OutsideWriter] = (),
    receivers: Sequence[LineageReceiver] = (),
) -> list[Role]:
    """The whole matrix (**Least access**, **Watcher-only writes**, **One range for the prefix**), in a stable order."""
    base = base_name(keys)
    rw = Perm.READWRITE
    result = [plugin_role(keys, i) for i in instances]
    result += [
        Role(
            f"{base}-page",
            # Its own user, never granted to the plugin's (page_credential): the plugin's stays write-own.
            "the dependencies page in Airflow's api-server (read only; its own user: page_etcd_username or the "
            "coordinator_etcd_page connection, never the plugin's)",
            (_read_all(keys),),
        ),
        watcher_role(keys),
        Role(f"{base}-doctor", "coordinator doctor, status, why, diff (read only)", (_read_all(keys),)),
        Role(
            f"{base}-prune",
            "coordinator prune (records the floor, deletes old partitions and the old audit trail)",
            (
                _read_all(keys),
                Grant(rw, keys.runs, True),
                Grant(rw, keys.tasks, True),
                Grant(rw, keys.triggers, True),
                Grant(rw, keys.config_key("backfill/"), True),
                Grant(rw, permits_prefix(keys), True),  # a pruned partition's permits go with its ledger entries
                Grant(rw, keys.config_key("retention"), False),
                # the history and the ended holds from before the cutoff (``watcher/retention.py``'s
                # **The audit trail ages out with prune, not with the leader**)
                Grant(rw, keys.holds, True),
                Grant(rw, keys.history, True),
            ),
        ),
        Role(
            f"{base}-backfill",
            "coordinator backfill, release and skip-event (the operator's requests)",
            (
                _read_all(keys),
                Grant(rw, keys.config_key("backfill/"), True),
                Grant(rw, keys.budgets, True),
                Grant(rw, AssetKeys(keys.prefix).deliveries, True),
            ),
        ),
        Role(
            f"{base}-operator",
            "coordinator hold, release-hold, retract, rerun and release-flap (the incident controls; retract withdraws "
            "a run state)",
            (
                _read_all(keys),
                Grant(rw, keys.holds, True),
                Grant(rw, keys.history, True),
                Grant(rw, keys.runs, True),
                # ``rerun --no-cascade`` records the attempt it clears first (semantics `no-cascade-once`)
                Grant(rw, keys.no_cascade, True),
                # ``release-flap`` releases a flapping run state the leader held (semantics `flap-held`)
                Grant(rw, keys.flaps, True),
            ),
        ),
    ]
    for w in writers:
        family = w.dag.endswith("*")
        key = f"{keys.runs}{w.instance}/{w.dag[:-1] if family else w.dag + '/'}"
        what = f"DAGs {w.dag}" if family else f"DAG {w.dag}"
        result.append(Role(f"{base}-writer-{w.name}", f"outside writer {w.name}: run states of {what} of "
                           f"instance {w.instance}", (Grant(rw, key, True),)))  # fmt: skip
    result += [lineage_role(keys, r) for r in receivers]
    return result


def key_families(keys: KeyLayout) -> list[tuple[str, bool]]:
    """Every key family of the layout as (key, is a prefix): what a reader with a partial role reads one by one."""
    assets = AssetKeys(keys.prefix)
    return [
        (keys.runs, True),
        (keys.tasks, True),
        (keys.triggers, True),
        (keys.deadlines, True),
        (keys.watchers, True),
        (keys.config_key("graph"), False),
        (keys.config_key("checkpoint"), False),
        (keys.config_key("retention"), False),
        (keys.config_key("backfill/"), True),
        (keys.budgets, True),
        (keys.leader, False),
        (assets.events, True),
        (assets.marks, True),
        (assets.changes, True),
        (assets.deliveries, True),
        (keys.lineage, True),
        (keys.holds, True),
        (keys.history, True),
        (keys.no_cascade, True),
        (keys.flaps, True),
    ]


def commands(matrix: Sequence[Role], secrets_dir: str = "$SECRETS_DIR") -> list[str]:
    """``etcdctl`` lines creating each role, its permissions, its user (password read from
    ``{secrets_dir}/{user}``, **No password on a command line**) and the grant. Comment lines say what each role is
    for."""
    lines: list[str] = []
    for role in matrix:
        name = shlex.quote(role.name)
        lines.append(f"# {role.purpose}")
        lines.append(f"etcdctl role add {name}")
        for g in role.grants:
            flag = " --prefix=true" if g.prefix else ""
            lines.append(f"etcdctl role grant-permission {name} {g.perm}{flag} {shlex.quote(g.key)}")
        lines.append(f'etcdctl user add {name} --interactive=false < "{secrets_dir}/{role.name}"')
        lines.append(f"etcdctl user grant-role {name} {name}")
    return lines
