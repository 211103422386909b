"""Which local process owns the other end of a TCP connection (Linux ``/proc``), to tell watchers' requests apart.

A test server sees a request from ``127.0.0.1:<port>``; the client's socket is the entry of ``/proc/net/tcp`` whose
local port is that port and whose remote port is the server's, and its inode appears as ``socket:[<inode>]`` among
the file descriptors of exactly one process. The lookup must run while the connection is open (while the server
handles the request); a connection already closed, or a process not among the candidates, gives None.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def _port(address: str) -> int:
    # "0100007F:1F90" (IPv4) or 32 hex digits then ":PORT" (IPv6): the port is hex after the last colon.
    return int(address.rsplit(":", 1)[1], 16)


def socket_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the TCP socket bound to ``local_port`` and connected to ``remote_port``, if any."""
    for table in _TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and _port(fields[1]) == local_port and _port(fields[2]) == remote_port:
                inode = int(fields[9])
                if inode:
                    return inode
    return None


def owner_pid(client_port: int, server_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the client end (``client_port`` -> ``server_port``) of a connection, if any."""
    inode = socket_inode(client_port, server_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # exited
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return pid
            except OSError:
                continue  # closed meanwhile
    return None
