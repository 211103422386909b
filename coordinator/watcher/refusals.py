"""Which Airflow instances refuse us now, and since when: what the clients' gates (``airflow/gate.py``) report, kept
for those who show it or wait for it.

Rules:
- **Fed by the gates.** ``AirflowClient(on_refusal=...)`` tells :meth:`Refusals.changed` of each backoff step and of
  the instance accepting again (None); nothing else writes here.
- **Told on.** Each change goes to the metrics (``coordinator_airflow_refusing{instance}`` and its ``since``) and to
  every listener (the actuator wakes the keys it parked for that instance when it accepts again).
- **Shown.** :meth:`Refusals.shown` is the presence value's part (``doctor`` and ``status`` read it from there).
- **On the event loop.** Called on the event loop only (the clients' hook runs there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coordinator.airflow.gate import Refusal
from coordinator.informer.presence_value import InstanceRefusal


@dataclass
class Refusals:
    """The module's rules."""

    #: (instance, refusal or None) to the metrics (**Told on**).
    on_change: Callable[[str, Refusal | None], None] = lambda instance, refusal: None
    listeners: list[Callable[[str, Refusal | None], None]] = field(default_factory=list)
    _now: dict[str, Refusal] = field(default_factory=dict)

    def changed(self, instance: str, refusal: Refusal | None) -> None:
        """**Fed by the gates**."""
        if refusal is None:
            self._now.pop(instance, None)
        else:
            self._now[instance] = refusal
        self.on_change(instance, refusal)
        for listener in self.listeners:
            listener(instance, refusal)

    def refusing(self) -> dict[str, Refusal]:
        return dict(self._now)

    def shown(self) -> tuple[InstanceRefusal, ...]:
        """**Shown**."""
        return tuple(
            InstanceRefusal(
                instance=name,
                since=_at(r.since),
                status=r.status,
                reason=r.reason,
                attempts=r.attempts,
                retry_at=_at(r.retry_at),
            )
            for name, r in sorted(self._now.items())
        )


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)
