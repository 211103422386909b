"""The path of one run-state key from the plugin's hook to the Airflow REST call, function by function.

``python -m devtools.key_path [--tree DIR]`` starts a real etcd and the fake Airflow, installs the plugin's writer, a
watcher in this process, and a graph of two DAGs (``b`` waits for ``a``); the plugin's hook records ``a``'s success,
and the watcher triggers ``b``. At each hand-over of the key (from the hook to the writer's queue, from the writer's
thread to etcd, from the watch into the view, onto each controller's queue, onto Airflow's wire) it takes the stack of
the project's own frames, from the outermost one of that thread or task to the hand-over. The path is those stacks in
order; a hop is one frame on it. ``--tree`` measures another checkout (a tree before a change) with this script.

What it prints: each stack, its frames (``module:function``), the number of hops, how many times the path enters each
module, and the distinct modules and functions. It measures shape, not speed: the same numbers on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

PARTITION = datetime(2026, 1, 1, tzinfo=UTC)
TIMEOUT_S = 30.0


@dataclass
class Stack:
    """The project's frames at one hand-over, outermost first."""

    where: str
    frames: list[str]


@dataclass
class Trace:
    """Every hand-over seen, in order."""

    package: str
    stacks: list[Stack] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, where: str, frame: FrameType | None) -> None:
        frames: list[str] = []
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith(self.package) and "/devtools/" not in name:
                module = name[len(self.package) :].removesuffix(".py").replace("/", ".")
                frames.append(f"{module}:{frame.f_code.co_qualname}")
            back = frame.f_back
            if back is not None and "/asyncio/" in back.f_code.co_filename:
                break  # called by the event loop: the root of a task (what started the task is a hand-over)
            frame = back
        with self.lock:
            self.stacks.append(Stack(where, frames[::-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=None, help="the checkout to measure (default: this one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the stacks as JSON here")
    args = parser.parse_args()
    tree = (args.tree or Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(tree))
    here = str(Path(__file__).resolve().parent.parent)
    if here not in sys.path:
        sys.path.append(here)  # devtools.etcd_server and the fake Airflow, when measuring another tree
    trace = Trace(str(tree / "coordinator") + "/")
    asyncio.run(_measure(trace))
    _report(trace)
    if args.json is not None:
        args.json.write_text(json.dumps([{"where": s.where, "frames": s.frames} for s in trace.stacks], indent=1))


async def _measure(trace: Trace) -> None:
    import httpx

    from coordinator.airflow_plugin import hooks as plugin_hooks
    from coordinator.airflow_plugin import writer as plugin_writer
    from coordinator.airflow_plugin.records import WriterConfig
    from coordinator.core.model import KeyLayout, RunState
    from coordinator.core.view import View
    from coordinator.manager.queue import WorkQueue
    from coordinator.runtime.settings import Settings
    from coordinator.watcher.service import open_watcher
    from devtools.etcd_server import EtcdServer
    from tests.support.fake_airflow import FakeAirflow

    prefix = "/keypath"
    run_key = f"{prefix}/runs/default/a/{PARTITION.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    triggered = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wrap(owner: Any, name: str, where: str, when: Callable[..., bool]) -> None:
        original = getattr(owner, name)

        def hooked(*args: Any, **kwargs: Any) -> Any:
            if when(*args, **kwargs):
                trace.take(where, sys._getframe(1))
            return original(*args, **kwargs)

        setattr(owner, name, hooked)

    def ours(key: object) -> bool:  # a queue key of the path: it names DAG a or b (not a timed concern's tick)
        return not triggered.is_set() and any(f"dag_id='{dag}'" in repr(key) for dag in ("a", "b"))

    wrap(queue.Queue, "put_nowait", "plugin hook -> writer queue", lambda q, item: _is_project(trace, sys._getframe(3)))
    wrap(View, "apply", "watch -> view", lambda view, key, *a, **k: key == run_key)
    wrap(WorkQueue, "add", "-> controller queue", lambda q, key, *a, **k: ours(key))
    wrap(WorkQueue, "add_after", "-> controller queue (later)", lambda q, key, *a, **k: ours(key))
    spawned: dict[str, Stack] = {}
    writes: list[Stack] = []
    create_task = asyncio.BaseEventLoop.create_task

    def new_task(self: asyncio.BaseEventLoop, coro: Any, **kwargs: Any) -> Any:
        # A task started by the project's code (also through asyncio.wait_for, which wraps its awaitable in one):
        # kept for the stack whose outermost frame is its coroutine.
        caller: FrameType | None = sys._getframe(1)
        while caller is not None and "/asyncio/" in caller.f_code.co_filename:
            caller = caller.f_back
        code = getattr(coro, "cr_code", None)
        if tracing.is_set() and not triggered.is_set() and code is not None and _is_project(trace, caller):
            spawned[code.co_qualname] = _stack_of(trace, "-> new task", caller)
        return create_task(self, coro, **kwargs)

    asyncio.BaseEventLoop.create_task = new_task  # type: ignore[method-assign]
    tracing = threading.Event()
    original_send = httpx.AsyncClient.send

    async def send(client: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        if request.method == "POST" and request.url.path.rstrip("/").endswith("/b/dagRuns"):
            trace.take("-> Airflow REST (trigger b)", sys._getframe(1))
            loop.call_soon(triggered.set)
        return await original_send(client, request, *args, **kwargs)

    httpx.AsyncClient.send = send  # type: ignore[method-assign,assignment]

    def writer_profile(frame: FrameType, event: str, arg: object) -> None:
        # The writer's thread: its first call into the etcd client library from the project's code is the hand-over.
        # The last one is the write (a read-modify-write reads the key first).
        if event == "call" and "/grpc/" in frame.f_code.co_filename and _is_project(trace, frame.f_back):
            writes[:] = [_stack_of(trace, "writer thread -> etcd", frame.f_back)]

    with (
        tempfile.TemporaryDirectory() as tmp,
        EtcdServer(unsafe_no_fsync=True) as etcd,
        FakeAirflow(["a", "b"]) as fake,
    ):
        deps = Path(tmp) / "dependencies.json"
        deps.write_text(json.dumps({"version": 1, "dags": {"a": {}, "b": {"upstreams": "a"}}}))
        settings = Settings(
            etcd_endpoints=etcd.endpoint, prefix=prefix, deps=deps, http="off", airflow_url=fake.url,
            airflow_username="admin", airflow_password="admin",  # noqa: S106 (the fake Airflow's own login)
        )  # fmt: skip
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            watcher = await open_watcher(settings, stack)
            service = asyncio.create_task(watcher.run())
            while not watcher.election.is_leader:  # noqa: ASYNC110 (the election has no event to wait on)
                await asyncio.sleep(0.1)  # the start's passes: what follows is the key's path alone
            await asyncio.sleep(1.0)
            trace.stacks.clear()
            tracing.set()
            threading.setprofile(writer_profile)
            config = WriterConfig(etcd=settings.etcd(), keys=KeyLayout(prefix))
            writer = plugin_writer.BackgroundWriter(config)
            plugin_writer.install_writer(writer)
            run = SimpleNamespace(
                dag_id="a", run_id="scheduled__2026-01-01T00:00:00+00:00", logical_date=PARTITION,
                data_interval_start=PARTITION, data_interval_end=PARTITION, run_type="scheduled", clear_number=0,
                start_date=PARTITION, end_date=PARTITION, conf={}, partition_key=None, partition_date=None,
            )  # fmt: skip
            plugin_hooks.record_dag_run(run, RunState.SUCCESS)
            await asyncio.wait_for(triggered.wait(), TIMEOUT_S)
            trace.stacks[1:1] = writes
            _link_tasks(trace, spawned)
            threading.setprofile(None)
            writer.close(2.0)
            watcher.stop.set()
            await asyncio.wait_for(service, 30.0)


def _is_project(trace: Trace, frame: FrameType | None) -> bool:
    return frame is not None and frame.f_code.co_filename.startswith(trace.package)


def _stack_of(trace: Trace, where: str, frame: FrameType | None) -> Stack:
    before = len(trace.stacks)
    trace.take(where, frame)
    with trace.lock:
        return trace.stacks.pop(before)


def _link_tasks(trace: Trace, spawned: dict[str, Stack]) -> None:
    """Each stack that starts in a task the path started is preceded by the stack that started the task."""
    linked: list[Stack] = []
    for stack in trace.stacks:
        chain = [stack]
        root = stack.frames[0].split(":", 1)[1] if stack.frames else ""
        while root in spawned:
            parent = spawned.pop(root)
            chain.append(parent)
            root = parent.frames[0].split(":", 1)[1] if parent.frames else ""
        linked.extend(reversed(chain))
    trace.stacks[:] = linked


def _report(trace: Trace) -> None:
    out = sys.stdout
    hops = 0
    entries: dict[str, int] = {}
    functions: set[str] = set()
    for stack in trace.stacks:
        out.write(f"## {stack.where} ({len(stack.frames)} frames)" + "\n")
        previous = ""
        for frame in stack.frames:
            out.write(f"  {frame}" + "\n")
            module = frame.split(":")[0]
            if module != previous:
                entries[module] = entries.get(module, 0) + 1
            previous = module
            functions.add(frame)
        hops += len(stack.frames)
    out.write(f"\nhops: {hops} frames over {len(trace.stacks)} hand-overs; {len(functions)} distinct functions\n")
    busiest = sorted(entries.items(), key=lambda item: -item[1])
    out.write("entries per module: " + ", ".join(f"{m} {n}" for m, n in busiest) + "\n")


if __name__ == "__main__":
    main()
