"""How ``make test`` spreads the end-to-end modules over its two workers (tests/conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import OWN_AIRFLOW_E2E_MODULES, ROOT

#: The fixtures that start (or hand out) the session's shared Airflow 3.3 stack.
SHARED_STACK = re.compile(r"\b(airflow_e2e|e2e)\s*:\s*E2E\b")


def test_own_airflow_modules_exist_and_never_ask_for_the_shared_stack() -> None:
    """Each module sent to the second worker exists and asks for neither ``e2e`` nor ``airflow_e2e`` (which would
    start a second shared Airflow in that worker)."""
    for module in OWN_AIRFLOW_E2E_MODULES:
        path: Path = ROOT / module
        assert path.is_file(), f"{module} is listed in OWN_AIRFLOW_E2E_MODULES but does not exist"
        assert not SHARED_STACK.search(path.read_text()), f"{module} uses the shared Airflow: remove it from the list"
