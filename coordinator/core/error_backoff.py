"""How long a refused or failed trigger waits before its next try: one backoff per (DAG, partition), kept in its ledger
entry (semantics `trigger-errors`). Pure: the jitter is drawn by the caller and passed in.

Rules:
- **Exponential with jitter, capped.** After the n-th error in a row of one intent its key waits
  ``d = min(cap, FIRST_S * 2 ** (n - 1))``, drawn in ``[d * (1 - JITTER), d]`` (``draw`` in [0, 1)): 1, 2, 4, 8,
  16, 30, 30... s with the default cap (``COORDINATOR_ERROR_RETRY_S``, 30 s), so a DAG that stays refused costs
  about three POSTs a minute (31 in ten minutes: ``bench/refused_trigger.py``), not one a second. The jitter spreads
  keys that failed together and never raises a delay above the cap: the cap is a promise.
- **Starts over.** The count is the entry's ``errors``: absent on a new intent and on every confirmation; an attempt
  started ``fresh`` (the DAG's definition changed after the error, or the operator released a hold that kept it back:
  ``watcher/actuator.py``) counts its error as the first again.
- **Never zero.** Whatever the cap, a key waits at least ``FLOOR_S``: no busy loop.
"""

from __future__ import annotations

from datetime import UTC, datetime

#: The first step: a refusal that clears by itself (a DAG being deployed, a run that just ended) is tried again soon.
FIRST_S = 1.0
#: "Equal jitter": each delay drawn from the upper half of its step, so it still grows step by step.
JITTER = 0.5
#: The smallest delay whatever the cap (**Never zero**).
FLOOR_S = 0.1


def error_count(previous: int, *, fresh: bool) -> int:
    """**Starts over**: the ``errors`` an entry records for one more error after ``previous`` in a row."""
    return 1 if fresh else max(0, previous) + 1


def error_delay(errors: int, cap_s: float, draw: float = 0.0) -> float:
    """**Exponential with jitter, capped**: seconds to wait after ``errors`` errors in a row (``errors`` >= 1), for a
    uniform ``draw`` in [0, 1) (0: the step itself)."""
    step = FIRST_S * 2.0 ** min(max(errors, 1) - 1, 62)
    delay = min(max(cap_s, FLOOR_S), step)
    return max(FLOOR_S, delay * (1.0 - JITTER * min(max(draw, 0.0), 1.0)))


def retry_stamp(at: datetime) -> str:
    """When the next try is, as ``status``, ``why`` and ``doctor`` say it: UTC to the second
    (``2026-01-05T10:31:05Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
