"""The live view of a cascade for ``make demo``: one row per DAG of the example graph, updated as runs progress.

Rules:
1. Two sources, read-only: Airflow's REST API says what Airflow does (queued, running, success, failed, with its
   timestamps; the only place ``queued`` is visible), etcd says what the coordinator knows (the run record the plugin
   wrote, with its attempt number, and the trigger ledger). Both are polled; nothing here writes. Airflow is read
   with the coordinator's own client (:class:`~coordinator.airflow.client.AirflowClient`): the demo sees runs exactly
   as the watcher does, and there is one Airflow client and one run parser to keep right.
2. Building rows and rendering them are pure functions of those readings (tested without Airflow); only
   :class:`Follower` does I/O, and every call it makes has a timeout.
3. A run belongs to the story being shown only when it was queued at or after the story began (``since``): in the
   rerun story the previous attempts stay visible, marked ``earlier``, until the coordinator clears them.
4. On a terminal the table is redrawn in place (rich Live); otherwise (CI logs, pipes) one line per change is printed,
   so the same run reads well in both.
5. etcd is read through its JSON gateway with the standard library: the demo's own single local server, no auth; the
   coordinator's real etcd access stays in ``coordinator.etcd``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.table import Table

from coordinator.airflow.client import AirflowClient, DagRunInfo
from coordinator.core.graph import Graph
from coordinator.core.model import (
    DEFAULT_INSTANCE,
    KeyLayout,
    NodeId,
    parse_run_record,
    parse_trigger_record,
    partition_datetime,
)
from coordinator.errors import AirflowError
from coordinator.runtime.settings import InstanceSettings
from devtools.airflow_stack import AirflowStack

#: Poll twice a second: a one-task run takes ~2 s here, so every state is seen, and the load is negligible.
POLL_S = 0.5
_STYLE = {"queued": "yellow", "running": "cyan", "success": "green", "failed": "bold red", "waiting": "dim"}


class FollowError(RuntimeError):
    """A run failed, or the cascade did not finish in time; the message says where to look."""


# ----- readings -----


@dataclass(frozen=True, slots=True)
class CoordSeen:
    """What etcd holds for one DAG and partition: the plugin's run record and the coordinator's ledger entry."""

    record_state: str | None = None
    clear_number: int | None = None
    trigger_action: str | None = None
    trigger_status: str | None = None
    trigger_count: int | None = None


def parse_coord(run_raw: bytes | None, trigger_raw: bytes | None) -> CoordSeen:
    """A CoordSeen from the raw values of the run key and the ledger key (either may be missing or invalid)."""
    record = parse_run_record(run_raw)[0] if run_raw else None
    ledger = parse_trigger_record(trigger_raw)[0] if trigger_raw else None
    return CoordSeen(
        record_state=str(record.state) if record else None,
        clear_number=record.clear_number if record else None,
        trigger_action=str(ledger.action) if ledger else None,
        trigger_status=str(ledger.status) if ledger else None,
        trigger_count=ledger.trigger_count if ledger else None,
    )


# ----- rows (pure) -----


@dataclass(frozen=True, slots=True)
class Row:
    dag_id: str
    waits_for: str
    state: str  # Airflow's state of the current attempt, "waiting" (none yet) or "<state> earlier" (rule 3)
    current: bool
    queued_s: float | None
    started_s: float | None
    ended_s: float | None
    run_id: str
    coord: CoordSeen

    @property
    def took_s(self) -> float | None:
        if self.started_s is None or self.ended_s is None:
            return None
        return self.ended_s - self.started_s

    @property
    def succeeded(self) -> bool:
        return self.current and self.state == "success"


def dag_order(graph: Graph) -> list[NodeId]:
    """Topological order (roots first), ties by name: the order the cascade runs in."""
    depth: dict[NodeId, int] = {}

    def level(node: NodeId) -> int:
        if node not in depth:
            ups = graph.dags[node].upstreams
            depth[node] = 1 + max((level(u) for u in ups), default=-1)
        return depth[node]

    return sorted(graph.dags, key=lambda n: (level(n), n.dag_id))


def build_rows(
    graph: Graph, runs: Mapping[str, DagRunInfo], coord: Mapping[str, CoordSeen], since: datetime
) -> list[Row]:
    """One row per DAG of ``graph`` (instance ``default``), timestamps in seconds after ``since``."""

    def rel(value: datetime | None) -> float | None:
        return None if value is None else (value - since).total_seconds()

    rows = []
    for node in dag_order(graph):
        if node.instance != DEFAULT_INSTANCE:
            continue  # the demo runs one Airflow
        run = runs.get(node.dag_id)
        current = run is not None and run.queued_at is not None and run.queued_at >= since
        if run is None:
            state = "waiting"
        elif current:
            state = run.state
        else:
            state = f"{run.state} earlier"
        rows.append(
            Row(
                dag_id=node.dag_id,
                waits_for=", ".join(u.dag_id for u in graph.dags[node].upstreams) or "(root)",
                state=state,
                current=current,
                queued_s=rel(run.queued_at) if current and run else None,
                started_s=rel(run.start_date) if current and run else None,
                ended_s=rel(run.end_date) if current and run and run.state in ("success", "failed") else None,
                run_id=run.run_id if run else "",
                coord=coord.get(node.dag_id, CoordSeen()),
            )
        )
    return rows


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _etcd_cell(coord: CoordSeen) -> str:
    if coord.record_state is None:
        return "-"
    return f"{coord.record_state} #{coord.clear_number}"


def _ledger_cell(coord: CoordSeen) -> str:
    if coord.trigger_action is None:
        return "-"
    return f"{coord.trigger_action} x{coord.trigger_count} {coord.trigger_status}"


def render(rows: Sequence[Row], title: str, caption: str = "") -> Table:
    """The live table (about 110 columns). Times are seconds after the story began."""
    table = Table(title=title, caption=caption or None, title_justify="left", caption_justify="left")
    table.add_column("DAG", no_wrap=True)
    table.add_column("waits for")
    table.add_column("Airflow", no_wrap=True)
    for name in ("queued", "started", "ended", "took"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("etcd record", no_wrap=True)
    table.add_column("coordinator ledger", no_wrap=True)
    for row in rows:
        style = _STYLE.get(row.state, "dim")
        table.add_row(
            row.dag_id,
            # "02 03 04 05" rather than four full ids: keeps the table within a normal terminal's width.
            " ".join(_short(u) for u in row.waits_for.split(", ")),
            f"[{style}]{row.state}[/]",
            _secs(row.queued_s),
            _secs(row.started_s),
            _secs(row.ended_s),
            _secs(row.took_s),
            _etcd_cell(row.coord),
            _ledger_cell(row.coord),
        )
    return table


def _short(dag_id: str) -> str:
    head = dag_id.split("_", 1)[0]
    return head if head.isdigit() else dag_id


def changes(before: Sequence[Row], after: Sequence[Row], elapsed_s: float) -> list[str]:
    """One line per DAG whose state or etcd/ledger reading changed (the non-terminal rendering, rule 4)."""
    old = {row.dag_id: row for row in before}
    lines = []
    for row in after:
        prev = old.get(row.dag_id)
        if prev is not None and (prev.state, prev.coord) == (row.state, row.coord):
            continue
        lines.append(
            f"  +{elapsed_s:5.1f} s  {row.dag_id:<12} {row.state:<16} etcd: {_etcd_cell(row.coord):<12} "
            f"ledger: {_ledger_cell(row.coord)}"
        )
    return lines


def failed_rows(rows: Sequence[Row]) -> list[Row]:
    return [row for row in rows if row.current and row.state == "failed"]


def order_checks(graph: Graph, rows: Sequence[Row]) -> list[tuple[bool, str]]:
    """For every non-root DAG: its current attempt started only after each upstream's current attempt ended."""
    by_dag = {row.dag_id: row for row in rows}
    checks = []
    for row in rows:
        node = NodeId(DEFAULT_INSTANCE, row.dag_id)
        ups = [by_dag[u.dag_id] for u in graph.dags[node].upstreams if u.dag_id in by_dag]
        if not ups:
            continue
        ends = [u.ended_s for u in ups]
        ok = row.started_s is not None and all(e is not None and e <= row.started_s for e in ends)
        names = ", ".join(u.dag_id for u in ups)
        checks.append((ok, f"{row.dag_id} started after {names} ended"))
    return checks


