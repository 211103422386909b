"""The OpenLineage HTTP transport's server side (semantics `lineage-receiver`): what the receiver answers, and when.

A plain ASGI app (served by uvicorn, ``coordinator/lineage/service.py``). Rules:
- **Two endpoints.** ``POST /api/v1/lineage`` takes one event, ``POST /api/v1/lineage/batch`` a JSON array of them;
  JSON, optionally ``Content-Encoding: gzip``. Anything else is 404 (405 for another method on those paths).
- **Answers clients act on.** The answers are the ones OpenLineage's clients act on: 2xx only once every event of the
  request is in etcd (the Python client takes any 2xx as done); 400 for a body or event that can never be accepted (the
  clients do not retry a 4xx); 401 for no or an unknown token, 403 for an event of a namespace the token may not write
  (or of an instance this receiver does not serve); 413 past ``max_body`` bytes, compressed or not; 415 for another
  encoding; 503 (with ``Retry-After``) when etcd does not answer in time: the clients retry 5xx, and the events already
  written are duplicates on the retry (``writer.py``).
- **Judged whole.** A request is judged whole before anything is written (events, names, tokens, mapping): a 4xx writes
  nothing.
- **Nothing unquoted in logs.** Nothing from a request reaches a log line unquoted: names are logged with ``%r``, the
  token never.
- **JSON answers.** Answers are JSON: ``{"accepted": n, "recorded": n, "duplicate": n, "ignored": n}`` or ``{"error":
  reason, "detail": sentence}``; the reason is the metric's label.
- **The status answer.** ``GET /api/v1/lineage/status`` (the same token) answers what ``coordinator doctor`` checks: the
  token's name and namespaces, and for each instance this receiver writes whether its etcd user may write that
  instance's run states and run records (asked of etcd without writing), or why etcd did not say.
- **Families in order.** A batch's events are written in order within each run family (a run, and the runs naming it as
  their parent: a child's partition may come from its parent's record) and families side by side, ``BATCH_CONCURRENCY``
  at once. Every write is idempotent and guarded, so the order across families changes nothing written; a failure
  answers as **Answers clients act on** says, and whatever was written before it is a duplicate on the client's retry.
- **Ignored jobs remembered.** A run event answered ``ignored`` (no entry maps its job, or its node is not in the graph)
  is remembered (``coordinator.core.lineage.ignored``: the last 100 distinct jobs, with counts): the status answer lists
  those the mapping in force still ignores, of the namespaces the asking token may write; the metric
  ``coordinator_lineage_ignored_jobs`` counts them; a job's first time is logged once (``lineage.ignored``).
- **Counters start at 0.** Every outcome's counter and the ``unavailable`` refusals' exist at 0 from the start: a
  rate or increase (the receiver's alert rules) sees the first event, and "no fact for a day" is an increase of 0, not
  a series that is not there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coordinator.core.graph import Graph
from coordinator.core.lineage.events import Refusal, RunEvent, parse_body
from coordinator.core.lineage.facts import Outcome
from coordinator.core.lineage.ignored import IgnoredJobs
from coordinator.core.lineage.mapping import LineageJob, PartitionSource, match
from coordinator.core.model import NodeId
from coordinator.errors import CoordinatorError
from coordinator.etcd.probe import write_allowed
from coordinator.lineage.tokens import TokenEntry, Tokens
from coordinator.lineage.writer import EventWriter
from coordinator.runtime.metrics import Metrics

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SINGLE = "/api/v1/lineage"
BATCH = "/api/v1/lineage/batch"
#: Not part of the OpenLineage transport: what ``coordinator doctor`` asks (**The status answer**).
STATUS = "/api/v1/lineage/status"
#: **The status answer**: a write permission is asked of etcd about this key name under each instance (nothing is
#: written).
PROBE_NAME = "00000000-0000-0000-0000-000000000000"
#: Default bound of a request body (**Answers clients act on**): dbt-ol's largest events (a model with its schema and
#: SQL facets) are tens of kB; a batch of a few hundred of them fits.
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: **Families in order**: runs of one batch written at once; each waits for etcd's fsync, which etcd shares among
#: concurrent writes.
BATCH_CONCURRENCY = 8
#: **Answers clients act on**: the Python client's timeout is 5 s; an answer within it lets the client retry on its own
#: schedule.
DEFAULT_WRITE_TIMEOUT_S = 4.0
#: The refusal the clients retry (503): its counter starts at 0 (**Counters start at 0**).
UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(detail)
        self.answer = Answer(status, {"error": reason, "detail": detail}, headers)


@dataclass(frozen=True, slots=True)
class Routed:
    """One event with the mapping entry and node it goes to (None: ignored, and why)."""

    event: RunEvent
    entry: LineageJob | None
    node: NodeId | None
    why: str = ""


class Receiver:
    """The ASGI app (**Two endpoints**, **Answers clients act on**, **Judged whole**, **Nothing unquoted in logs** and
    **JSON answers**). ``graph`` and ``tokens`` are read per request: reloads take effect at once."""

    def __init__(
        self,
        writer: EventWriter,
        graph: Callable[[], Graph],
        tokens: Callable[[], Tokens],
        metrics: Metrics,
        *,
        instances: frozenset[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
    ) -> None:
        self.writer = writer
        self.graph = graph
        self.tokens = tokens
        self.metrics = metrics
        #: The instances this receiver writes (its etcd role's); None: every instance the mapping names.
        self.instances = instances
        self.max_body = max_body
        self.write_timeout_s = write_timeout_s
        #: **Ignored jobs remembered**.
        self.ignored = IgnoredJobs()
        metrics.lineage_ignored_source(lambda: len(self.ignored.recent(self._still_ignored)))
        # **Counters start at 0**.
        for outcome in Outcome:
            metrics.lineage_events.labels(outcome.value)
        metrics.lineage_refused.labels(UNAVAILABLE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        try:
            answer = await self._handle(scope, receive)
        except Refused as exc:
            answer = exc.answer
        if answer.status >= 300:
            self.metrics.lineage_refused.labels(answer.body["error"]).inc()
        self.metrics.lineage_seconds.observe(time.perf_counter() - started)
        payload = json.dumps(answer.body).encode() + b"\n"
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": answer.status, "headers": [*headers, *answer.headers]})
        await send({"type": "http.response.body", "body": payload})

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        path = scope.get("path", "")
        if path not in (SINGLE, BATCH, STATUS):
            raise Refused(404, "not_found", f"POST OpenLineage events to {SINGLE} or {BATCH}")
        method = "GET" if path == STATUS else "POST"
        if scope.get("method") != method:
            raise Refused(405, "method_not_allowed", f"only {method}", ((b"allow", method.encode()),))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        holder = self.tokens().holder(headers.get("authorization"))
        if holder is None:
            raise Refused(401, "unauthorized", "send Authorization: Bearer <token> with a token the receiver knows "
                          "(the OpenLineage client's api_key)", ((b"www-authenticate", b"Bearer"),))  # fmt: skip
        if path == STATUS:
            return await self._status(holder)
        raw = await self._body(headers, receive)
        try:
            body = parse_body(raw, batch=path == BATCH)
        except Refusal as exc:
            raise Refused(400, exc.reason, exc.detail) from None
        routed = self._route(body.events, holder)
        counts: Counter[str] = Counter({Outcome.IGNORED.value: body.other})
        # **Families in order**: a batch's runs are written side by side, each family (a run with its parent's) in
        # order.
        families: dict[str, list[Routed]] = {}
        now = datetime.now(UTC)
        for item in routed:
            if item.entry is None or item.node is None:
                counts[Outcome.IGNORED.value] += 1
                # **Ignored jobs remembered**.
                if self.ignored.note(item.event.namespace, item.event.job, item.why, now):
                    log.info("lineage.ignored namespace=%r job=%r why=%r", item.event.namespace, item.event.job,
                             item.why)  # fmt: skip
            else:
                families.setdefault(item.event.parent_run_id or item.event.run_id, []).append(item)
        gate = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def write_family(items: list[Routed]) -> None:
            async with gate:
                for item in items:
                    await self._write(item, holder, counts)

        try:
            async with asyncio.TaskGroup() as group:
                for items in families.values():
                    group.create_task(write_family(items))
        except* Refused as refused:
            self._count(counts)
            raise refused.exceptions[0] from None
        answer = Answer(200, {outcome.value: counts[outcome.value] for outcome in Outcome})
        self._count(counts)
        return answer

    async def _write(self, item: Routed, holder: TokenEntry, counts: Counter[str]) -> None:
        """One event into etcd (``writer.py``), counted; etcd's refusal or silence as the answer
        **Answers clients act on** says."""
        assert item.entry is not None and item.node is not None
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that meets the write's answer
            # (gh-86296); the batch's TaskGroup cancels the other families when one is refused, and such a family
            # would go on writing its events after the refusal.
            async with asyncio.timeout(self.write_timeout_s):
                written = await self.writer.write(item.event, item.entry, item.node)
        except (CoordinatorError, TimeoutError) as exc:
            if "PERMISSION_DENIED" in str(exc):  # a retry cannot fix a role: say so, and let the client stop
                log.error("lineage.etcd_denied instance=%s error=%r", item.node.instance, str(exc)[:300])
                raise Refused(403, "etcd_denied", f"this receiver's etcd user may not write instance "
                              f"{item.node.instance!r}: give it its role (`coordinator roles`) or leave the "
                              "instance out of --instance") from None  # fmt: skip
            log.warning("lineage.unavailable token=%s error=%r", holder.name, str(exc)[:300])
            raise Refused(503, UNAVAILABLE, "etcd did not answer in time; retry (events already written "
                          "are recognised as duplicates)", ((b"retry-after", b"1"),)) from None  # fmt: skip
        counts[written.writes.outcome.value] += 1
        if written.writes.outcome is Outcome.ACCEPTED and written.writes.run_state is not None:
            log.info("lineage.run_state node=%s partition=%s state=%s run_id=%s job=%r revision=%d",
                     item.node.qualified, written.writes.partition, written.writes.run_state.state.value,
                     item.event.run_id, f"{item.event.namespace}/{item.event.job}", written.revision)  # fmt: skip

    async def _status(self, holder: TokenEntry) -> Answer:
        """**The status answer**."""
        jobs = self.graph().lineage_jobs
        served = sorted(self.instances if self.instances is not None else {entry.instance for entry in jobs})
        keys, store = self.writer.keys, self.writer.store
        roles: dict[str, str] = {}
        for instance in served:
            probes = (keys.run_key(NodeId(instance, "probe"), "1970-01-01T00:00:00Z"), keys.lineage_key(instance,
                      PROBE_NAME))  # fmt: skip
            try:
                allowed = [await write_allowed(store, key, self.write_timeout_s) for key in probes]
            except CoordinatorError as exc:
                roles[instance] = f"etcd did not answer: {str(exc)[:200]}"
                continue
            roles[instance] = "writable" if all(allowed) else "denied"
        ignored = [
            {"namespace": job.namespace, "job": job.job, "count": job.count, "why": job.why,
             "first_seen": job.first_seen.isoformat(), "last_seen": job.last_seen.isoformat()}
            for job in self.ignored.recent(self._still_ignored)
            # **Ignored jobs remembered**: a token sees the names of its own namespaces only.
            if holder.allows(job.namespace)
        ]  # fmt: skip
        body = {"token": holder.name, "namespaces": list(holder.namespaces), "mappings": len(jobs), "instances": roles,
                "ignored": ignored}  # fmt: skip
        return Answer(200, body)

    def _still_ignored(self, namespace: str, job: str) -> bool:
        """**Ignored jobs remembered**: whether the mapping in force now would ignore this job's events (the file may
        have been fixed)."""
        graph = self.graph()
        entry = match(graph.lineage_jobs, namespace, job)
        if entry is None:
            return True
        node = entry.node_for(job)
        return node is not None and node not in graph.dags

    def _count(self, counts: Counter[str]) -> None:
        for outcome, n in counts.items():
            if n:
                self.metrics.lineage_events.labels(outcome).inc(n)
        counts.clear()

    def _route(self, events: tuple[RunEvent, ...], holder: TokenEntry) -> list[Routed]:
        """**Judged whole**: every event's namespace allowed, mapping and node settled, before any write."""
        graph = self.graph()
        jobs = graph.lineage_jobs
        routed: list[Routed] = []
        for index, event in enumerate(events):
            where = f"event [{index}] ({event.namespace!r}/{event.job!r})"
            if not holder.allows(event.namespace):
                raise Refused(403, "forbidden", f"{where}: token {holder.name!r} may not write namespace "
                              f"{event.namespace!r} (it may write {', '.join(holder.namespaces)})")  # fmt: skip
            entry = match(jobs, event.namespace, event.job)
            if entry is None:
                routed.append(Routed(event, None, None, 'no entry of "openlineage" matches it'))
                continue
            node = entry.node_for(event.job)
            if node is not None and node not in graph.dags:
                # ``core/lineage/mapping.py``'s **The node**: nothing waits for it, nothing written.
                why = f"{entry.label} maps it to {node}, which no DAG of the graph declares or waits for"
                routed.append(Routed(event, None, None, why))
                continue
            if node is None:
                raise Refused(400, "unmapped_name", f"{where}: {entry.label} takes the dag id from the job name, "
                              "and this one is not a valid dag id; give the entry a \"dag\"")  # fmt: skip
            if self.instances is not None and node.instance not in self.instances:
                raise Refused(403, "forbidden", f"{where}: maps to instance {node.instance!r}, which this receiver "
                              f"does not write (it writes {', '.join(sorted(self.instances))})")  # fmt: skip
            if entry.partition is PartitionSource.NOMINAL and event.nominal_start is None:
                raise Refused(400, "no_partition", f"{where}: {entry.label} says \"partition\": \"nominal\" and the "
                              "event has no nominalTime facet")  # fmt: skip
            routed.append(Routed(event, entry, node))
        return routed

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        """**Answers clients act on**: the body, decompressed, within ``max_body`` (a bomb stops at the bound, not in
        memory)."""
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise Refused(415, "unsupported_encoding", f"Content-Encoding {encoding[:40]!r}: send identity or gzip")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise Refused(413, "too_large", f"the body is {length} bytes; this receiver takes at most {self.max_body}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refused(400, "invalid_json", "the client went away before the body ended")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise Refused(413, "too_large", f"the body passed {self.max_body} bytes, the receiver's bound")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        if encoding == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            try:
                raw = inflate.decompress(raw, self.max_body + 1)
            except zlib.error as exc:
                raise Refused(400, "invalid_json", f"the gzip body does not decompress: {exc}") from None
            if len(raw) > self.max_body or inflate.unconsumed_tail:
                raise Refused(413, "too_large", f"the body decompresses past {self.max_body} bytes")
        return raw


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
