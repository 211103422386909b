"""The audit's decision: given what etcd holds for a run and what Airflow's REST API reports, what to write.

The listener writes run states from inside the scheduler, before it commits; a write can be lost (etcd down, the
scheduler killed). The watcher therefore periodically lists recent runs over REST and repairs etcd. The same audit
lets an instance without the plugin take part ("agentless" mode), with the audit interval as its latency.

Rules (pure: no I/O, no clock):
- **Airflow is the truth** for Airflow runs. ``queued`` and unknown states are never written (the listener never writes
  queued either; only running and terminal states are facts).
- **Never a needless write**: every success write is a new generation (it reruns dependents), so the audit writes only
  when etcd is missing the run, lags behind it (running -> success), or missed a whole attempt.
- **Missed attempts by start date.** REST does not expose ``clear_number``. A missed attempt is recognised by a later
  ``start_date`` than the one recorded, and written as the next attempt (``clear_number`` + 1).
- **The newest run stands** (semantics `newest-run-stands`): of several Airflow runs of one partition only the one
  standing (:func:`coordinator.core.run_order.standing_run`) is audited, and a record of another run is replaced only
  by a run that comes later in the run order; a second pass over unchanged Airflow state writes nothing.
- **Other writers left alone.** A record from a non-Airflow writer (``mark``, another team's job) under another run id
  is left alone.
- **A retraction stands.** A record ``coordinator retract`` wrote (source ``retract:...``: the withdrawn success, as
  a failed next attempt of the same run) is replaced only by a later attempt Airflow shows (a later start date: the
  rerun that fixes it), never by that run's old success, which Airflow still reports.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from coordinator.core.model import RunRecord, RunState, should_replace
from coordinator.core.run_order import comes_later

_STATES = {"running": RunState.RUNNING, "success": RunState.SUCCESS, "failed": RunState.FAILED}
#: The source of a record ``coordinator retract`` wrote (``retract:<by>``).
RETRACT_SOURCE = "retract:"
#: Start dates closer than this are the same attempt (REST and the listener may round differently).
SAME_START = timedelta(seconds=1)


def audit_record(
    existing: RunRecord | None,
    *,
    run_id: str,
    state: str,
    start_date: datetime | None,
    end_date: datetime | None,
    source: str,
    now: datetime,
    run_type: str | None = None,
    run_after: datetime | None = None,
) -> RunRecord | None:
    """The record to write for a run Airflow reports (``run_type`` as Airflow names it, None: not said), or None when
    etcd already says enough."""
    mapped = _STATES.get(state)
    if mapped is None:
        return None

    def record(clear_number: int) -> RunRecord:
        return RunRecord(
            state=mapped, run_id=run_id, clear_number=clear_number, updated_at=now, source=source,
            start_date=start_date, end_date=end_date if mapped is not RunState.RUNNING else None, run_type=run_type,
            run_after=run_after,
        )  # fmt: skip

    if existing is None:
        return record(0)
    if existing.run_id != run_id:
        ours = existing.source.startswith(("airflow-plugin", "audit"))
        candidate = record(0)
        return candidate if ours and comes_later(candidate, existing) else None
    if start_date is not None and existing.start_date is not None and start_date - existing.start_date > SAME_START:
        return record(existing.clear_number + 1)
    if existing.source.startswith(RETRACT_SOURCE):
        return None  # **A retraction stands**
    candidate = record(existing.clear_number)
    if mapped is existing.state or not should_replace(existing, candidate):
        return None
    return candidate