# ----- I/O -----


class EtcdPeek:
    """Read-only access to the demo's etcd through its JSON gateway (rule 5)."""

    def __init__(self, endpoint: str, timeout_s: float = 2.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        request = urllib.request.Request(  # noqa: S310 - the demo's own http://127.0.0.1 endpoint
            self.endpoint + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                parsed = json.loads(response.read() or b"{}")
        except (OSError, ValueError):  # refused, reset, timeout, HTTP error, bad JSON: "no answer"
            return None
        return parsed if isinstance(parsed, dict) else None

    def healthy(self) -> bool:
        return self._post("/v3/kv/range", {"key": _b64("\0")}) is not None

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes] | None:
        """The values of ``keys`` at one revision (one transaction); None when etcd did not answer."""
        ops = [{"request_range": {"key": _b64(key)}} for key in keys]
        answer = self._post("/v3/kv/txn", {"success": ops})
        if answer is None:
            return None
        values: dict[str, bytes] = {}
        for response in answer.get("responses", []):
            for kv in response.get("response_range", {}).get("kvs", []):
                values[base64.b64decode(kv["key"]).decode()] = base64.b64decode(kv.get("value", ""))
        return values

    def get(self, key: str) -> bytes | None:
        values = self.get_many([key])
        return None if values is None else values.get(key)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def airflow_client(stack: AirflowStack, timeout_s: float = 5.0) -> AirflowClient:
    """The coordinator's own Airflow client, logged in as the stack's admin (the demo reads what the watcher reads)."""
    settings = InstanceSettings(url=stack.url, username=stack.username, password=SecretStr(stack.password), api="v2")
    return AirflowClient(settings, timeout_s=timeout_s, name=stack.instance)


class Follower:
    """Polls Airflow and etcd for one partition and shows the cascade until a condition holds (rules 1, 2, 4).

    Airflow is read with :class:`~coordinator.airflow.client.AirflowClient`, which is async: the follower runs it on a
    private event loop of its own (the live view itself is a plain loop). Use as a context manager, or call
    :meth:`close`, so the client's connections and the loop are closed.
    """

    def __init__(
        self,
        console: Console,
        stack: AirflowStack,
        etcd: EtcdPeek,
        graph: Graph,
        partition: str,
        keys: KeyLayout,
        client: AirflowClient | None = None,
    ) -> None:
        self.console = console
        self.stack = stack
        self.etcd = etcd
        self.graph = graph
        self.partition = partition
        self.keys = keys
        self.nodes = [n for n in dag_order(graph) if n.instance == DEFAULT_INSTANCE]
        self._runs: dict[str, DagRunInfo] = {}
        self._coord: dict[str, CoordSeen] = {}
        self._loop = asyncio.Runner()
        self._client = client if client is not None else airflow_client(stack)

    def close(self) -> None:
        try:
            self._loop.run(self._client.aclose())
        finally:
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read_runs(self) -> dict[str, DagRunInfo]:
        """Airflow's runs for the partition; the last good reading when the API does not answer in time."""
        try:
            runs = self._loop.run(self._client.runs_at("~", partition_datetime(self.partition)))
        except AirflowError:
            # A busy api-server (the first minutes after start) sometimes misses a poll: showing "waiting" for
            # a run that exists would be wrong, so a failed poll keeps the previous reading instead.
            return self._runs
        # One logical date: at most one run per DAG.
        self._runs = {run.dag_id: run for run in runs}
        return self._runs

    def read_coord(self) -> dict[str, CoordSeen]:
        """The plugin's records and the ledger for the partition; the last good reading when etcd did not answer."""
        keys = []
        for node in self.nodes:
            keys += [self.keys.run_key(node, self.partition), self.keys.trigger_key(node, self.partition)]
        values = self.etcd.get_many(keys)
        if values is not None:
            self._coord = {
                node.dag_id: parse_coord(
                    values.get(self.keys.run_key(node, self.partition)),
                    values.get(self.keys.trigger_key(node, self.partition)),
                )
                for node in self.nodes
            }
        return self._coord

    def rows(self, since: datetime) -> list[Row]:
        return build_rows(self.graph, self.read_runs(), self.read_coord(), since)

    def follow(
        self,
        since: datetime,
        until: Callable[[list[Row], float], bool],
        title: str,
        since_label: str,
        timeout_s: float = 300.0,
        previous: Sequence[Row] = (),
        show_table: bool = True,
    ) -> list[Row]:
        """Show the rows until ``until(rows, elapsed_s)`` holds; raise FollowError on a failed run or a timeout.

        ``previous``: rows already shown (by an earlier phase of the same story), so that without a terminal only
        changes are printed; ``show_table``: print the final table without a terminal (a live table stays anyway).
        """
        begin = time.monotonic()
        rows: list[Row] = list(previous)

        def step() -> tuple[list[Row], bool]:
            new = self.rows(since)
            elapsed = (datetime.now(UTC) - since).total_seconds()
            if bad := failed_rows(new):
                raise FollowError(
                    f"{', '.join(r.dag_id for r in bad)} failed for {self.partition}; task logs: "
                    f"{self.stack.log_dir}/dag_id={bad[0].dag_id}/"
                )
            if time.monotonic() - begin > timeout_s:
                waiting = [r.dag_id + " " + r.state for r in new if not r.succeeded]
                raise FollowError(
                    f"not done after {timeout_s:.0f} s ({'; '.join(waiting)}). Ask the coordinator why: "
                    f".venv/bin/coordinator why {waiting[0].split()[0] if waiting else '07_pipeline'} "
                    f"-p {self.partition}"
                )
            return new, until(new, elapsed)

        def caption() -> str:
            return f"times in seconds since {since_label}; now +{(datetime.now(UTC) - since).total_seconds():.1f} s"

        if self.console.is_terminal:
            with Live(render([], title), console=self.console, refresh_per_second=8) as live:
                while True:
                    rows, done = step()
                    live.update(render(rows, title, caption()))
                    if done:
                        return rows
                    time.sleep(POLL_S)
        self.console.print(title)
        while True:
            new, done = step()
            for line in changes(rows, new, (datetime.now(UTC) - since).total_seconds()):
                self.console.print(line, markup=False, highlight=False)
            rows = new
            if done:
                if show_table:
                    self.console.print(render(rows, title, caption()))
                return rows
            time.sleep(POLL_S)
