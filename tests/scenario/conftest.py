"""Harness for scenario tests: real etcd, real ``coordinator watch`` subprocesses and the fake Airflow.

- ``stack``: one test's world on the session's shared etcd, isolated by a unique key prefix. ``private_stack``: the
  same on an etcd of the test's own, for tests that compact, restart or kill it (compaction is global).
- The fake Airflow plays both the scheduler and the plugin: its ``on_state`` callback writes every running and
  terminal state as a RunRecord to ``{prefix}/runs/default/{dag}/{partition}`` through etcd's HTTP JSON gateway
  (synchronous and thread-safe, so it needs no event loop in the fake's executor thread).
- Watchers are real processes (``python -m coordinator.cli watch``) logging to files in ``tmp_path``; teardown stops
  each by its PID (TERM, then KILL) even when the test failed, and prints every log's tail when it did.
- One-shot commands (:meth:`Stack.cli`, :meth:`Stack.command`: status, why, reconcile, release, ...) run
  ``coordinator``'s ``main()`` in the test process (tests/support/cli_inproc.py): the claims are about the watchers;
  a ``python -m coordinator.cli`` subprocess per call cost about 0.6 s of CPU before the command did anything.
- The fake logs which watcher sent each request (``fake.requests()``, ``Request.client`` is the watcher's
  :attr:`WatcherProc.name`), found from the client's TCP port (tests/support/peers.py).
- Teardown fails the test when the fake itself broke (an exception in its handler, answered 500, which the
  watcher's retries would otherwise hide) or when its on_state callback failed.
- Waits poll a condition with a generous timeout (the machine may be loaded by other suites) and return as soon as
  the condition holds; the only fixed sleeps are quiet periods that prove nothing else happens.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from coordinator.core.model import (
    DEFAULT_INSTANCE,
    KeyLayout,
    NodeId,
    TriggerStatus,
    canonical_partition,
    partition_datetime,
)
from coordinator.core.run_partition import AirflowRun, run_partitions
from devtools.etcd_server import EtcdServer
from tests.support.cli_inproc import run_cli
from tests.support.fake_airflow import Execution, FakeAirflow, RunView
from tests.support.peers import owner_pid

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = tuple(f"0{i}_pipeline" for i in range(1, 8))
ROOT_DAG = PIPELINE[0]
FAN_IN = PIPELINE[1:5]
JOIN = PIPELINE[5]
LAST = PIPELINE[6]
DOWNSTREAM = PIPELINE[1:]
#: The project's example graph (dependencies.json at the root), in the proof of concept's shorthand.
SEVEN_DAGS: dict[str, Any] = {
    **{dag: ROOT_DAG for dag in FAN_IN},
    JOIN: list(FAN_IN),
    LAST: JOIN,
}
#: Generous: other suites may load the 2-core machine; every wait returns as soon as its condition holds.
TIMEOUT = 30.0
#: No etcd write, Airflow request or run transition for this long: the system has settled.
QUIET_S = 0.75
_ENDPOINTS = ("version", "health", "login", "get_dag", "patch_dag", "list_runs", "trigger", "get_run", "patch_run")
_ENDPOINTS += ("clear", "other")

_partition_seq = itertools.count()
_PARTITION_BASE = datetime(2031, 1, 1, tzinfo=UTC)


def new_partition() -> str:
    """A partition no other scenario of this session uses."""
    return canonical_partition(_PARTITION_BASE + timedelta(days=next(_partition_seq)))


def wait_for(cond: Callable[[], T], what: str, timeout: float = TIMEOUT, interval: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- etcd over its HTTP JSON gateway ---------------------------------------------------------------------------


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _range_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return _b64(bytes(raw))


class EtcdHttp:
    """Synchronous etcd access through the gRPC gateway (``POST /v3/...``): safe from any thread."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def call(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint + path, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result: dict[str, Any] = json.loads(response.read() or b"{}")
            return result

    def put(self, key: str, value: bytes | str, *, retry_s: float = 0.0) -> int:
        """Write ``key``; keep retrying connection failures for ``retry_s`` seconds (etcd restarting)."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                reply = self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
                return int(reply["header"]["revision"])
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get(self, key: str) -> bytes | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def items(self, prefix: str) -> dict[str, bytes]:
        kvs = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _range_end(prefix)}).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")) for kv in kvs}

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": _b64("\0")})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


# -- a cuttable TCP proxy ------------------------------------------------------------------------------------------


class TcpProxy:
    """Forwards a local port to ``127.0.0.1:target_port``; :meth:`cut` drops every connection and refuses new ones
    until :meth:`restore`, so a client is disconnected while the server stays up and writable by the test."""

    def __init__(self, target_port: int | None) -> None:
        assert target_port is not None
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._open = True
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if not self._open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=1.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src)
            self._drop(dst)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def cut(self) -> None:
        self._open = False
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            self._drop(sock)

    def restore(self) -> None:
        self._open = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
        self._thread.join(timeout=5)


# -- watcher processes -------------------------------------------------------------------------------------------


class WatcherProc:
    """One ``coordinator watch`` process; its stdout and stderr go to ``log_path``."""

    def __init__(self, watcher_id: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.id = watcher_id
        self.log_path = log_path
        self.started = time.monotonic()
        with log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                         env=env, cwd=log_path.parent)  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def name(self) -> str:
        """Unique per process (a restarted watcher keeps its id but gets a new log file): the log file's stem."""
        return self.log_path.stem.removeprefix("watcher-")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def lines(self, pattern: str) -> list[str]:
        """Log lines matching the regex ``pattern``."""
        regex = re.compile(pattern)
        return [line for line in self.log().splitlines() if regex.search(line)]

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The first log line matching ``pattern``; fails at once if the process exits first."""
        regex = re.compile(pattern)

        def found() -> str | None:
            for line in self.log().splitlines():
                if regex.search(line):
                    return line
            if not self.alive:
                raise AssertionError(f"watcher {self.id} exited ({self.proc.returncode}) before {pattern!r}:\n"
                                     f"{self.tail()}")  # fmt: skip
            return None

        return wait_for(found, f"{pattern!r} in the log of watcher {self.id}", timeout, interval=0.03)

    def http_url(self, timeout: float = TIMEOUT) -> str:
        """The base URL of this watcher's HTTP listener, from its ``http.listening`` log line."""
        line = self.wait_log(r"http\.listening address=", timeout)
        found = re.search(r"address=(\S+)", line)
        assert found is not None, line
        return "http://" + found.group(1)

    def wait_leading(self, timeout: float = TIMEOUT) -> None:
        """Until this watcher ran a reconcile pass as leader (after adopting the graph, so triggers count)."""
        self.wait_log(r"reconcile revision=.* leader=True", timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (and SIGCONT, in case it is frozen), wait longer than the watcher's own bound on a stop, then
        SIGKILL; the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGCONT)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=timeout)

    def freeze(self) -> None:
        """SIGSTOP, like a long GC pause or a VM stall: sockets stay open, nothing runs, leases run out."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the process resumes where it stopped, with every timer overdue."""
        self.proc.send_signal(signal.SIGCONT)

    def kill9(self) -> None:
        """SIGKILL, like a crash: no resignation, the leader lease lives until its TTL."""
        if self.alive:
            self.proc.kill()
        self.proc.wait(timeout=10)


