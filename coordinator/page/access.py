"""Which DAGs of the dependencies page a user may see, and the page with the others taken out.

Rules:
- **Decided whole, drawn restricted.** The decision is made on the whole graph (a DAG's state depends on upstreams the
  user may not read); only what is DRAWN is restricted: a DAG the user may not read is not drawn, and neither is any
  edge, waiting-on entry, failure source, ledger input, deadline cause or problem line that names it. The page says how
  many were left out.
- **Airflow's auth manager decides.** A DAG of the page's own Airflow instance is shown when that Airflow's auth manager
  lets the user read it (the caller asks it for the user's readable DAG ids, never from a request parameter). A DAG of
  another instance is unknown to this Airflow's auth manager: hidden unless the operator shares the other instances
  (``COORDINATOR_PAGE_OTHER_INSTANCES=shown``).
- **Hidden names scrubbed.** Free text (summaries, reasons, the audit trail's targets, reasons and effects) that names a
  hidden DAG, by its qualified id or, in the same instance, its bare id, has that name replaced by "a DAG you may not
  read".
- **Assets by their instances.** A shared asset (``page.assets``) is drawn when the user may read a DAG of at least one
  instance it names (its source or a target): of the page's own instance, any DAG the auth manager lets the user read;
  of another, as in **Airflow's auth manager decides**. The others are counted, not named: not in the drawing, a title
  or the detail panel (``?asset=`` of one is answered like an unknown asset). Of a drawn asset, a producer DAG the user
  may not read is left out (neither an edge nor its name), and its errors are scrubbed as in **Hidden names scrubbed**.
- **Pure.** No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from coordinator.core.model import NodeId
from coordinator.page.assets import AssetNode
from coordinator.page.history import HistoryRow
from coordinator.page.model import LedgerInfo, PageModel, PageNode

HIDDEN_NAME = "a DAG you may not read"


@dataclass(frozen=True)
class Access:
    """**Airflow's auth manager decides**: what the user may read on the page of instance ``instance``."""

    instance: str
    readable: frozenset[str]
    other_instances: bool = False

    def may_read(self, node: NodeId) -> bool:
        if node.instance == self.instance:
            return node.dag_id in self.readable
        return self.other_instances

    def may_read_instance(self, instance: str) -> bool:
        """**Assets by their instances**: the user may read some DAG of ``instance``."""
        if instance == self.instance:
            return bool(self.readable)
        return self.other_instances


def _namer(hidden: Iterable[NodeId], instance: str) -> re.Pattern[str] | None:
    names: set[str] = set()
    for node in hidden:
        names.add(node.qualified)
        if node.instance == instance:
            names.add(node.dag_id)
    if not names:
        return None
    # Longest first, bounded by what cannot be part of a name, so "load" never matches inside "load_all".
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_./-])(?:{alternatives})(?![A-Za-z0-9_.-])")


def _asset(asset: AssetNode, access: Access, pattern: re.Pattern[str] | None) -> AssetNode:
    """**Assets by their instances**: a drawn asset without the producers the user may not read, its errors scrubbed
    (**Hidden names scrubbed**)."""
    producers = tuple(p.dag_id for p in asset.producer_nodes if access.may_read(p))
    targets = tuple(
        replace(t, last_error=pattern.sub(HIDDEN_NAME, t.last_error) if pattern and t.last_error else t.last_error)
        for t in asset.targets
    )
    return replace(asset, producers=producers, targets=targets)


def restrict(model: PageModel, access: Access) -> PageModel:
    """**Decided whole, drawn restricted**, **Airflow's auth manager decides**, **Hidden names scrubbed** and
    **Assets by their instances**: ``model`` without what the user may not read, with ``hidden`` counting the DAGs left
    out and ``hidden_assets`` the shared assets."""
    hidden = [n.node for n in model.nodes if not access.may_read(n.node)]
    gone = set(hidden)
    # A producer of an asset may be no DAG of the graph: its name is hidden all the same
    # (**Assets by their instances**).
    unread = {p for a in model.assets for p in a.producer_nodes if not access.may_read(p)}
    pattern = _namer([*hidden, *unread], access.instance)
    assets = tuple(
        _asset(a, access, pattern) for a in model.assets if any(access.may_read_instance(i) for i in a.instances)
    )
    model = replace(model, assets=assets, hidden_assets=model.hidden_assets + len(model.assets) - len(assets))
    if not hidden:
        return model

    def scrub(text: str) -> str:
        return pattern.sub(HIDDEN_NAME, text) if pattern is not None else text

    def named_hidden(text: str) -> bool:
        return pattern is not None and pattern.search(text) is not None

    def ledger(info: LedgerInfo | None) -> LedgerInfo | None:
        if info is None:
            return None
        inputs = tuple((name, rev) for name, rev in info.inputs if not named_hidden(name))
        return replace(info, inputs=inputs, last_error=scrub(info.last_error) if info.last_error else None)

    def node(n: PageNode) -> PageNode:
        deadline = n.deadline
        if deadline is not None and deadline.cause is not None and named_hidden(deadline.cause.chain_text()):
            deadline = replace(deadline, cause=None)
        return replace(
            n,
            summary=scrub(n.summary),
            waiting_on=tuple(w for w in n.waiting_on if w not in gone),
            why=tuple(scrub(line) for line in n.why),
            failure_sources=tuple(f for f in n.failure_sources if f not in gone),
            ledger=ledger(n.ledger),
            deadline=deadline,
        )

    def entry(row: HistoryRow) -> HistoryRow:
        return replace(row, target=scrub(row.target), why=scrub(row.why), affected=tuple(map(scrub, row.affected)))

    history = model.history
    if history is not None:
        history = replace(history, rows=tuple(entry(r) for r in history.rows))
    return replace(
        model,
        history=history,
        nodes=tuple(node(n) for n in model.nodes if n.node not in gone),
        edges=tuple(e for e in model.edges if e.source not in gone and e.target not in gone),
        problems=tuple(p for p in model.problems if not named_hidden(p)),
        hidden=model.hidden + len(hidden),
    )
