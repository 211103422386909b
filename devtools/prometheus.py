"""Debian's Prometheus for the tests: ``promtool`` checks and unit-tests the shipped alert rules, and the
``prometheus`` server scrapes a real watcher in the end-to-end alert test.

Rules:
1. The binaries are Debian's ``prometheus`` package (``/usr/bin/promtool``, ``/usr/bin/prometheus``): installed with
   apt-get only when missing and we are root on a machine with apt-get (as ``make postgresql`` does); anywhere else
   :class:`PrometheusMissing` says how to install them. A test never skips for want of them.
2. Nothing here starts a server: the end-to-end test owns its process (started on 127.0.0.1, stopped by PID).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The one source of truth of the alert rules: the chart renders it (templates/prometheusrule.yaml), the release ships
#: it (devtools/dist.py).
RULES = REPO / "charts" / "airflow-etcd-coordinator" / "files" / "prometheus-rules.yaml"
#: promtool's unit tests of RULES: each alert firing and not firing.
RULES_TESTS = REPO / "tests" / "prometheus" / "rules.test.yaml"
#: The same for the alerts whose windows span a day, evaluated every 10 minutes (a minute's step costs seconds there).
RULES_TESTS_DAILY = REPO / "tests" / "prometheus" / "rules-daily.test.yaml"
INSTALL_HINT = "make prometheus  (or: sudo apt-get install -y --no-install-recommends prometheus)"


class PrometheusMissing(RuntimeError):
    """promtool or prometheus is not installed and could not be installed here; the message says how."""


def _missing() -> list[str]:
    return [tool for tool in ("promtool", "prometheus") if shutil.which(tool) is None]


def ensure_installed() -> None:
    """Install Debian's ``prometheus`` package when a binary is missing and we are root with apt-get (rule 1)."""
    missing = _missing()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PrometheusMissing(f"{' and '.join(missing)} not found: install Debian's prometheus: {INSTALL_HINT}")
    sys.stderr.write(">> installing Debian's prometheus (promtool) for the alert rules' tests\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
                   check=True, stdout=subprocess.DEVNULL, env=env)  # fmt: skip
    if _missing():
        raise PrometheusMissing(f"apt-get installed prometheus but {' and '.join(_missing())} is not on PATH")


def binary(name: str) -> str:
    """The path of ``promtool`` or ``prometheus``, installed first if need be (rule 1)."""
    ensure_installed()
    found = shutil.which(name)
    if found is None:  # ensure_installed checked both
        raise PrometheusMissing(f"{name} not found: {INSTALL_HINT}")
    return found
