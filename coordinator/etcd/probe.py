"""Cheap questions to etcd, for the watcher's readiness probe and ``doctor``: is it there, which alarms are raised,
may this user write.

Rules: the liveness question is one linearizable read (``count_only``, so no value travels) with its own short gRPC
deadline and no retry: a linearizable read needs the cluster's quorum, so a member cut off from its peers does not
answer it, and neither does a stopped (SIGSTOP) or wedged server, whose TCP connection stays open and silent. The
answer's header carries etcd's current revision. The alarm question is etcd's own alarm list (Maintenance.Alarm GET,
what ``etcdctl alarm list`` asks): NOSPACE or CORRUPT there means every write is refused until an operator disarms it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.errors import StoreError
from coordinator.etcd.stubs import rpc
from coordinator.etcd.types import Alarm
from coordinator.etcd.wire import encode

if TYPE_CHECKING:
    from coordinator.etcd.client import EtcdStore


async def ping(store: EtcdStore, key: str, timeout_s: float) -> int:
    """etcd's current revision; StoreError (via the store's mapping) when it does not answer within ``timeout_s``."""
    request = rpc.RangeRequest(key=encode(key), count_only=True)
    response = await store.call(
        "probe", lambda c: c.kv.Range(request, timeout=timeout_s, metadata=c.metadata), retry=False
    )
    return int(response.header.revision)


async def alarms(store: EtcdStore, timeout_s: float) -> tuple[Alarm, ...]:
    """The alarms raised on any member (empty when none), asked once with a ``timeout_s`` deadline; StoreError when
    etcd does not answer or refuses the question."""
    request = rpc.AlarmRequest(action=rpc.AlarmRequest.GET, memberID=0, alarm=rpc.NONE)
    response = await store.call(
        "alarms", lambda c: c.maintenance.Alarm(request, timeout=timeout_s, metadata=c.metadata), retry=False
    )
    return tuple(
        Alarm(name=str(rpc.AlarmType.Name(a.alarm)), member_id=int(a.memberID))
        for a in response.alarms
        if a.alarm != rpc.NONE
    )


async def write_allowed(store: EtcdStore, key: str, timeout_s: float) -> bool:
    """Whether this user may write ``key``, asked without writing: a transaction whose condition never holds (a
    mod revision of -1) with a put in its success branch. etcd checks the permissions of every branch before it
    evaluates the condition, so PERMISSION_DENIED means no write permission; an answer means allowed, and nothing
    was written either way. Other errors are raised (StoreError)."""
    k = encode(key)
    request = rpc.TxnRequest(
        compare=[rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=k, mod_revision=-1)],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=b""))],
        failure=[],
    )
    try:
        await store.call("write_probe", lambda c: c.kv.Txn(request, timeout=timeout_s, metadata=c.metadata),
                         retry=False)  # fmt: skip
    except StoreError as exc:
        if "PERMISSION_DENIED" in str(exc):
            return False
        raise
    return True
