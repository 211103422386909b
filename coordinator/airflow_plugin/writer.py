"""Hands run-state records to one background thread that writes them to etcd; the caller never waits.

The hooks that build the records are :mod:`coordinator.airflow_plugin.hooks`; this module is the writer they hand
them to (the background one, or a recorder for dry runs and tests) and the process's one instance of it. Task states
go through the same queue; the thread drops those of tasks the adopted graph does not name (``hooks``' **Task states
alike**).

Rules:
- **One queue, one thread.** One bounded queue per process, consumed by ONE daemon thread running its own asyncio loop
  with an ``EtcdStore``. When the queue is full the NEW record is dropped, counted and logged (the queued ones are older
  records that are already promised; the watcher's REST audit repairs what was dropped). :meth:`BackgroundWriter.submit`
  never blocks and never raises: it is called from the hooks (``hooks``' **Hooks never block**).
- **Per-run ordering.** Writes follow the per-run ordering of :func:`~coordinator.airflow_plugin.records.write_one`
  (compare-and-swap + ``should_replace``), with short timeouts.
- **Retry while unreachable.** While etcd is unreachable the thread retries the head of the queue with bounded
  exponential backoff (:meth:`WriterConfig.delivery_policy`, through ``coordinator.runtime.retry``) and keeps the rest
  queued; only errors that are not about reachability give up after a few attempts.
- **Lazy start, fork-safe.** Started lazily (first record), restarted in a forked child (the parent's thread and queue
  do not exist there), flushed at interpreter exit for at most ``exit_flush_s``; whatever is still queued then is logged
  as undelivered.
- **Single-writer counters.** Counters (submitted, delivered, skipped, dropped, failed, ...) are each written by one
  thread only, so plain integers are enough; readers may see slightly stale values.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from coordinator.airflow_plugin.config import ConnectionResolver, local_config
from coordinator.airflow_plugin.records import (
    MAX_OTHER_ATTEMPTS,
    PluginWrite,
    TaskStateWrite,
    WriteOutcome,
    WriterConfig,
    connect_store,
    is_unreachable,
    write_one,
)
from coordinator.airflow_plugin.task_names import TaskNames
from coordinator.errors import ConfigError
from coordinator.runtime.retry import RetryAttempt, retry_call
from coordinator.runtime.settings import EtcdSettings

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore

log = logging.getLogger(__name__)

#: Undelivered (dropped, or left at shutdown) records listed one per line; beyond that they are only counted.
MAX_LOST_LINES = 100


class _Abandoned(Exception):
    """The writer is stopping or gave up on its queue: the record in flight is no longer retried."""


@dataclass
class WriterStats:
    """What the writer of this process did so far (check-plugin and tests read it; logs carry the totals)."""

    submitted: int = 0  # hook thread
    dropped: int = 0  # hook thread: queue full
    no_partition: int = 0  # hook thread: a run of no partition (docs/keys.md, "Partitions")
    unusable_partition_key: int = 0  # hook thread: a partition key that is neither a readable time nor a segment
    source_errors: int = 0  # hook thread: an asset-triggered run whose consumed events' sources could not be read
    unrecordable: int = 0  # hook thread: a run the key layout cannot name (sub-second logical date, ...)
    delivered: int = 0  # writer thread
    skipped: int = 0  # writer thread: should_replace refused
    failed: int = 0  # writer thread (or exit flush): given up, logged with its key
    retries: int = 0  # writer thread
    not_named: int = 0  # writer thread: task states of tasks the adopted graph does not name
    task_flush_timeouts: int = 0  # hook thread: a task process left before its final state was confirmed


class Writer(Protocol):
    """What the hooks need from a writer (the background one, or a recorder for dry runs and tests)."""

    config: WriterConfig
    stats: WriterStats

    def submit(self, item: PluginWrite) -> bool: ...

    def flush(self, timeout_s: float) -> bool: ...


class RecordingWriter:
    """Keeps the records instead of writing them: ``check-plugin --dry-run`` and tests."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self.stats = WriterStats()
        self.items: list[PluginWrite] = []

    def submit(self, item: PluginWrite) -> bool:
        self.stats.submitted += 1
        self.items.append(item)
        return True

    def flush(self, timeout_s: float) -> bool:
        return True


StoreFactory = Callable[[EtcdSettings], Coroutine[Any, Any, "EtcdStore"]]


_live_writers: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()


