"""Which run stands for a partition when several runs of one DAG stand for it (semantics `newest-run-stands`): the one
order the plugin, the OpenLineage receiver, the REST audit and ``coordinator mark`` all apply, through
:func:`coordinator.core.model.should_replace`.

Airflow 3 makes several runs of one partition as a matter of course: a cleared producer's asset event makes a new
asset-triggered run of its consumer beside the old one; a partitioned DAG takes any number of runs with one
``partition_key``. Recording "the run id last seen" then alternates between them (each write a new generation that
reruns every dependent), so the record follows an order that never goes backwards.

Rules, in order:

1. **Run order.** A run's place is ``(run_after, run_id)``: Airflow's ``run_after`` (when the run was made to run; set
   at creation and kept by a clear, on every Airflow 3 run, from the ORM and from REST alike), then the run id to break
   a tie so the order is total. A run made later stands over one made earlier.
2. **Newer replaces, older never does.** A record of another run replaces the one stored only when it comes later in
   the run order. An older run's state (a late hook, an audit that lists both, a clear of the old run) is never
   written over a newer run's record, and a run deleted in Airflow leaves its record standing: the older run it hid
   does not come back as new.
3. **Within one run**, the attempt (``clear_number``) then the state decide (``core/model.py``'s per-run ordering).
4. **Unordered writers.** When either record has no ``run_after`` (Airflow 2, whose runs are one per logical date;
   ``mark``; an outside writer that does not say), another run id replaces, as it always has: a run deleted and made
   again for its date is the only way such a writer gets a second run id for one partition.

Pure: values in, a verdict out; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, TypeVar


class OrderedRun(Protocol):
    """What the order reads of a run or a record of one."""

    @property
    def run_id(self) -> str: ...

    @property
    def run_after(self) -> datetime | None: ...


def comes_later(new: OrderedRun, old: OrderedRun) -> bool:
    """**Run order**, **Newer replaces, older never does**, **Unordered writers**: whether ``new``, a run other than
    ``old``'s (their run ids differ), may stand over ``old`` for their partition."""
    if new.run_after is None or old.run_after is None:
        return True
    return (new.run_after, new.run_id) > (old.run_after, old.run_id)


_Run = TypeVar("_Run", bound=OrderedRun)


def standing_run(runs: Iterable[_Run]) -> _Run | None:
    """The run that stands for a partition among ``runs`` (all of one DAG and one partition): the last in the **Run
    order**; None for no runs. Runs without ``run_after`` (Airflow 2) keep the order they came in (the first one
    standing), which is Airflow's newest-first listing."""
    best: _Run | None = None
    for run in runs:
        if best is None or (run.run_after is not None and best.run_after is not None and comes_later(run, best)):
            best = run
    return best
