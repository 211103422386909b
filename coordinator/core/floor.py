"""The retention floor as a value: ``{prefix}/config/retention`` (semantics `floor-first`).

A fact of the view like any other key (``View.floor``), so every decision reads it from the same snapshot as the
run states it retires; what it retires is ``coordinator.core.retention``'s.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from coordinator.core.model import is_canonical_partition


class RetentionFloor(BaseModel):
    """Value of ``{prefix}/config/retention``: partitions before ``before`` are retired
    (semantics `retention-retires`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    before: str
    #: Who recorded it (``prune:host`` or the leading watcher's id) and when: ``status`` and ``why`` show both.
    by: str = ""
    at: datetime | None = None

    @field_validator("before")
    @classmethod
    def _canonical(cls, value: str) -> str:
        if not is_canonical_partition(value):
            raise ValueError(f"{value!r} is not a canonical partition (YYYY-MM-DDTHH:MM:SSZ)")
        return value

    def retires(self, partition: str) -> bool:
        return partition < self.before

    def describe(self) -> str:
        """``partitions before F are retired by retention since T (set by X)``, for status, why and backfill."""
        since = f" since {self.at.isoformat()}" if self.at is not None else ""
        by = f" (set by {self.by})" if self.by else ""
        return f"partitions before {self.before} are retired by retention{since}{by}"


def parse_floor(raw: bytes) -> tuple[RetentionFloor | None, str | None]:
    """The floor in ``raw``, or (None, why not). Never raises: a bad value is reported and means no floor."""
    try:
        return RetentionFloor.model_validate_json(raw), None
    except ValidationError as exc:
        return None, str(exc.errors()[0]["msg"])


def dump_floor(floor: RetentionFloor) -> bytes:
    return floor.model_dump_json(exclude_none=True).encode()