# -- the stack -------------------------------------------------------------------------------------------------


class Stack:
    """One scenario's world: etcd (shared or private), a key prefix, the fake Airflow, a deps file, watchers."""

    def __init__(self, tmp_path: Path, endpoint: str, prefix: str, etcd_server: EtcdServer | None = None) -> None:
        self.tmp_path = tmp_path
        self.endpoint = endpoint
        self.prefix = prefix
        self.server = etcd_server
        self.keys = KeyLayout(prefix)
        self.etcd = EtcdHttp(endpoint)
        self.deps = tmp_path / "dependencies.json"
        self.set_deps(SEVEN_DAGS)
        self.fake = FakeAirflow(
            PIPELINE, on_state=self._on_state, identify=self._identify, queue_delay_s=0.01, run_duration_s=0.05
        )
        self.watchers: list[WatcherProc] = []
        self._cleanups: list[Callable[[], object]] = []
        self._cli_count = itertools.count()

    # -- plumbing --------------------------------------------------------------------------------------------

    def _on_state(self, dag_id: str, run_id: str, logical_date: datetime | None, state: str, clear_number: int) -> None:
        """What the plugin does: record the run's state for each partition it stands for (its logical date, or its
        partition key: ``core.run_partition``, the plugin's own rule), retried while etcd restarts."""
        key = None
        if logical_date is None:
            key = next((r.partition_key for r in self.fake.runs(dag_id) if r.run_id == run_id), None)
        found = run_partitions(AirflowRun(logical_date=logical_date, partition_key=key))
        assert found.partitions, f"{dag_id} {run_id}: no partition ({found.unrecorded})"
        record = {"state": state, "run_id": run_id, "clear_number": clear_number, "source": "fake"}
        for partition in found.partitions:
            self.etcd.put(self.run_key(dag_id, partition), json.dumps(record), retry_s=30.0)

    def _identify(self, peer: tuple[str, int]) -> str | None:
        """The name of the watcher whose socket sent a request to the fake (called in the fake's request thread)."""
        watchers = {w.pid: w for w in list(self.watchers)}
        pid = owner_pid(peer[1], int(self.fake.url.rsplit(":", 1)[1]), watchers)
        return None if pid is None else watchers[pid].name

    def env(self, **extra: object) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
        env.update(
            COORDINATOR_AIRFLOW_USERNAME="admin",
            COORDINATOR_AIRFLOW_PASSWORD="admin",
            # 1 s: refusals (404, paused) are retried quickly enough for a test, still far from a busy loop.
            COORDINATOR_ERROR_RETRY_S="1",
            COORDINATOR_AIRFLOW_TIMEOUT_S="5",
            # A free port per watcher (its log names it: WatcherProc.http_url): several watchers run at once here.
            COORDINATOR_HTTP="127.0.0.1:0",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        env.update({key: str(value) for key, value in extra.items() if value is not None})
        for key in [key for key, value in extra.items() if value is None]:  # None: not set at all (the default)
            env.pop(key, None)
        return env

    def add_cleanup(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` at teardown, after every watcher stopped."""
        self._cleanups.append(fn)

    def close(self, *, failed: bool) -> None:
        """Stop every watcher (by PID), run the cleanups, stop the fake; on failure print logs and etcd."""
        with contextlib.ExitStack() as stack:
            stack.callback(self.fake.stop)
            for fn in self._cleanups:
                stack.callback(fn)
            codes = {w.log_path.name: w.stop() for w in self.watchers}
            if failed:
                for w in self.watchers:
                    print(f"\n===== {w.log_path.name} (pid {w.pid}, exit {codes[w.log_path.name]}) =====\n"
                          f"{w.tail(60)}")  # fmt: skip
                self._dump_etcd()
        assert not self.fake.callback_errors, f"on_state failed: {self.fake.callback_errors!r}"
        assert not self.fake.internal_errors, f"the fake Airflow itself failed: {self.fake.internal_errors!r}"

    def _dump_etcd(self, limit: int = 120) -> None:
        try:
            items = self.etcd.items(self.prefix + "/")
        except OSError as exc:
            print(f"\n===== etcd unreadable: {exc}")
            return
        print(f"\n===== etcd under {self.prefix}/ ({len(items)} keys) =====")
        for key, value in list(items.items())[:limit]:
            print(f"{key} = {value[:200].decode(errors='replace')}")

    # -- watchers and commands ---------------------------------------------------------------------------------

    def start_watcher(
        self,
        watcher_id: str = "w1",
        *,
        ttl: int = 3,
        ready: Literal["leading", "loaded", "none"] = "leading",
        endpoint: str | None = None,
        crash_at: str | None = None,
        command: Callable[[dict[str, str]], list[str]] | None = None,
        airflow: bool = True,
        log_level: str = "DEBUG",
        **env: object,
    ) -> WatcherProc:
        """Start a watcher; by default wait until it leads (graph adopted, first pass done). ``crash_at``
        (``name[:n]``) arms a crash point through the tests' entry point (tests/support/crash_watcher.py).
        ``command`` runs ``coordinator`` some other way (inside the watcher image): given the environment, it
        returns the words that stand for ``coordinator``. ``airflow=False``: no ``--airflow-url`` (the instances file
        alone says where the Airflows are). ``log_level``: DEBUG by default, since the waits and many claims read each
        pass's line (``reconcile revision=...``, at DEBUG: ``watcher/pass_summary.py``); INFO shows what a user sees."""
        entry = ["coordinator.cli"] if crash_at is None else ["tests.support.crash_watcher", crash_at]
        environment = self.env(**env)
        program = [sys.executable, "-m", *entry] if command is None else command(environment)
        args = [
            *program, "watch", "--etcd", endpoint or self.endpoint,
            "--prefix", self.prefix, "--deps", str(self.deps), *(["--airflow-url", self.fake.url] if airflow else []),
            "--id", watcher_id, "--leader-ttl", str(ttl), "--log-level", log_level,
        ]  # fmt: skip
        n = sum(w.id == watcher_id for w in self.watchers)
        log_path = self.tmp_path / f"watcher-{watcher_id}{f'-{n}' if n else ''}.log"
        watcher = WatcherProc(watcher_id, args, environment, log_path)
        self.watchers.append(watcher)
        if ready == "leading":
            watcher.wait_leading()
        elif ready == "loaded":
            watcher.wait_log(r"view\.loaded")
        return watcher

    def cli(
        self, *args: str, airflow: bool = False, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``coordinator <args>`` against this stack; returns the CompletedProcess (text). In this process
        (tests/support/cli_inproc.py): the scenarios' claims are about the watchers, which stay real processes; a
        command here only reads or makes one pass, and a subprocess would cost about 0.6 s of CPU per call. Its log
        lines go to pytest's log capture, not to ``stderr``. ``timeout`` is kept for callers; pytest-timeout bounds
        the call."""
        cmd = [*args, "--etcd", self.endpoint, "--prefix", self.prefix, "--deps", str(self.deps)]
        if airflow:
            cmd += ["--airflow-url", self.fake.url]
        result = run_cli(cmd, env=self.env(), cwd=self.tmp_path)
        (self.tmp_path / f"cli-{next(self._cli_count)}-{args[0]}.log").write_text(
            f"$ coordinator {' '.join(cmd)}\nexit {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def command(self, *words: str, **env: object) -> subprocess.CompletedProcess[str]:
        """``coordinator <words>`` as given (no flags added), with this stack's environment (``env`` as in
        :meth:`env`) and working directory, in this process like :meth:`cli`."""
        return run_cli(words, env=self.env(**env), cwd=self.tmp_path)

    def status_json(self, partition: str | None = None) -> dict[str, Any]:
        args = ["status", "--format", "json"] + (["-p", partition] if partition else [])
        data: dict[str, Any] = json.loads(self.cli(*args).stdout)
        return data

    def set_deps(self, spec: dict[str, Any] | str) -> None:
        self.deps.write_text(spec if isinstance(spec, str) else json.dumps(spec, indent=2), encoding="utf-8")

    # -- facts -----------------------------------------------------------------------------------------------

    def run_key(self, dag: str, partition: str) -> str:
        return self.keys.run_key(NodeId(DEFAULT_INSTANCE, dag), partition)

    def trigger_key(self, dag: str, partition: str) -> str:
        return self.keys.trigger_key(NodeId(DEFAULT_INSTANCE, dag), partition)

    def run_record(self, dag: str, partition: str) -> dict[str, Any] | None:
        raw = self.etcd.get(self.run_key(dag, partition))
        return None if raw is None else json.loads(raw)

    def ledger(self, dag: str, partition: str) -> dict[str, Any] | None:
        raw = self.etcd.get(self.trigger_key(dag, partition))
        return None if raw is None else json.loads(raw)

    def trigger_root(self, partition: str, dag: str = ROOT_DAG) -> RunView:
        """The scheduler starts the root's run for ``partition``."""
        return self.fake.create_run(dag, f"scheduled__{partition}", partition_datetime(partition))

    def fake_runs(self, dag: str, partition: str) -> list[RunView]:
        when = partition_datetime(partition)
        return [r for r in self.fake.runs(dag) if r.logical_date == when]

    def executions(self, dag: str, partition: str) -> list[Execution]:
        when = partition_datetime(partition)
        return [e for e in self.fake.executions(dag) if e.logical_date == when]

    def succeeded(self, dag: str, partition: str, attempt: int = 0) -> bool:
        record = self.run_record(dag, partition)
        return record is not None and record["state"] == "success" and record["clear_number"] == attempt

    def all_succeeded(self, pairs: Iterable[tuple[str, str]], attempt: int = 0) -> bool:
        """:meth:`succeeded` for every (dag, partition) of ``pairs``, from one range read of the run states (a wait
        over 300 partitions polled one read per pair: hundreds of HTTP requests per poll)."""
        records = self.etcd.items(self.keys.runs)
        for dag, partition in pairs:
            raw = records.get(self.run_key(dag, partition))
            record = None if raw is None else json.loads(raw)
            if record is None or record["state"] != "success" or record["clear_number"] != attempt:
                return False
        return True

    def wait_success(self, dag: str, partition: str, attempt: int = 0, timeout: float = TIMEOUT) -> None:
        """Until etcd holds success of ``dag``'s attempt ``attempt`` (its clear number) for ``partition``."""
        wait_for(lambda: self.succeeded(dag, partition, attempt), f"{dag} attempt {attempt} success for {partition}",
                 timeout)  # fmt: skip

    def wait_confirmed(self, partition: str, dags: tuple[str, ...] = DOWNSTREAM, timeout: float = TIMEOUT) -> None:
        """Until every DAG's ledger entry for ``partition`` is done (an Airflow call may still be hanging when the
        cascade is already over: a lost response is only noticed at the client's timeout)."""

        def confirmed() -> bool:
            return all((self.ledger(dag, partition) or {}).get("status") == "done" for dag in dags)

        wait_for(confirmed, f"every trigger for {partition} confirmed", timeout)

    def wait_answered(self, timeout: float = TIMEOUT) -> None:
        """Until the fake has finished every request it received: a dead watcher's last requests may still be
        applied after its death, and a test reading Airflow's state must see them."""
        wait_for(lambda: all(r.status is not None for r in self.fake.requests()), "every request answered", timeout)

    def activity(self) -> tuple[int, int, int]:
        return (self.etcd.revision(), sum(self.fake.calls(ep) for ep in _ENDPOINTS), len(self.fake.executions()))

    def pending_intents(self) -> list[str]:
        """The ledger keys whose intent is recorded but not yet confirmed by Airflow."""
        return [
            key
            for key, raw in self.etcd.items(self.keys.triggers).items()
            if json.loads(raw).get("status") == TriggerStatus.PENDING
        ]

    def settle(self, quiet: float = QUIET_S, timeout: float = TIMEOUT, *, confirmed: bool = False) -> None:
        """Until nothing happens for ``quiet`` seconds: no etcd write, no Airflow request, no run transition; with
        ``confirmed``, also until no intent is pending. A watcher starved of CPU between writing its intent and
        calling Airflow is quiet for seconds on a loaded machine (CI saw 3.2 s), so a count asserted after a bare
        quiet period could miss runs whose calls were still to come."""
        deadline = time.monotonic() + timeout
        while True:
            self.fake.wait_idle(timeout=max(0.1, deadline - time.monotonic()))
            before = self.activity()
            time.sleep(quiet)
            if self.activity() == before and not (confirmed and self.pending_intents()):
                return
            if time.monotonic() > deadline:
                pending = f"; intents pending: {self.pending_intents()}" if confirmed else ""
                raise AssertionError(f"still busy after {timeout:g} s{pending}")

    # -- assertions --------------------------------------------------------------------------------------------

    def assert_once(self, partition: str, dags: tuple[str, ...] = DOWNSTREAM, *, clears: int = 0) -> None:
        """Each DAG has one run for the partition, cleared exactly ``clears`` times, and ran exactly that often + 1."""
        for dag in dags:
            runs = self.fake_runs(dag, partition)
            assert len(runs) == 1, f"{dag} {partition}: {len(runs)} runs"
            assert runs[0].clear_number == clears, f"{dag} {partition}: cleared {runs[0].clear_number}x, want {clears}"
            assert runs[0].state == "success", f"{dag} {partition}: {runs[0].state}"
            outcomes = [e.outcome for e in self.executions(dag, partition)]
            assert outcomes == ["success"] * (clears + 1), f"{dag} {partition}: executions {outcomes}"

    def assert_order(self, partition: str, attempt: int = 0) -> None:
        """Attempt ``attempt`` of 06 started after every fan-in DAG's ended; 07 after 06; 02..05 after 01."""
        ex = {}
        for dag in PIPELINE:
            matching = [e for e in self.executions(dag, partition) if e.attempt == attempt]
            if dag == ROOT_DAG and not matching:
                matching = self.executions(dag, partition)[-1:]
            assert len(matching) == 1, f"{dag} attempt {attempt}: {matching}"
            ex[dag] = matching[0]
        for dag in FAN_IN:
            assert ex[dag].started >= _ended(ex[ROOT_DAG]), f"{dag} started before {ROOT_DAG} ended"
        assert ex[JOIN].started >= max(_ended(ex[d]) for d in FAN_IN), f"{JOIN} started before all of 02..05 ended"
        assert ex[LAST].started >= _ended(ex[JOIN]), f"{LAST} started before {JOIN} ended"


def _ended(execution: Execution) -> float:
    assert execution.ended is not None, f"{execution.dag_id} attempt {execution.attempt} never ended"
    return execution.ended


# -- fixtures -----------------------------------------------------------------------------------------------------

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


#: 4 MiB: a scenario's own keys take a few KB; about 40 writes of 100 kB reach it in well under a second.
QUOTA_BYTES = 4 * 1024 * 1024


@pytest.fixture
def quota_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A scenario world on an etcd of its own (killed and restarted by the test) whose space quota a test can reach
    in a second."""
    with EtcdServer(unsafe_no_fsync=True, extra_args=[f"--quota-backend-bytes={QUOTA_BYTES}"]) as server:
        world = Stack(tmp_path, server.endpoint, "/coordinator", etcd_server=server)
        world.fake.start()
        try:
            yield world
        finally:
            world.close(failed=_failed(request))


@pytest.fixture
def stack(tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A scenario world on the shared etcd under this test's own prefix."""
    world = Stack(tmp_path, etcd_endpoint, etcd_prefix)
    world.fake.start()
    try:
        yield world
    finally:
        world.close(failed=_failed(request))


@pytest.fixture
def private_stack(tmp_path: Path, private_etcd: EtcdServer, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A scenario world on an etcd of this test's own (for compaction, restarts and kills)."""
    world = Stack(tmp_path, private_etcd.endpoint, "/coordinator", etcd_server=private_etcd)
    world.fake.start()
    try:
        yield world
    finally:
        world.close(failed=_failed(request))