class BackgroundWriter:
    """A bounded queue and one daemon thread that writes its records to etcd (the module's **One queue, one thread** to
    **Single-writer counters**)."""

    def __init__(
        self,
        config: WriterConfig,
        store_factory: StoreFactory | None = None,
        resolver: ConnectionResolver | None = None,
    ) -> None:
        self.config = config
        self._store_factory: StoreFactory = store_factory or connect_store
        # The listener's writer: etcd settings that may still need the Airflow connection (looked up off the hook's
        # thread, see coordinator.airflow_plugin.config); None: ``config.etcd`` is complete.
        self.resolver = resolver
        self.last_error: str | None = None
        self.last_written: tuple[str, int] | None = None  # (key, revision): check-plugin reports it
        self.task_names = TaskNames(config.keys, config.etcd, config.tasks_ttl_s, config.tasks_cache_dir)
        self._reset()
        _live_writers.add(self)

    def _reset(self) -> None:
        """Fresh state for this process: called at creation and in a forked child (the parent's thread is gone)."""
        self.stats = WriterStats()
        self._pid = os.getpid()
        self._queue: queue.Queue[PluginWrite] = queue.Queue(self.config.queue_size)
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._give_up = threading.Event()
        self._in_flight: PluginWrite | None = None
        self._closed = False  # close() ran: the exit flush must not stop (and log) a second time

    # ----- hook side: must stay cheap and never block -----

    def submit(self, item: PluginWrite) -> bool:
        """Enqueue a record; False (counted, logged) if the queue is full. Never blocks, never raises."""
        if self._pid != os.getpid():
            self._reset()
        self._ensure_started()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1
            # Each drop is logged with its key up to a bound, then one line per thousand: logging is I/O in the
            # scheduler loop, and a long etcd outage can drop many.
            if self.stats.dropped <= MAX_LOST_LINES or self.stats.dropped % 1000 == 0:
                log.warning(
                    "plugin.dropped reason=queue_full %s queue_size=%d dropped=%d",
                    item.describe(),
                    self.config.queue_size,
                    self.stats.dropped,
                )
            return False
        self.stats.submitted += 1
        self._wake()
        return True

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the thread is gone (exit) and nothing waits
                loop.call_soon_threadsafe(wakeup.set)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is not None:
                return
            # Not waiting for the thread's loop: it looks at the queue before it first waits, so a record queued
            # before the loop exists is still seen, and the hook does not pay for the thread's start-up.
            thread = threading.Thread(target=self._thread_main, name="coordinator-etcd-writer", daemon=True)
            thread.start()
            self._thread = thread
            atexit.register(self._flush_at_exit, self._pid)

    def pending(self) -> int:
        """Records queued or being written."""
        return self._queue.unfinished_tasks

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued record was handled (written, skipped or given up); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout_s: float) -> bool:
        """Flush for at most ``timeout_s``, then stop the thread; undelivered records are counted and logged."""
        if self._pid != os.getpid() or self._thread is None or self._closed:
            return True
        self._closed = True
        done = self.flush(timeout_s)
        self._abandon()  # nothing to do after a complete flush; otherwise every record left is counted and logged
        self._stopping.set()
        self._wake()
        self._thread.join(min(timeout_s, 1.0))
        st = self.stats
        log.info(
            "plugin.writer_stopped submitted=%d delivered=%d skipped=%d dropped=%d failed=%d retries=%d "
            "no_partition=%d unusable_partition_key=%d source_errors=%d unrecordable=%d",
            st.submitted,
            st.delivered,
            st.skipped,
            st.dropped,
            st.failed,
            st.retries,
            st.no_partition,
            st.unusable_partition_key,
            st.source_errors,
            st.unrecordable,
        )
        return done

    def _flush_at_exit(self, pid: int) -> None:
        if pid != os.getpid():  # atexit registrations are inherited by forked children that call sys.exit
            return
        try:
            self.close(self.config.exit_flush_s)
        except Exception:  # an exit handler must not mask the process's own exit
            log.exception("plugin.flush_failed at=exit")

    def _abandon(self) -> None:
        """Give up on everything still queued: count and log each record, so a lost record is never silent."""
        self._give_up.set()
        in_flight = self._in_flight
        if in_flight is not None:
            self.stats.failed += 1
            log.error(
                "plugin.not_delivered reason=in_flight_at_shutdown %s last_error=%r",
                in_flight.describe(),
                self.last_error,
            )
        lost: list[PluginWrite] = []
        while True:
            try:
                lost.append(self._queue.get_nowait())
            except queue.Empty:
                break
            self._queue.task_done()
        self.stats.failed += len(lost)
        # One line per lost record (the keys to repair by hand or by the REST audit), up to a bound: a full queue
        # must not turn a shutdown into ten thousand log lines.
        for item in lost[:MAX_LOST_LINES]:
            log.error("plugin.not_delivered reason=shutdown %s last_error=%r", item.describe(), self.last_error)
        if len(lost) > MAX_LOST_LINES:
            log.error(
                "plugin.not_delivered reason=shutdown more_not_listed=%d undelivered_total=%d",
                len(lost) - MAX_LOST_LINES,
                len(lost),
            )

    # ----- writer thread -----

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except Exception:  # pragma: no cover - _main catches everything; this is the last guard of the thread
            log.exception("plugin.writer_crashed detail=%r", "run states are no longer written")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        # Both are set before the first look at the queue: a submit either sees them (and wakes the loop) or queued
        # its record before that first look.
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        store: EtcdStore | None = None
        try:
            while not self._stopping.is_set():
                # Clear before looking at the queue: a submit after this point sets it again, none is lost.
                self._wakeup.clear()
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    # The timeout is only a safety net; wake-ups come from submit().
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), 1.0)
                    continue
                self._in_flight = item
                try:
                    store = await self._deliver(store, item)
                finally:
                    self._in_flight = None
                    self._queue.task_done()
        finally:
            if store is not None:
                await self._close_store(store)

    async def _deliver(self, store: EtcdStore | None, item: PluginWrite) -> EtcdStore | None:
        """Write one record, retrying while etcd is unreachable (**Retry while unreachable**); return the (possibly new)
        store. Never raises."""
        failures = 0

        async def attempt() -> tuple[WriteOutcome, int]:
            nonlocal store, failures
            if self._give_up.is_set() or self._stopping.is_set():
                raise _Abandoned  # _abandon counted and logged the in-flight record
            try:
                names = self.task_names.cached() if isinstance(item, TaskStateWrite) else None
                if isinstance(item, TaskStateWrite) and names is not None and not names.names(item.node, item.task_id):
                    # the common case: no etcd connection at all (``hooks``' **Task states alike**)
                    return WriteOutcome.NOT_NAMED, 0
                if store is None:
                    etcd = self.config.etcd if self.resolver is None else await self.resolver.etcd()
                    store = await asyncio.wait_for(self._store_factory(etcd), self.config.op_timeout_s)
                if isinstance(item, TaskStateWrite) and names is None:
                    names = await self.task_names.load(store, self.config.op_timeout_s)
                    if not names.names(item.node, item.task_id):
                        return WriteOutcome.NOT_NAMED, 0
                return await write_one(store, item, self.config.op_timeout_s)
            except Exception as exc:
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if store is not None:
                    # A fresh connection after any failure: cheap, and a channel that saw a server restart can
                    # keep failing its first calls.
                    await self._close_store(store)
                    store = None
                raise

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, _Abandoned):
                return False
            return is_unreachable(exc) or failures < MAX_OTHER_ATTEMPTS

        def retrying(retry: RetryAttempt) -> None:
            self.stats.retries += 1
            # Log the first failure and then about once a minute, not every backoff step.
            if retry.number == 1 or retry.number % 12 == 0:
                log.warning(
                    "plugin.write_retry %s attempt=%d queued=%d error=%r",
                    item.describe(),
                    retry.number,
                    self._queue.qsize(),
                    self.last_error,
                )

        try:
            outcome, revision = await retry_call(
                attempt, self.config.delivery_policy(), retryable, on_retry=retrying, sleep=self._sleep
            )
        except _Abandoned:
            return store
        except Exception:
            self.stats.failed += 1
            log.error(
                "plugin.not_delivered reason=retries_exhausted %s attempts=%d error=%r",
                item.describe(),
                failures,
                self.last_error,
            )
            return store
        if outcome is WriteOutcome.NOT_NAMED:
            self.stats.not_named += 1
            log.debug("plugin.not_recorded reason=task_not_named %s", item.describe())
        elif outcome is WriteOutcome.WRITTEN:
            self.stats.delivered += 1
            self.last_written = (item.key, revision)
            if failures:
                log.info("plugin.written_after_retries %s attempts=%d", item.describe(), failures)
            log.debug("plugin.written %s revision=%d", item.describe(), revision)
        else:
            self.stats.skipped += 1
            log.debug("plugin.skipped reason=not_newer %s revision=%d", item.describe(), revision)
        return store

    async def _sleep(self, delay: float) -> None:
        """Sleep for the backoff; cut short when the writer is being stopped."""
        end = time.monotonic() + delay
        while not (self._give_up.is_set() or self._stopping.is_set()):
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))

    async def _close_store(self, store: EtcdStore) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(store.close(), 1.0)


