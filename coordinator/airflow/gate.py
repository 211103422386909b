"""One backoff per Airflow instance: while an instance refuses our credentials, or asked us to slow down, every call
to it waits out the same backoff, whatever DAG, partition or job it is for. Pure: no I/O, and the time comes in.

Why per instance: a wrong password is wrong for every call. With a backoff per key, N pending triggers made N login
attempts per step (client-go's controllers back off per key because each object fails for reasons of its own; a
credential fails for all of them at once, like its client-side rate limiter, which is per client).

Rules:
- **Refused.** :meth:`InstanceGate.refused` closes the gate for the next step of one exponential backoff
  (``RetryPolicy``: first step, doubling, capped; the client's settings name both). What counts as a refusal is the
  client's decision (``client.py``): a login refused or a credential that cannot be obtained, a 401, a 403 to a
  credential the instance never accepted.
- **Throttled.** :meth:`InstanceGate.throttled` closes it until the time a 429's ``Retry-After`` names (capped like a
  step); it does not lengthen the refusal's next step.
- **Held back, not sent.** While closed, :meth:`InstanceGate.admit` says how long a call must wait; the client raises
  ``AirflowBackingOff`` for it without touching the network. Once the step is over, ONE call goes as the probe; others
  are kept back while it is in flight. Its outcome decides: accepted opens the gate, refused starts the next step, no
  answer (5xx, timeout) proves nothing and lets the next call probe.
- **Planned, not polled.** :meth:`InstanceGate.ready` is ``admit`` for those who schedule work (the actuator parks a
  key for the time it returns, as a requeue): when the step is over it hands the probe to one caller for
  ``probe_hold_s`` and tells the others to wait that long, so N parked keys do not wake into N attempts.
- **Counted once.** A call reports its outcome with the epoch it was admitted in (:class:`Admission`); an outcome of a
  call admitted before the latest refusal is stale: N calls in flight that all meet the same wrong password make one
  step, not N, and a late success of an old call does not open the gate a newer refusal closed.
- **Accepted.** :meth:`InstanceGate.accepted` (any answer that proves the credential: 2xx, 404, 409, ...) opens the
  gate and resets the backoff. Every change (a new step, the opening) is told to ``on_change`` with the
  :class:`Refusal` (None: accepted), for the metrics, the presence value and the parked keys.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from coordinator.runtime.retry import RetryPolicy, backoff_delay


@dataclass(frozen=True, slots=True)
class Refusal:
    """How an instance refuses us now: since when (Unix time), the last status and why, how many refused tries in a
    row, and the step being waited out."""

    since: float
    status: int
    reason: str
    attempts: int
    step_s: float
    #: Unix time the next call may go.
    retry_at: float


@dataclass(frozen=True, slots=True)
class Admission:
    """:meth:`InstanceGate.admit`'s answer: wait this long (0: go), whether this call is the probe, and the epoch its
    outcome is reported with (**Counted once**)."""

    wait_s: float
    probe: bool
    epoch: int


class InstanceGate:
    """The module's rules for one instance. ``now`` is a monotonic clock's, ``wall`` Unix time (shown only)."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        probe_hold_s: float,
        on_change: Callable[[Refusal | None], None] = lambda refusal: None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.probe_hold_s = probe_hold_s
        self.on_change = on_change
        self._rng = rng
        self._refusal: Refusal | None = None
        self._due = 0.0  # monotonic time the current step ends
        self._failures = 0  # refused steps in a row (the exponent)
        self._probing = False
        self._reserved_until = 0.0
        self._epoch = 0  # refusals and throttles so far (**Counted once**)

    @property
    def refusal(self) -> Refusal | None:
        """None while the instance accepts us."""
        return self._refusal

    def admit(self, now: float) -> Admission:
        """**Held back, not sent**: wait 0 when a call may go. A call admitted as the probe must end in
        :meth:`accepted`, :meth:`refused`, :meth:`throttled` or :meth:`released`."""
        if self._refusal is None:
            return Admission(0.0, False, self._epoch)
        if now < self._due:
            return Admission(self._due - now, False, self._epoch)
        if self._probing:
            return Admission(self.probe_hold_s, False, self._epoch)
        self._probing = True
        return Admission(0.0, True, self._epoch)

    def ready(self, now: float) -> float:
        """**Planned, not polled**: 0 when work for the instance may start now, else how long to park it."""
        if self._refusal is None:
            return 0.0
        if now < self._due:
            return self._due - now
        if self._probing or now < self._reserved_until:
            return max(self._reserved_until - now, self.probe_hold_s if self._probing else 0.0)
        self._reserved_until = now + self.probe_hold_s
        return 0.0

    def refused(self, now: float, wall: float, status: int, reason: str, epoch: int) -> Refusal | None:
        """**Refused**: the next step begins; None when the call was admitted before the latest refusal
        (**Counted once**)."""
        if epoch != self._epoch:
            return None
        self._failures += 1
        step = backoff_delay(self.policy, self._failures, self._rng())
        return self._close(now, wall, step, status, reason, attempts=self._failures)

    def throttled(self, now: float, wall: float, retry_after_s: float) -> Refusal:
        """**Throttled**: closed until ``retry_after_s`` from now (capped at the policy's maximum); whoever asked
        last is obeyed."""
        step = min(max(retry_after_s, 0.0), self.policy.max_s)
        attempts = self._refusal.attempts if self._refusal is not None else 0
        return self._close(now, wall, max(step, self._due - now), 429, "throttled (429 Retry-After)", attempts)

    def accepted(self, epoch: int) -> None:
        """**Accepted** (a stale success changes nothing: **Counted once**)."""
        if epoch != self._epoch:
            return
        self._probing = False
        self._reserved_until = 0.0
        self._failures = 0
        self._due = 0.0
        if self._refusal is not None:
            self._refusal = None
            self.on_change(None)

    def released(self) -> None:
        """The probe ended without proving anything (no answer, 5xx): the next call probes."""
        self._probing = False
        self._reserved_until = 0.0

    def _close(self, now: float, wall: float, step: float, status: int, reason: str, attempts: int) -> Refusal:
        self._epoch += 1
        self._probing = False
        self._reserved_until = 0.0
        self._due = now + step
        since = self._refusal.since if self._refusal is not None else wall
        self._refusal = Refusal(since, status, reason, attempts, step, wall + step)
        self.on_change(self._refusal)
        return self._refusal


