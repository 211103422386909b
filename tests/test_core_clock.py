"""The pure core reads no clock: time is an input (``now``) its callers pass in (docs/semantics.md, style notes)."""

from __future__ import annotations

import re
from pathlib import Path

import coordinator.core

CORE = Path(coordinator.core.__file__).parent

#: Every way the standard library reads the wall or monotonic clock (import-linter cannot forbid a method of datetime).
CLOCK_READ = re.compile(
    r"\b(?:datetime|date)\.(?:now|utcnow|today)\(|\btime\.(?:time|monotonic|perf_counter|process_time|localtime|gmtime)"
    r"(?:_ns)?\(|\b(?:now|utcnow|today|monotonic|perf_counter)\(\)"
)


def test_no_module_of_the_core_reads_a_clock() -> None:
    """No file under coordinator/core/ calls datetime.now/utcnow/today, date.today or time.time/monotonic/...: a
    decision at time T is a function of T."""
    found = [
        f"{path.relative_to(CORE.parent)}:{number}: {line.strip()}"
        for path in sorted(CORE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CLOCK_READ.search(line.split("#", 1)[0])
    ]
    assert found == []


def test_the_clock_pattern_catches_the_ways_a_clock_is_read() -> None:
    """The pattern above matches each clock read it is meant to forbid and not a ``now`` parameter."""
    for call in ("datetime.now(UTC)", "datetime.utcnow()", "date.today()", "time.time()", "time.monotonic_ns()",
                 "time.perf_counter()", "now()"):  # fmt: skip
        assert CLOCK_READ.search(call), call
    for fine in ("def plan(view, now: datetime)", "audit_record(existing, now=now)", "now - lookback"):
        assert not CLOCK_READ.search(fine), fine
