"""``make demo``: etcd, a local Airflow 3 and the coordinator's watcher on this machine, and the cascade shown live.

``python -m devtools.demo up|down|rerun|downtime`` (the Makefile's demo, down, demo-rerun and demo-downtime).
The components are found, reused or started by ``devtools.demo_stack``; the live table is ``devtools.demo_live``;
files, PIDs and ports are ``devtools.demo_state``.

Rules:
1. Each ``up`` reuses what runs (never a duplicate) and triggers 01_pipeline for a NEW partition: the current UTC
   second, or one second after the last partition used (a run id or logical date Airflow already has is skipped).
2. ``rerun`` clears 01_pipeline's run of the last partition over REST, like the Clear button; ``downtime`` stops the
   watcher, lets 01_pipeline succeed for a new partition, shows that nothing downstream starts, then starts the
   watcher and shows it catching up.
3. The stories check what they show (each dependent triggered or rerun exactly once, every DAG started only after
   its upstreams ended, nothing started while the watcher was down) and exit 1 when a check fails, so the demo
   doubles as a smoke test.
4. Every failure is one message saying what to do next; what already runs stays up for ``make down``.
"""

from __future__ import annotations

import sys

# The Makefile checks too, but `python -m devtools.demo` from an old interpreter should also explain itself.
if sys.version_info < (3, 11):  # noqa: UP036 - before any import that needs 3.11
    sys.exit(f"make demo needs Python >= 3.11, found {sys.version.split()[0]}: install a newer python3 and retry")

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.text import Text

from coordinator.core.model import canonical_partition, partition_datetime
from coordinator.errors import SpecError
from coordinator.runtime.spec_file import load_spec
from devtools.airflow_stack import AirflowStack, AirflowStackError
from devtools.demo_live import EtcdPeek, Follower, FollowError, Row, order_checks
from devtools.demo_stack import PORT_VARIABLES, DemoError, DemoStack
from devtools.demo_state import EtcdRecord, Layout

ROOT_DAG = "01_pipeline"
LAST_DAG = "07_pipeline"
#: How long the downtime story watches 02..05 not start: the watcher reacts within ~0.1 s when it runs.
DOWNTIME_OBSERVE_S = 6.0


def next_partition(used: tuple[str, ...], now: datetime) -> str:
    """The current UTC second, or one second after the latest partition used (rule 1)."""
    candidate = now.astimezone(UTC).replace(microsecond=0)
    if used:
        latest = max(partition_datetime(p) for p in used)
        candidate = max(candidate, latest + timedelta(seconds=1))
    return canonical_partition(candidate)