#: First step of the backoff from a refusing instance (**One backoff per instance**; the watcher's
#: COORDINATOR_AIRFLOW_REFUSED_BACKOFF_S): long enough that N pending calls cost one login per step, short enough that
#: a blip (a JWT secret rotated under a running api-server) costs seconds.
REFUSED_BACKOFF_S = 5.0
#: Its cap (COORDINATOR_AIRFLOW_REFUSED_BACKOFF_MAX_S): 5 minutes, client-go's order of magnitude for a failing item;
#: an LDAP/IdP account lockout policy counts a few failures per quarter hour, and a corrected password file is picked up
#: within one step.
REFUSED_BACKOFF_MAX_S = 300.0
#: Jitter of each step (drawn from [0.8 d, d]): watchers of several deployments that share an IdP spread out.
REFUSED_BACKOFF_JITTER = 0.2


def refused_backoff(first_s: float = REFUSED_BACKOFF_S, max_s: float = REFUSED_BACKOFF_MAX_S) -> RetryPolicy:
    """The backoff from a refusing instance (``runtime.retry``'s **A value**)."""
    return RetryPolicy(initial_s=min(first_s, max_s), max_s=max_s, jitter=REFUSED_BACKOFF_JITTER)


def retry_after_s(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (Unix time): delta-seconds or an HTTP date; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def iso_at(unix: float) -> str:
    """Unix time as an ISO 8601 UTC instant to the second (log lines and messages)."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


def backing_off_text(
    instance: str, credentials_from: str | None, method: str, path: str, refusal: Refusal, wait: float
) -> str:
    """What a call the gate keeps back says (``AirflowBackingOff``): since when, why, and where the credential comes
    from when it was refused."""
    fix = f"; check {credentials_from}" if refusal.status in (401, 403) and credentials_from else ""
    return (
        f"{instance}: {method} {path}: not sent: the instance has refused us since {iso_at(refusal.since)} "
        f"({refusal.reason}, {refusal.status}; {refusal.attempts} refused tries in a row); next try in "
        f"{wait:.0f} s{fix}"
    )
