"""Shared fixtures for tests against a real etcd.

- ``etcd_server`` (session): ONE real etcd for the whole run. Tests isolate themselves by key prefix, so they must
  never restart, kill or compact it (compaction is global): tests that do use ``private_etcd``.
- ``etcd_prefix``: a unique ``/t-<hex>`` prefix per test, deleted afterwards; ``etcd_endpoint``: the shared URL;
  ``etcd_settings``: EtcdSettings for it.
- ``private_etcd``: a server of the test's own, stopped and removed afterwards even when the test fails.
- ``arun``: runs a coroutine with ``asyncio.run`` under a timeout (the project does not use pytest-asyncio; gRPC
  channels belong to one event loop, so each test opens its stores inside its own ``arun`` call).
"""

from __future__ import annotations

import asyncio
import compileall
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools import reaper
from devtools.etcd_server import EtcdServer

T = TypeVar("T")
#: ``PYTHONDONTWRITEBYTECODE=1`` (set on this project's CI machine) also stops pytest from caching its assertion rewrite
#: of each test module, so every worker of every run rewrote all 200 of them: about half of a worker's 10 s collection.
#: The rewritten modules are cached beside the sources' bytecode (``__pycache__/*-pytest-*.pyc``) and checked against
#: the source's modification time like any bytecode; the first run of a fresh clone still writes them.
sys.dont_write_bytecode = False
#: Hooks that name each end-to-end Airflow stack's database at the end of the run; a plugin here, so the xdist
#: controller (which never loads tests/e2e/conftest.py) has them too.
pytest_plugins = ("tests.e2e.stacks_summary",)
#: Modules whose tests share one expensive module fixture: each runs in one worker, so the fixture is made once (the
#: watcher image's build; the pre-commit environment that installs this checkout; the import-dags estate runs and the
#: Airflow oracle process, which split across two workers cost 64 s of CPU against 50 s in one; the documentation
#: site's Sphinx build, ~5 s of CPU, built by each of two workers in a measured run; the legacy estate's two Airflow
#: loads of test_import_estates; the partitions estate's load and its oracle).
SHARED_FIXTURE_MODULES = (
    "tests/scenario/test_watcher_image.py",
    "tests/test_precommit_hook.py",
    "tests/test_import_dags.py",
    "tests/test_docs_site.py",
    "tests/test_import_estates.py",
    "tests/test_import_partitions.py",
)
#: End-to-end modules that start their own Airflow and never the session's shared one (``airflow_e2e``): under
#: ``make test`` they run in another worker, beside the shared stack's tests instead of after them (the shared
#: stack's tests are the run's critical path). A module that also uses ``e2e``/``airflow_e2e`` must not be here: its
#: worker would start a second shared Airflow.
OWN_AIRFLOW_E2E_MODULES = (
    "tests/e2e/test_readme_e2e.py",
    "tests/e2e/test_first_start_e2e.py",
    "tests/e2e/test_lineage_provider_e2e.py",
    "tests/e2e/test_plugin_settings_e2e.py",
    # Their own Airflow each (an etcd that goes down; SQLite): 108 s that ended the run alone on the shared stack's
    # worker (1,488 s against 1,270 and 1,284 s for the other two workers on 5d0421b's tree, 2026-11-28).
    "tests/e2e/test_etcd_outage_e2e.py",
    "tests/e2e/test_sqlite_cascade_smoke_e2e.py",
)
ROOT = Path(__file__).resolve().parents[1]
#: This process's reaper (``_start_reaper``).
REAPER = pytest.StashKey[subprocess.Popen[bytes]]()
#: What the suite's subprocesses import from this checkout: the CLI and watchers it starts, every Airflow process
#: (the plugin), the DAG files Airflow parses again and again, the helpers run as scripts.
COMPILED = ("coordinator", "devtools", "dags", "tests")


def pytest_configure(config: pytest.Config) -> None:
    """Once per run (not in each xdist worker): the checkout's bytecode written before any test starts a process.

    An installed package is compiled when it is installed (pip, the image's ``compileall``); this editable checkout
    is not, and under ``PYTHONDONTWRITEBYTECODE=1`` (set on this project's CI machine) no process writes it either,
    so every process the suite starts (CLI calls, watchers, Airflow's processes, all importing the plugin) compiled
    each module it imported again: about 0.3 s of CPU per CLI start; the CLI tests (``test_spec_cli``,
    ``test_prune_cli``, ``test_engine_cli``) took 76 s of CPU with the bytecode against 88 s without. A stale file is
    harmless: Python checks each against its source's modification time and compiles in memory when they differ.
    Files that do not compile (the import tests' broken DAG files) are left to the tests, silently (``quiet=2``)."""
    _start_reaper(config)
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller did it before starting the workers
    for name in COMPILED:
        compileall.compile_dir(ROOT / name, quiet=2)


def _start_reaper(config: pytest.Config) -> None:
    """Each pytest process (the controller and every xdist worker) gets its own reaper (``devtools/reaper.py``): the
    servers this process starts are stopped even when it is killed before its fixtures' ``finally`` runs. The Popen
    is kept on the config, so its pipe stays open exactly as long as this process lives."""
    fd, name = tempfile.mkstemp(prefix="coordinator-reaper-", suffix=".tsv")
    os.close(fd)
    os.environ[reaper.REGISTRY_ENV] = name
    config.stash[REAPER] = reaper.start(Path(name))


def run_coro(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """``asyncio.run`` with an overall timeout, so a hung test fails instead of waiting for pytest-timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``pytest -n 3`` (make test), every end-to-end test that uses the session's shared Airflow goes to one
    worker, in collection order, so the shared Airflow starts once there (the modules of ``SHARED_FIXTURE_MODULES``
    likewise); the modules of ``OWN_AIRFLOW_E2E_MODULES`` go together to one worker; each other test is scheduled on
    its own to whichever worker is free. (pytest-xdist's ``--dist loadgroup`` would say the same with marks, but it
    renames node ids in a way pytest 9 ignores, so its groups are silently split.)"""
    from xdist.scheduler import LoadScopeScheduling

    class EndToEndInOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module in OWN_AIRFLOW_E2E_MODULES:
                return "tests/e2e (own Airflow)"
            if nodeid.startswith("tests/e2e/"):
                return "tests/e2e"
            # One worker per such module, not two builds of its fixture at once.
            return module if module in SHARED_FIXTURE_MODULES else nodeid

    return EndToEndInOneWorker(config, log)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    # No fsync: nothing kills this server, and 12,000-key tests stay fast. Crash tests use private_etcd.
    with EtcdServer(unsafe_no_fsync=True) as server:
        yield server


@pytest.fixture
def etcd_endpoint(etcd_server: EtcdServer) -> str:
    return etcd_server.endpoint


@pytest.fixture
def etcd_settings(etcd_endpoint: str) -> EtcdSettings:
    return EtcdSettings(endpoints=parse_endpoints(etcd_endpoint))


@pytest.fixture
def etcd_prefix(etcd_settings: EtcdSettings) -> Iterator[str]:
    prefix = f"/t-{uuid.uuid4().hex[:12]}"
    yield prefix

    async def cleanup() -> None:
        from coordinator.etcd import EtcdStore

        async with await EtcdStore.connect(etcd_settings) as store:
            await store.delete_prefix(prefix + "/")
            await store.delete(prefix)

    run_coro(cleanup(), timeout=10)


@pytest.fixture
def private_etcd() -> Iterator[EtcdServer]:
    with EtcdServer(unsafe_no_fsync=True) as server:
        yield server


@pytest.fixture
def arun() -> Callable[..., Any]:
    return run_coro