class Demo:
    """The three stories on top of :class:`~devtools.demo_stack.DemoStack`."""

    def __init__(self, layout: Layout, console: Console) -> None:
        self.layout = layout
        self.console = console
        self.stack = DemoStack(layout, console)
        self.graph = load_spec(layout.deps)
        self.dag_ids = sorted(n.dag_id for n in self.graph.dags)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def ensure_all(self) -> tuple[EtcdRecord, AirflowStack]:
        return self.stack.ensure_all(self.dag_ids)

    def follower(self, etcd: EtcdRecord, stack: AirflowStack, partition: str) -> Follower:
        return Follower(self.console, stack, EtcdPeek(etcd.endpoint), self.graph, partition, self.stack.keys)

    def trigger_root(self, stack: AirflowStack) -> tuple[str, datetime]:
        """Trigger 01_pipeline for a new partition; returns it and the moment just before the trigger."""
        for _ in range(5):
            partition = next_partition(self.stack.state.partitions, datetime.now(UTC))
            since = datetime.now(UTC)
            try:
                stack.trigger(ROOT_DAG, f"demo__{partition}", partition_datetime(partition).isoformat())
            except AirflowStackError as exc:
                if "409" not in str(exc):
                    raise DemoError(f"triggering {ROOT_DAG} failed: {exc}") from exc
                self.stack.save(partitions=(*self.stack.state.partitions, partition))  # taken already: use the next one
                continue
            self.stack.save(partitions=(*self.stack.state.partitions, partition))
            self.say(f"triggered {ROOT_DAG} for partition [bold]{partition}[/] (run demo__{partition})")
            return partition, since
        raise DemoError(f"could not find a free partition for {ROOT_DAG} after 5 tries")

    def up(self) -> int:
        etcd, stack = self.ensure_all()
        partition, since = self.trigger_root(stack)
        with self.follower(etcd, stack, partition) as follower:
            rows = follower.follow(
                since, lambda rows, _: _succeeded(rows, LAST_DAG), f"cascade for partition {partition}",
                f"{ROOT_DAG} was triggered",
            )  # fmt: skip
        checks = [(all(r.succeeded for r in rows), "all seven DAGs succeeded")]
        checks += [
            (r.coord.trigger_count == 1, f"{r.dag_id} was triggered once by the coordinator")
            for r in rows
            if r.dag_id != ROOT_DAG
        ]
        checks += order_checks(self.graph, rows)
        self._time("cascade", _ended(rows, LAST_DAG))
        ok = self.report(checks)
        self.summary(etcd, stack, partition)
        return 0 if ok else 1

    def rerun(self) -> int:
        etcd, stack = self.ensure_all()
        partition = self.stack.state.last_partition
        if partition is None:
            raise DemoError("no partition has been triggered yet: run `make demo` first")
        with self.follower(etcd, stack, partition) as follower:
            before = {r.dag_id: r.coord for r in follower.rows(datetime.now(UTC))}
            since = datetime.now(UTC)
            try:
                stack.clear(ROOT_DAG, f"demo__{partition}")
            except AirflowStackError as exc:
                raise DemoError(f"clearing {ROOT_DAG} for {partition} failed: {exc}") from exc
            self.say(f"cleared {ROOT_DAG}'s run for partition [bold]{partition}[/] over REST (like the Clear button)")
            rows = follower.follow(
                since, lambda rows, _: _succeeded(rows, LAST_DAG), f"cascade of reruns for partition {partition}",
                f"{ROOT_DAG} was cleared",
            )  # fmt: skip
        checks: list[tuple[bool, str]] = []
        for row in rows:
            old, new = before[row.dag_id], row.coord
            if row.dag_id == ROOT_DAG:
                continue
            once = (new.clear_number, new.trigger_count) == (_plus1(old.clear_number), _plus1(old.trigger_count))
            checks.append((once, f"{row.dag_id} reran once (attempt #{new.clear_number}, ledger x{new.trigger_count})"))
        checks += order_checks(self.graph, rows)
        self._time("cascade", _ended(rows, LAST_DAG))
        ok = self.report(checks)
        self.summary(etcd, stack, partition)
        return 0 if ok else 1

    def downtime(self) -> int:
        etcd, stack = self.ensure_all()
        self.stack.stop_watcher()
        partition, since = self.trigger_root(stack)
        with self.follower(etcd, stack, partition) as follower:
            title = f"watcher STOPPED, partition {partition}"
            label = f"{ROOT_DAG} was triggered"
            rows = follower.follow(since, lambda rows, _: _succeeded(rows, ROOT_DAG), title, label, show_table=False)
            self.say(f"{ROOT_DAG} succeeded and etcd has its record; watching {DOWNTIME_OBSERVE_S:.0f} s more ...")
            quiet_until = (datetime.now(UTC) - since).total_seconds() + DOWNTIME_OBSERVE_S
            rows = follower.follow(since, lambda _, elapsed: elapsed >= quiet_until, title, label, previous=rows)
            started = [r.dag_id for r in rows if r.current and r.dag_id != ROOT_DAG]
            checks = [(not started, "nothing downstream started while the watcher was down" + _also(started))]
            self.stack.start_watcher(etcd, stack)
            restarted = datetime.now(UTC)
            rows = follower.follow(
                since, lambda rows, _: _succeeded(rows, LAST_DAG), f"watcher running again, partition {partition}",
                label, previous=rows,
            )  # fmt: skip
        checks.append((all(r.succeeded for r in rows), "the watcher caught up: all seven DAGs succeeded"))
        checks += order_checks(self.graph, rows)
        catch_up = _ended(rows, LAST_DAG)
        self._time("catch-up", None if catch_up is None else catch_up - (restarted - since).total_seconds())
        ok = self.report(checks)
        self.summary(etcd, stack, partition)
        return 0 if ok else 1

    # ----- output -----

    def _time(self, name: str, seconds: float | None) -> None:
        if seconds is not None:
            self.stack.timings[name] = seconds

    def report(self, checks: list[tuple[bool, str]]) -> bool:
        for ok, text in checks:
            self.console.print(("[green]✓[/] " if ok else "[red]✗[/] ") + text, highlight=False)
        return all(ok for ok, _ in checks)

    def summary(self, etcd: EtcdRecord, stack: AirflowStack, partition: str) -> None:
        rel = self.stack.rel
        etcd_flag = "" if etcd.client_port == PORT_VARIABLES["DEMO_ETCD_PORT"] else f" --etcd {etcd.endpoint}"
        times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.stack.timings.items())
        watcher = self.stack.watcher_running()
        self.say(
            f"\n[bold]Airflow UI[/]   {stack.url}   user [bold]{stack.username}[/], password [bold]{stack.password}"
            f"[/]  (local demo only; kept in {rel(self.layout.airflow_home / 'admin_password')})\n"
            f"[bold]etcd[/]         {etcd.endpoint}   .venv/bin/etcdctl --endpoints {etcd.endpoint} get --prefix "
            f"{self.stack.keys.runs}\n"
            f"[bold]watcher[/]      pid {watcher.pid if watcher else '-'}, log {rel(self.layout.watcher_log)}"
            f"{f', metrics http://{watcher.http}/metrics' if watcher and watcher.http else ''}\n"
            f"[bold]logs[/]         {rel(stack.log_dir)}/ (Airflow components and tasks), {rel(self.layout.etcd_log)}\n"
            f"[bold]inspect[/]      .venv/bin/coordinator status{etcd_flag}   |   .venv/bin/coordinator why "
            f"06_pipeline -p {partition}{etcd_flag}\n"
            f"[bold]more[/]         make demo (a new partition)  |  make demo-rerun  |  make demo-downtime\n"
            f"[bold]stop[/]         make down   (keeps {rel(self.layout.root)}/; `make clean` removes it)\n"
            f"[bold]timings[/]      {times}"
        )


