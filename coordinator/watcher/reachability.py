"""Is each Airflow instance answering? Judged from the outcome of every request the watcher's clients send.

The deadline pass names an unreachable instance as the cause of a blocked partition (semantics `deadlines-judged`), and
an on-call engineer wants the same fact as a gauge (``coordinator_airflow_reachable{instance}``). Nothing else needs it,
and asking Airflow on purpose would cost requests the watcher already sends: the actuator's triggers and the deadline
pass's one paused-DAG list per instance (``watcher/deadline_facts.py``), which doubles as a probe.

Rules:
- **Every exchange.** Fed by ``AirflowClient(on_request=...)``: (instance, status) of every HTTP exchange, where status
  is the HTTP code, ``timeout`` or ``error`` (no answer).
- **Below 500 is an answer.** An answer below 500 is Airflow answering (a 404 or a 409 is Airflow deciding; a 401/403 is
  a credential problem, reported by the auth metrics): the instance is reachable at once. No answer, a timeout or a 5xx
  (a proxy in front of a dead webserver, an API that cannot reach its database) is a failure.
- **Consecutive failures.** :data:`UNREACHABLE_AFTER` consecutive failures make it unreachable; one failure alone is a
  blip (a restart, a dropped keep-alive socket) and must not page anyone, since a blocked partition triggers the
  ``on_late_of`` handlers.
- **Never asked is not unreachable.** An instance never asked is not unreachable: nothing is known against it.
- **One line per change.** One log line per change (``airflow.unreachable`` / ``airflow.reachable``) and
  ``on_change(instance, reachable)`` for the gauge, on every change and on the first answer (so the gauge exists once
  the instance was asked).
- **On the event loop.** Called on the event loop only (the clients' hook runs there); :meth:`unreachable` is a cheap
  copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Consecutive failures before an instance counts as unreachable (**Consecutive failures**). The deadline pass lists
#: each instance's paused DAGs about once per pass (15 s, the list reused for 5 s), so an idle watcher calls a dead
#: Airflow unreachable after about three passes (under a minute), well before most deadlines and after any restart blip.
UNREACHABLE_AFTER = 3


def is_failure(status: str) -> bool:
    """**Below 500 is an answer**: no answer, a timeout or a 5xx."""
    if not status.isdigit():
        return True  # "error" (connection refused, reset, DNS) or "timeout"
    return int(status) >= 500


@dataclass
class Reachability:
    """Consecutive failures per instance (every rule of the module)."""

    threshold: int = UNREACHABLE_AFTER
    #: Told (instance, reachable) when the judgement changes, and on an instance's first answer
    #: (**One line per change**).
    on_change: Callable[[str, bool], None] = lambda instance, reachable: None
    _failures: dict[str, int] = field(default_factory=dict)
    _down: set[str] = field(default_factory=set)

    def observe(self, instance: str, status: str) -> None:
        """One exchange's outcome (**Every exchange**)."""
        first = instance not in self._failures
        if not is_failure(status):
            self._failures[instance] = 0
            if instance in self._down:
                self._down.discard(instance)
                log.info("airflow.reachable instance=%s status=%s", instance, status)
                self.on_change(instance, True)
            elif first:
                self.on_change(instance, True)
            return
        count = self._failures.get(instance, 0) + 1
        self._failures[instance] = count
        if count >= self.threshold and instance not in self._down:
            self._down.add(instance)
            log.warning("airflow.unreachable instance=%s failures=%d last=%s", instance, count, status)
            self.on_change(instance, False)
        elif first:
            self.on_change(instance, True)  # **Never asked is not unreachable**: one failure proves nothing yet

    def on_request(self, instance: str, method: str, status: str, seconds: float) -> None:
        """``AirflowClient``'s ``on_request`` signature (**Every exchange**)."""
        self.observe(instance, status)

    def unreachable(self) -> frozenset[str]:
        """The instances judged unreachable now (**Consecutive failures**)."""
        return frozenset(self._down)
