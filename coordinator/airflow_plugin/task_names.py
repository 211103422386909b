"""Which tasks the plugin records: the adopted graph's ``upstream_tasks``, cached per process and per host.

Every task process of every DAG asks "is my task named?", and most never are. Reading etcd for each would cost a
gRPC import, a connection and a read per task instance, so the answer is cached:

Rules:
- **In memory** for ``tasks_ttl_s`` (a long-lived process: the scheduler, the api-server).
- **In a file per host.** In a small file per host and store (``coordinator-tasks-<hash of prefix and endpoints>.json``
  in the system's temporary directory, or ``tasks_cache_dir``) for the same TTL: task processes are short-lived (one per
  task instance), so the file is what spares them the etcd read. It is written atomically (temporary file + rename); a
  file that cannot be read, written or parsed only means one more etcd read. A file another user owns is ignored: the
  name is predictable, and a planted file must not be able to switch the recording of tasks off.
- **Read by the writer thread.** The graph value is read only by the writer thread (never in a hook) with the writer's
  per-call timeout.
- **Bad entries dropped.** A graph value whose ``upstream_tasks`` has bad entries is used without them; the problems are
  logged once per process (:mod:`coordinator.core.task_facts`' **Names from the graph**).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator.core.model import KeyLayout
from coordinator.core.task_facts import UPSTREAM_TASKS_FIELD, NamedTasks, named_tasks_from_graph

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore
    from coordinator.runtime.settings import EtcdSettings

log = logging.getLogger(__name__)

#: The adopted graph's key name under ``{prefix}/config/``.
GRAPH_CONFIG = "graph"


def cache_file(cache_dir: Path | None, keys: KeyLayout, etcd: EtcdSettings) -> Path:
    """The host's cache file for this store and prefix (two coordinators on one host never share one)."""
    ident = "|".join([keys.prefix, *(f"{e.host}:{e.port}" for e in etcd.endpoints)])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return (cache_dir or Path(tempfile.gettempdir())) / f"coordinator-tasks-{digest}.json"


class TaskNames:
    """The named tasks of the adopted graph, at most ``ttl_s`` old (**In memory**, **In a file per host**)."""

    def __init__(self, keys: KeyLayout, etcd: EtcdSettings, ttl_s: float, cache_dir: Path | None = None) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._file = cache_file(cache_dir, keys, etcd)
        self._memory: tuple[float, NamedTasks] | None = None  # (monotonic read time, names)
        self._problems_logged = False
        self.etcd_reads = 0  # tests and check-plugin read it

    @property
    def path(self) -> Path:
        return self._file

    def cached(self) -> NamedTasks | None:
        """The names if a fresh copy is in memory or in the host's file; None when etcd must be read."""
        if self._memory is not None and time.monotonic() - self._memory[0] < self._ttl_s:
            return self._memory[1]
        try:
            if self._file.stat().st_uid != os.getuid():
                return None
            data = json.loads(self._file.read_bytes())
            age = time.time() - float(data["read_at"])
            if not 0 <= age < self._ttl_s:
                return None
            names = named_tasks_from_graph(json.dumps({UPSTREAM_TASKS_FIELD: data[UPSTREAM_TASKS_FIELD]}).encode())
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no file, a stale or foreign one: read etcd
        self._memory = (time.monotonic() - age, names)
        return names

    async def load(self, store: EtcdStore, timeout_s: float) -> NamedTasks:
        """Read the adopted graph from etcd, keep the names in memory and in the host's file. Raises etcd errors."""
        kv = await asyncio.wait_for(store.get(self._keys.config_key(GRAPH_CONFIG)), timeout_s)
        self.etcd_reads += 1
        names = named_tasks_from_graph(kv.value if kv is not None else None)
        if names.problems and not self._problems_logged:
            self._problems_logged = True
            log.warning("plugin.upstream_tasks_problems problems=%r", list(names.problems))
        self._memory = (time.monotonic(), names)
        self._write_file(names)
        return names

    def _write_file(self, names: NamedTasks) -> None:
        payload = {
            "read_at": time.time(),
            UPSTREAM_TASKS_FIELD: {node.qualified: sorted(tasks) for node, tasks in names.by_node.items()},
        }
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=self._file.name, suffix=".tmp", dir=self._file.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(payload, out)
            Path(tmp).replace(self._file)
            tmp = None
        except OSError as exc:  # a read-only or foreign directory: every process reads etcd instead
            log.debug("plugin.tasks_cache_not_written path=%s error=%r", self._file, str(exc))
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink()
