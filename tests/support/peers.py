"""Which local process owns the other end of a TCP connection (Linux ``/proc``), to tell watchers' requests apart.

A test server sees a request from ``127.0.0.1:<port>``; the client's socket is the one bound to that port and
connected to the server's, and its inode appears as ``socket:[<inode>]`` among the file descriptors of exactly one
process. The lookup must run while the connection is open (while the server handles the request); a connection
already closed, or a process not among the candidates, gives None.

The socket's inode comes from the kernel's sock_diag netlink interface (what ``ss`` uses): one exact look-up of the
connection's four addresses. Reading ``/proc/net/tcp`` instead (the fallback, when netlink answers nothing) makes the
kernel print every TCP socket of the machine, TIME_WAIT ones included: with the ~12,000 a busy test machine holds
(the fake Airflow closes each connection after its answer), that cost ~30 ms of CPU per request, half of the test
process's CPU in the scenarios that send hundreds of requests.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

_TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def _port(address: str) -> int:
    # "0100007F:1F90" (IPv4) or 32 hex digits then ":PORT" (IPv6): the port is hex after the last colon.
    return int(address.rsplit(":", 1)[1], 16)


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_NLMSG_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_DIAG_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2: family, protocol, extensions, pad, states
_SOCKID = struct.Struct("!HH16s16s")  # inet_diag_sockid: source port, destination port, addresses (network order)
_SOCKID_TAIL = struct.Struct("=III")  # inet_diag_sockid: interface, cookie (two words)
_DIAG_MSG_INODE = struct.Struct("=I")  # inet_diag_msg's last field, after family/state/timer/retrans, sockid, 4 u32


def _diag_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The inode of the TCP socket ``local`` -> ``remote`` by one sock_diag look-up: 0 when the kernel knows no such
    connection (closed already), None when netlink cannot answer."""
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    try:
        addresses = [ipaddress.ip_address(host).packed.ljust(16, b"\0") for host in (local[0], remote[0])]
        request = (
            _DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
            + _SOCKID.pack(local[1], remote[1], *addresses)
            + _SOCKID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)
        )
        header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            nl.sendall(header + request)
            reply = nl.recv(65536)
    except (OSError, ValueError):
        return None
    if len(reply) < _NLMSG_HEADER.size:
        return None
    length, kind, *_ = _NLMSG_HEADER.unpack_from(reply)
    body = reply[_NLMSG_HEADER.size : length]
    if kind == _NLMSG_ERROR:
        return 0  # ENOENT: no such connection
    if kind != _SOCK_DIAG_BY_FAMILY or len(body) < 4 + _SOCKID.size + _SOCKID_TAIL.size + 5 * 4:
        return None
    (inode,) = _DIAG_MSG_INODE.unpack_from(body, 4 + _SOCKID.size + _SOCKID_TAIL.size + 4 * 4)
    return int(inode)


def socket_inode(local_port: int, remote_port: int, host: str = "127.0.0.1") -> int | None:
    """The inode of the TCP socket bound to ``local_port`` and connected to ``remote_port`` (both on ``host``), if
    any: netlink's exact look-up, else a scan of ``/proc/net/tcp``."""
    inode = _diag_inode((host, local_port), (host, remote_port))
    if inode is not None:
        return inode or None
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
