"""An edge that counts its mapped partitions: "20 of the day's 24 hours", "2 of 3 regions by the cutoff" (semantics
`partition-count`), what Airflow's ``MinimumCount`` says inside one deployment.

Rules:
- **Window.** An edge maps D's partition to a window of U's partitions (a grid rollup, every segment, both); without a
  count every one of them must be satisfied (Airflow's ``WaitForAll``). A count asks for ``at_least`` of them (None:
  all), never more than the window holds (a DST day's 23 hours under ``at_least: 24`` need 23).
- **Cutoff.** With a cutoff, from ``P + cutoff`` (or the time of day after the partition's end, as a condition group's
  cutoff) ``minimum`` satisfied partitions are enough; ``late`` says whether the partitions that arrive after such an
  early run rerun D once (``rerun``) or not (``ignore``), as semantics `group-late` says for groups. ``now`` is an
  input; never read here.
- **Pure values**, JSON-able through :meth:`PartitionCount.item` for the edge's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from coordinator.core.conditions import Late, clock_text, parse_clock, time_of_day_after
from coordinator.core.duration import format_shift
from coordinator.core.grid import Grid
from coordinator.core.model import partition_datetime


@dataclass(frozen=True, slots=True, order=True)
class PartitionCount:
    """How many of an edge's mapped partitions satisfy it (**Window**, **Cutoff**)."""

    #: None: all of the window.
    at_least: int | None = None
    #: Seconds after the partition's start (**Cutoff**); None: no cutoff (or a time of day, below).
    cutoff: int | None = None
    minimum: int = 1
    late: Late = Late.RERUN
    #: A time-of-day cutoff: seconds after midnight in ``grid``'s zone, after the partition's end.
    at_time: int | None = None
    grid: Grid | None = None

    @property
    def has_cutoff(self) -> bool:
        return self.cutoff is not None or self.at_time is not None

    def cutoff_at(self, partition: str) -> datetime | None:
        """When the cutoff of ``partition`` passes; None without one (or for a partition with no time)."""
        if not self.has_cutoff:
            return None
        try:
            start = partition_datetime(partition)
        except ValueError:
            return None  # a segment has no time, so no cutoff (the loader refuses the combination)
        if self.cutoff is not None:
            return start + timedelta(seconds=self.cutoff)
        assert self.at_time is not None and self.grid is not None
        return time_of_day_after(self.grid.next(start), self.at_time, self.grid.timezone)

    def need(self, partition: str, window: int, now: datetime | None) -> int:
        """How many satisfied partitions of a ``window`` of that size satisfy the edge at ``now`` (**Window**,
        **Cutoff**); at least 1, so an empty window never does."""
        need = window if self.at_least is None else min(self.at_least, window)
        at = self.cutoff_at(partition)
        if at is not None and now is not None and now >= at:
            need = min(need, self.minimum)
        return max(need, 1)

    def item(self) -> list[object]:
        """JSON-able, for the edge's shape (**Pure values**)."""
        cut: object = self.cutoff if self.at_time is None else clock_text(self.at_time)
        return [self.at_least, cut, self.minimum, str(self.late)]

    @classmethod
    def from_item(cls, item: Sequence[object], grid: Grid | None) -> PartitionCount:
        """The count :meth:`item` wrote (``grid``: the dependent's, for a time of day); ValueError otherwise."""
        if len(item) != 4:
            raise ValueError(f"not a recorded partition count: {item!r}")
        at_least, cut, minimum, late = item
        if not (at_least is None or isinstance(at_least, int)) or not isinstance(minimum, int):
            raise ValueError(f"not a recorded partition count: {item!r}")
        if isinstance(cut, str):
            return cls(at_least, None, minimum, Late(str(late)), parse_clock(cut), grid)
        if not (cut is None or isinstance(cut, int)):
            raise ValueError(f"not a recorded cutoff: {cut!r}")
        return cls(at_least, cut, minimum, Late(str(late)))

    def describe(self, window: int | None = None) -> str:
        """``20 of 24 partitions`` / ``all partitions``, and the cutoff: ``(2 from 6h after the partition's start,
        late: rerun)``."""
        of = f" of {window}" if window is not None else ""
        text = f"{self.at_least}{of} partitions" if self.at_least is not None else f"all{of} partitions"
        if self.cutoff is not None:
            text += f" ({self.minimum} from {format_shift(self.cutoff)} after the partition's start, late: {self.late})"
        elif self.at_time is not None:
            zone = "" if self.grid is None or self.grid.timezone == "UTC" else f" {self.grid.timezone}"
            text += (
                f" ({self.minimum} from {clock_text(self.at_time)}{zone} after the partition's end, late: {self.late})"
            )
        return text
