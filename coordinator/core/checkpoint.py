"""The plan checkpoint as a value: ``{prefix}/config/checkpoint`` (semantics `checkpoint-first`).

A leader whose trigger work is settled records the revision it has planned through; a watcher that starts later
(a restart, a cold standby taking the lead) plans first only what changed after that revision, then every partition
a few seconds later, as a warm standby does on taking the lead (``core/first_work.py``). The checkpoint orders work
and never skips any: the full pass that always follows judges everything, so a checkpoint that is stale, missing,
unreadable or even wrong costs time, never a trigger, and exactly-once rests on the ledger as before.

Rules:
- **What the value records.** The value records the revision ``R`` the leader had planned through, the digest of the
  graph it planned with, who wrote it and when. "Planned through R": every run-state, ledger, task and backfill key at
  or below R was planned by a pass of that leader, each action those passes made has left the actuator (confirmed,
  recorded as an error, or handed back), and a full pass ran in its term (``watcher/triggers.py``'s
  **Start and settle**).
- **A fact of the view** like the retention floor (``View.checkpoint``), read with the same revision as the facts it
  speaks of (``model.parse_value``, written with ``model.dump_record``); an unparsable value is a problem of the view
  and means no checkpoint.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PlanCheckpoint(BaseModel):
    """Value of ``{prefix}/config/checkpoint`` (**What the value records**), written only by the leading watcher."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    revision: int = Field(ge=0)
    digest: str
    watcher: str = ""
    at: datetime | None = None

    def describe(self) -> str:
        at = f" at {self.at.isoformat(timespec='seconds')}" if self.at is not None else ""
        return f"planned through revision {self.revision} by {self.watcher or 'unknown'}{at}"
