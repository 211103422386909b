"""EtcdServer: a real etcd on free ports, its own data dir, restart/kill keeping data, clear errors."""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from devtools.etcd_server import EtcdServer, EtcdServerError
from devtools.procs import free_port, port_is_free


def _gateway(endpoint: str, path: str, body: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(
        endpoint + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _put(endpoint: str, key: str, value: str) -> None:
    _gateway(endpoint, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})


def _get(endpoint: str, key: str) -> str | None:
    kvs = _gateway(endpoint, "/v3/kv/range", {"key": _b64(key)}).get("kvs")
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None  # type: ignore[index]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; EtcdServer waits for its children, so a reaped pid is gone for good.
    return True


def test_start_serves_then_stop_kills_and_removes_temp_dir() -> None:
    """A started server answers on its endpoint; stop() ends the process and deletes its temp dir."""
    server = EtcdServer(unsafe_no_fsync=True)
    try:
        server.start()
        assert server.endpoint.startswith("http://127.0.0.1:")
        pid = server.pid
        assert pid is not None and _alive(pid)
        _put(server.endpoint, "/k", "v")
        assert _get(server.endpoint, "/k") == "v"
        base = server.data_dir.parent
        assert server.data_dir.is_dir() and server.log_path.is_file()
    finally:
        server.stop()
    assert server.pid is None and not _alive(pid)
    assert not base.exists()
    server.stop()  # idempotent


def test_kill_then_start_keeps_data_and_endpoint(private_etcd: EtcdServer) -> None:
    """After SIGKILL, start() comes back on the same endpoint with the data written before the crash."""
    endpoint = private_etcd.endpoint
    _put(endpoint, "/crash", "survives")
    old_pid = private_etcd.pid
    private_etcd.kill()
    assert private_etcd.pid is None and not private_etcd.running
    private_etcd.start()
    assert private_etcd.endpoint == endpoint and private_etcd.pid != old_pid
    assert _get(endpoint, "/crash") == "survives"


def test_restart_keeps_data_ports_and_data_dir(private_etcd: EtcdServer) -> None:
    """restart() stops gracefully and starts on the same ports and data dir."""
    endpoint, data_dir = private_etcd.endpoint, private_etcd.data_dir
    _put(endpoint, "/r", "1")
    private_etcd.restart()
    assert (private_etcd.endpoint, private_etcd.data_dir) == (endpoint, data_dir)
    assert _get(endpoint, "/r") == "1"


def test_given_data_dir_is_kept_after_stop(tmp_path: Path) -> None:
    """A data dir passed in belongs to the caller: it survives stop() and a new server on it sees the data."""
    data_dir = tmp_path / "member"
    with EtcdServer(data_dir=data_dir, unsafe_no_fsync=True) as server:
        _put(server.endpoint, "/kept", "yes")
        assert server.log_path == tmp_path / "member.log"
    assert (data_dir / "member").is_dir()
    with EtcdServer(data_dir=data_dir, unsafe_no_fsync=True) as again:
        assert _get(again.endpoint, "/kept") == "yes"


def test_port_with_a_listener_is_not_free() -> None:
    """A port something listens on is never picked (bind and connect checks)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not port_is_free(taken)
        assert free_port(exclude={taken}) != taken


def test_failed_start_names_the_log_and_its_tail() -> None:
    """An etcd that exits during start raises EtcdServerError naming the log file and quoting its tail."""
    server = EtcdServer(extra_args=["--no-such-flag"])
    try:
        with pytest.raises(EtcdServerError) as info:
            server.start()
        message = str(info.value)
        assert str(server.log_path) in message and "no-such-flag" in message
        assert not server.running
    finally:
        server.stop()


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ETCD_BIN pointing at nothing executable fails at construction with the variable named."""
    monkeypatch.setenv("ETCD_BIN", str(tmp_path / "nope"))
    with pytest.raises(EtcdServerError, match="ETCD_BIN"):
        EtcdServer()


def test_restart_refuses_when_its_port_was_taken(private_etcd: EtcdServer) -> None:
    """If another process grabbed the client port while etcd was down, start() says so instead of probing it."""
    private_etcd.kill()
    assert private_etcd.client_port is not None
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", private_etcd.client_port))
        squatter.listen()
        with pytest.raises(EtcdServerError, match="taken"):
            private_etcd.start()
