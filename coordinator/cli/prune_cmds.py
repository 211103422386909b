"""``coordinator prune``: retire and delete the partitions before a cutoff (semantics `retention-retires`).

Rules:
- **Floor first.** The retention floor is recorded BEFORE anything is deleted, so no watcher ever sees a deletion
  without the floor that retires it (semantics `floor-first`); it never moves back unless ``--lower-floor`` says so
  (semantics `floor-forward`).
- **Chosen from one load.** The keys to delete are chosen by the pure ``coordinator.core.retention.select`` from one
  load read after the floor (``informer.read_model.load`` of the run states, task states, ledger entries and backfill
  requests, into the watcher's view: streamed, so no snapshot is held, and the leader's periodic retention decides on
  the same facts, ``retention.facts_from_view``); partitions holding an unfinished intent or a queued/running run are
  kept whole and listed with the reason. A key of a retired partition whose value does not parse (the view leaves it out
  and names it) is deleted too, guarded by the revision a point read of it gives.
- **Guarded deletes.** Deletes run in transactions of at most ``BATCH_SIZE`` keys, each guarded by the key's mod
  revision: a key written meanwhile is kept and reported. ``--dry-run`` reads only: it writes neither the floor nor any
  delete.
- **Permits too.** The permits of scheduled dependents (``{prefix}/permits/``, semantics `scheduled-permit`) of the
  pruned partitions are deleted with them, read from the store (each guarded by its own mod revision); a partition
  kept whole keeps its permits.
- **The audit trail too.** The history entries written before the cutoff and the holds that stopped holding before it
  (released or expired) are deleted after the partitions, guarded the same way (``core.retention``'s rule g);
  a user that may not delete them (only the operator role writes holds/ and history/) gets the refusal in the report,
  not a failure: the partitions are pruned either way.
- **Bad input before etcd.** Bad input (a date that does not parse, both or neither of --before/--older-than, a cutoff
  in the future, a bad duration or format) exits 2 before touching etcd; etcd trouble exits 1.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict

from coordinator.cli.app import OPERATE, EtcdOpt, PrefixOpt, app, build_settings, fail, out, run_async
from coordinator.core.model import KeyLayout, canonical_partition
from coordinator.core.permit import permits_prefix
from coordinator.core.retention import (
    KeepReason,
    RetentionFloor,
    Selection,
    audit_counts,
    cutoff_before,
    cutoff_problem,
    facts_from_kvs,
    facts_from_view,
    next_floor,
    parse_duration,
    select,
)
from coordinator.errors import ConfigError
from coordinator.runtime.settings import EtcdSettings


class KeptReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    partition: str
    reasons: list[str]
    details: list[str]


class PruneReport(BaseModel):
    """What ``prune`` did (or, with --dry-run, would do); ``--format json`` prints exactly this."""

    model_config = ConfigDict(frozen=True)
    cutoff: str
    dry_run: bool
    floor: str
    previous_floor: str | None
    floor_written: bool
    #: Keys selected for deletion per kind (run, ledger, backfill), and the partitions they belong to.
    selected: dict[str, int]
    partitions: list[str]
    deleted: int
    transactions: int
    kept: list[KeptReport]
    kept_counts: dict[str, int]
    #: Keys written while pruning: kept (a concurrent write is never lost).
    changed: list[str]
    #: **The audit trail too**: history entries and ended holds selected (per kind), deleted, and why they were not
    #: (a refusal), None when nothing refused them.
    audit: dict[str, int] = {}
    audit_deleted: int = 0
    audit_refused: str | None = None


async def run_prune(
    etcd: EtcdSettings, keys: KeyLayout, cutoff: str, *, dry_run: bool, lower: bool, by: str, now: datetime
) -> PruneReport:
    """**Floor first**, **Chosen from one load** and **Guarded deletes**: record the floor, read a snapshot, select,
    delete in guarded batches."""
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import
    from coordinator.informer.read_model import VIEW, Scope, load
    from coordinator.watcher.retention import delete_selected, prune_audit, read_floor, record_floor

    async with await EtcdStore.connect(etcd) as store:
        current, current_rev = await read_floor(store, keys)
        floor = next_floor(current, cutoff, lower=lower)
        write = current is None or current.before != floor
        if write and not dry_run:
            await record_floor(store, keys, RetentionFloor(before=floor, by=by, at=now), current_rev)
        parts = (keys.runs, keys.triggers, keys.tasks, keys.config_key("backfill/"))
        view = (await load(store, keys, VIEW, Scope(parts))).view
        facts = facts_from_view(view, cutoff)
        # **Chosen from one load**: the keys the view left out for their values (their partition is in the key:
        # ``facts_from_kvs``).
        unreadable = [key for key in view.problems if key.startswith(parts)]
        if unreadable:
            _, bad = await store.get_many(unreadable)
            facts += facts_from_kvs(keys, ((kv.key, kv.value, kv.mod_revision) for kv in bad), cutoff)
        # **Permits too**: read from the store (the view holds none), each by its own mod revision.
        permits = await store.snapshot(permits_prefix(keys))
        facts += facts_from_kvs(keys, ((kv.key, kv.value, kv.mod_revision) for kv in permits.kvs), cutoff)
        selection = select(facts, cutoff)
        deleted, transactions, changed = 0, 0, []
        if not dry_run:
            outcome = await delete_selected(store, selection.delete)
            deleted, transactions, changed = outcome.deleted, outcome.transactions, outcome.changed
        audit, done, refused = await prune_audit(store, store, keys, cutoff, now, dry_run=dry_run)
    report = _report(selection, dry_run=dry_run, floor=floor, current=current, written=write and not dry_run,
                     deleted=deleted, transactions=transactions, changed=[*changed, *done.changed])  # fmt: skip
    return report.model_copy(update={"audit": audit_counts(audit), "audit_deleted": done.deleted,
                                     "audit_refused": refused})  # fmt: skip


def _report(
    selection: Selection,
    *,
    dry_run: bool,
    floor: str,
    current: RetentionFloor | None,
    written: bool,
    deleted: int,
    transactions: int,
    changed: list[str],
) -> PruneReport:
    counts = selection.kept_counts()
    if changed:
        counts[KeepReason.CHANGED.value] = len(changed)
    return PruneReport(
        cutoff=selection.cutoff, dry_run=dry_run, floor=floor, previous_floor=current.before if current else None,
        floor_written=written, selected=selection.counts, partitions=selection.partitions, deleted=deleted,
        transactions=transactions,
        kept=[KeptReport(partition=k.partition, reasons=[r.value for r in k.reasons], details=list(k.details))
              for k in selection.kept],
        kept_counts=counts, changed=changed,
    )  # fmt: skip


def _print(report: PruneReport) -> None:
    would = "would " if report.dry_run else ""
    out.print(f"cutoff {report.cutoff}: partitions before it are retired and their keys deleted", markup=False)
    was = report.previous_floor or "none"
    if report.floor == report.previous_floor:
        out.print(f"retention floor {report.floor} (unchanged)", markup=False)
    else:
        verb = "would record" if report.dry_run else "recorded"
        out.print(f"retention floor {report.floor} ({verb}; was {was})", markup=False)
    if report.floor > report.cutoff:
        out.print("  the floor stays above the cutoff: it never moves back without --lower-floor", markup=False)
    total = sum(report.selected.values())
    parts = report.partitions
    span = f" ({parts[0]} .. {parts[-1]})" if parts else ""
    kinds = ", ".join(f"{kind} {n}" for kind, n in report.selected.items())
    out.print(f"{would}delete {total} key(s) of {len(parts)} partition(s){span}: {kinds}", markup=False)
    if not report.dry_run:
        out.print(f"deleted {report.deleted} key(s) in {report.transactions} transaction(s)", markup=False)
    if report.kept:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(report.kept_counts.items()))
        out.print(f"kept {len(report.kept)} partition(s) before the cutoff ({reasons}):", markup=False)
        for kept in report.kept:
            out.print(f"  {kept.partition}: {', '.join(kept.reasons)}: {'; '.join(kept.details)}", markup=False)
    else:
        out.print("kept 0 partitions before the cutoff", markup=False)
    history, holds = report.audit.get("history", 0), report.audit.get("hold", 0)
    out.print(f"{would}delete {history} history entr(ies) and {holds} ended hold(s) from before the cutoff",
              markup=False)  # fmt: skip
    if report.audit_refused is not None:
        out.print(f"  not deleted: {report.audit_refused} (only the operator role may write holds/ and history/)",
                  markup=False)  # fmt: skip
    elif not report.dry_run and history + holds:
        out.print(f"deleted {report.audit_deleted} audit record(s)", markup=False)
    if report.changed:
        out.print(f"kept {len(report.changed)} key(s) written while pruning ({KeepReason.CHANGED}):", markup=False)
        for key in report.changed:
            out.print(f"  {key}", markup=False)


@app.command(rich_help_panel=OPERATE)
def prune(
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="DATE",
            show_default="none: give --before or --older-than",
            help="prune partitions before this logical date (UTC), e.g. 2026-01-01",
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            show_default="none: give --before or --older-than",
            help="prune partitions older than this, e.g. 90d, 12h, 2w",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be deleted; change nothing")] = False,
    lower_floor: Annotated[
        bool,
        typer.Option("--lower-floor", help="set the retention floor to the cutoff even when it is below the current"),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="text|json", help="output format")] = "text",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Retire the partitions before a cutoff and delete their run-state, ledger and backfill keys, and the history
    entries and ended holds from before it.

    Partitions holding an unfinished trigger or a queued/running run are kept and listed. The watchers never trigger
    or clear anything because of it: a retired partition is history they no longer plan.
    Exit 2 for bad input (nothing touched), 1 when etcd cannot be read or written.
    """
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")
    if (before is None) == (older_than is None):
        fail("give exactly one of --before DATE or --older-than DURATION")
    now = datetime.now(UTC)
    try:
        cutoff = (
            canonical_partition(before) if before is not None else cutoff_before(now, parse_duration(older_than or ""))
        )
    except ValueError as exc:
        fail(f"--{'before' if before is not None else 'older-than'}: {exc}")
    problem = cutoff_problem(cutoff, now)
    if problem is not None:
        fail(f"{problem}: prune only retires partitions that are in the past")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    try:
        etcd_settings = settings.etcd()
    except ConfigError as exc:
        fail(str(exc))
    by = f"prune@{socket.gethostname()}"
    report = run_async(
        lambda: run_prune(etcd_settings, settings.keys, cutoff, dry_run=dry_run, lower=lower_floor, by=by, now=now)
    )
    if fmt == "json":
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        _print(report)