def _succeeded(rows: list[Row], dag_id: str) -> bool:
    return any(r.dag_id == dag_id and r.succeeded for r in rows)


def _ended(rows: list[Row], dag_id: str) -> float | None:
    return next((r.ended_s for r in rows if r.dag_id == dag_id), None)


def _plus1(value: int | None) -> int:
    return (value or 0) + 1


def _also(started: list[str]) -> str:
    return f" (but {', '.join(started)} did)" if started else ""


def main(argv: list[str] | None = None, project: Path | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "rerun", "downtime"])
    args = parser.parse_args(argv)
    layout = Layout((project or Path.cwd()).resolve())
    # Piped (CI, `| tee`): a fixed wide width instead of rich's 80 columns, so the table and paths do not wrap.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    try:
        if args.command == "down":  # works from anywhere: it only needs .demo/
            return DemoStack(layout, console).down()
        if not (layout.deps.is_file() and layout.dags.is_dir()):
            raise DemoError(f"run from the repository root (no dependencies.json or dags/ in {layout.project})")
        demo = Demo(layout, console)
        story: dict[str, Callable[[], int]] = {"up": demo.up, "rerun": demo.rerun, "downtime": demo.downtime}
        return story[args.command]()
    except (DemoError, FollowError, SpecError) as exc:
        # Text, not markup: the message may quote log lines with [brackets].
        console.print(Text("error: ", "red") + Text(str(exc)))
        if args.command != "down" and Layout(layout.project).state_file.exists():
            console.print("what is running stays up: look around, then `make down`", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("\ninterrupted: the demo keeps running in the background; `make down` stops it")
        return 130


if __name__ == "__main__":
    sys.exit(main())
