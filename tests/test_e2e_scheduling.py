"""How ``make test`` spreads the end-to-end modules over its two workers (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import OWN_AIRFLOW_E2E_MODULES, ROOT

#: The session fixture that starts the shared Airflow 3.3 stack (``e2e`` hands it out; a module may have an ``e2e``
#: of its own over its own stack).
SHARED_STACK = "airflow_e2e"


def fixtures_per_test(*modules: str) -> str:
    """pytest's own listing of the fixtures each test of ``modules`` uses, those they use included."""
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "--fixtures-per-test", "-q",
         *modules],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    return listed.stdout


def shared_stack_users(listing: str) -> list[str]:
    """The modules of ``listing`` (``fixtures_per_test``) whose tests use the shared stack."""
    users, module = [], ""
    for line in listing.splitlines():
        if line.startswith("-") and "(tests/" in line:
            module = line.split("(", 1)[1].split(":", 1)[0]
        elif line.startswith(f"{SHARED_STACK} -- ") and module not in users:
            users.append(module)
    return users


def test_own_airflow_modules_exist_and_never_ask_for_the_shared_stack() -> None:
    """Each module sent to the second worker exists and none of its tests uses ``airflow_e2e``, directly or through a
    fixture (that would start a second shared Airflow in that worker); the check finds a module that does use it."""
    for module in OWN_AIRFLOW_E2E_MODULES:
        assert (ROOT / module).is_file(), f"{module} is listed in OWN_AIRFLOW_E2E_MODULES but does not exist"
    assert shared_stack_users(fixtures_per_test(*OWN_AIRFLOW_E2E_MODULES)) == [], (
        "these modules use the shared Airflow: remove them from OWN_AIRFLOW_E2E_MODULES"
    )
    assert shared_stack_users(fixtures_per_test("tests/e2e/test_plugin_e2e.py")) == ["tests/e2e/test_plugin_e2e.py"]
