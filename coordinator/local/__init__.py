"""Local helpers for tests, benchmarks and the demo: a real single-member etcd started from a binary."""

from coordinator.local.etcd_server import EtcdServer, EtcdServerError, ServerTls, find_etcd_binary

__all__ = ["EtcdServer", "EtcdServerError", "ServerTls", "find_etcd_binary"]
