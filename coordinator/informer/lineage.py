"""The OpenLineage receiver's records (``{prefix}/lineage/{instance}/{runId}``, semantics `lineage-once`) as an index of
the informer: each record's partition and mod revision, what the receiver's retirer decides on (``lineage/retire.py``).

A record whose value does not parse is left out with its problem (``informer/informer.py``'s
**Bad values never stop it**): the receiver that wrote it logs it, and no reader here judges it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from coordinator.core.kinds import Moves
from coordinator.core.lineage.facts import LineageRun
from coordinator.core.model import KeyLayout


@dataclass(frozen=True, slots=True)
class LineageFact:
    """What a reader keeps of one record: its partition and the revision that wrote it."""

    partition: str
    mod_rev: int


@dataclass
class LineageIndex:
    """Every lineage record under ``keys.lineage``: key -> :class:`LineageFact` (an informer ``Index``)."""

    keys: KeyLayout
    records: dict[str, LineageFact] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "lineage"

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.keys.lineage,)

    def reset(self) -> None:
        self.records.clear()
        self.problems.clear()

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> str | None:
        self.records.pop(key, None)
        self.problems.pop(key, None)
        if value is None:
            return None
        try:
            partition = LineageRun.model_validate_json(value).partition
        except ValidationError as exc:
            problem = self.problems[key] = f"not a lineage record: {exc.errors()[0]['msg']}"
            return problem
        self.records[key] = LineageFact(partition, mod_rev)
        return None

    def moved(self, key: str, problem: str | None, into: Moves) -> None:
        """Nothing reacts to it as a change: its readers read it whole."""

    def passed(self, revision: int) -> None:
        """Nothing waits for a revision here."""

    def known(self) -> dict[str, int]:
        found = {key: -1 for key in self.problems}
        found.update((key, fact.mod_rev) for key, fact in self.records.items())
        return found