def _after_fork_in_child() -> None:
    global _lock
    # A lock held by another thread at fork time stays held forever in the child: replace it. Writers keep their
    # configuration but get a fresh queue, thread and counters (the parent's thread does not exist here, and its
    # queued records are the parent's to deliver).
    _lock = threading.Lock()
    for writer in list(_live_writers):
        writer._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)

_lock = threading.Lock()
_writer: Writer | None = None
_config_error: str | None = None


def get_writer() -> Writer | None:
    """The process's writer, created on first use from the plugin's settings (environment, ``[coordinator]``; the
    connection is looked up later, off the caller's thread); None (logged once) if misconfigured."""
    global _writer, _config_error
    writer = _writer
    if writer is not None:
        return writer
    with _lock:
        if _writer is None and _config_error is None:
            try:
                plugin_config = local_config()
                _writer = BackgroundWriter(plugin_config.writer, resolver=ConnectionResolver(plugin_config))
            except ConfigError as exc:
                _config_error = str(exc)
                log.error("plugin.disabled error=%r detail=%r", str(exc), "run states are NOT recorded")
        return _writer


def current_writer() -> Writer | None:
    """The process's writer if one was created; never creates one (for shutdown hooks of processes that wrote
    nothing, such as every task process)."""
    return _writer


def install_writer(writer: Writer | None) -> Writer | None:
    """Replace the process's writer (check-plugin, tests); returns the previous one. None re-reads the environment."""
    global _writer, _config_error
    with _lock:
        previous, _writer, _config_error = _writer, writer, None
    return previous
