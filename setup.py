"""The compiled modules, optional: ``coordinator/core/_native.c`` with ``_facts.c``, ``_load.c``, ``_slots.c`` and
``_settled.c`` (``core.canonical``'s reader of the store's values, the view's compact facts it fills, the page's loop,
the partitions' mappings and the full pass's settled check) and ``coordinator/etcd/_range.c`` (``etcd.range_page``'s
reader of a range read's page).

Everything else is in pyproject.toml. The modules are built wherever a C compiler and Python's headers are (an install
from the sdist, the watcher image, ``make test``'s venv) and skipped where they are not: ``optional`` makes a failed
build a warning, and ``core.canonical`` and ``etcd.range_page`` read the same bytes in Python then.
``COORDINATOR_PURE_PYTHON=1`` builds without them: the release's ``py3-none-any`` wheel, which every Airflow image
installs (``make dist``).
"""

import os

from setuptools import Extension, setup

PURE = os.environ.get("COORDINATOR_PURE_PYTHON") == "1"

MODULES = {
    "coordinator.core._native": [
        "coordinator/core/_native.c",
        "coordinator/core/_facts.c",
        "coordinator/core/_load.c",
        "coordinator/core/_slots.c",
        "coordinator/core/_settled.c",
    ],
    "coordinator.etcd._range": ["coordinator/etcd/_range.c"],
}
#: The headers the sources include (in the sdist: MANIFEST.in; a change rebuilds).
DEPENDS = {"coordinator.core._native": ["coordinator/core/_facts.h", "coordinator/core/_native.h"]}

setup(
    ext_modules=[]
    if PURE
    else [Extension(name, sources, depends=DEPENDS.get(name, []), optional=True) for name, sources in MODULES.items()]
)
