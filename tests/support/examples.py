"""How many examples a property test draws: its full count under ``make test``, a quarter of it (at least 10) in the
fast loop.

``make fast`` sets ``COORDINATOR_TEST_EXAMPLES=0.25``: the loop for one's own changes still runs every property, with
fewer draws, while ``make test`` (and CI) draw them all. ``HYPOTHESIS_MAX_EXAMPLES`` sets one count for every property
test, for a deeper run of one's own (``HYPOTHESIS_MAX_EXAMPLES=2000 pytest tests/test_planner_stateful.py``).
"""

from __future__ import annotations

import os

#: A property test never draws fewer than this in the fast loop (or its full count, when that is smaller).
FLOOR = 10


def examples(full: int) -> int:
    """The ``max_examples`` of a property test whose full count is ``full`` (the module docstring)."""
    given = os.environ.get("HYPOTHESIS_MAX_EXAMPLES")
    if given:
        return int(given)
    scale = float(os.environ.get("COORDINATOR_TEST_EXAMPLES", "1"))
    return max(min(full, FLOOR), round(full * scale))
