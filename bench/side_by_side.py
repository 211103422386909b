"""Side by side on one real Airflow 3.3: the same producer -> consumer pair through five cross-DAG mechanisms.

(a) ``coord``: the coordinator (dependencies.json edge; plugin listener -> etcd -> ``coordinator watch`` -> REST),
(b) ``task``: the coordinator with a task-level edge on the producer's final task (``{"dag": ..., "task": "work"}``):
    the plugin records the task's success from the task's own process, before the scheduler marks the run successful,
(c) ``asset``: Airflow's asset schedule (producer task outlet, consumer ``schedule=[asset]``),
(d) ``defer``: a deferrable ``ExternalTaskSensor`` (needs the triggerer), poking every ``--poke-interval`` s,
(e) ``classic``: the classic ``ExternalTaskSensor`` (``--classic-mode`` reschedule or poke), same interval,
(f) ``permit``: a scheduled dependent (``"runs": "scheduled"``): its own run (here triggered with the producer's, as
    its timetable would have made it) waits in ``WaitForPermitOperator``, deferred in the triggerer, for the
    coordinator's permit.

Set-up (all on 127.0.0.1, free ports): a real etcd, one Airflow 3.3 from ``devtools.airflow_stack`` (api-server,
scheduler, dag-processor, triggerer; SQLite + LocalExecutor, parallelism 4) with the coordinator plugin, the DAGs of
``bench/side_by_side_dags/``, and a real ``coordinator watch`` subprocess. Everything is stopped by PID at the end,
also on failure or Ctrl-C.

Rounds: ``--rounds`` N (default 8). Round i gives every pair its own logical date (2001-01-01 + i days) and runs the
pairs one after the other, each to the consumer's success, in an order rotated every round (interleaved, so slow
drift of the machine spreads over all mechanisms), with a random 0.5-1.5 s pause between pairs. The sensor pairs'
consumer run is triggered together with the producer run (same logical date); the coordinator's (both) and the asset
consumers are created by the mechanism. Nothing else runs in this Airflow meanwhile: the scheduler is idle between
events.

Measured from Airflow's own timestamps (REST, one clock): producer's last task (``work``) end -> consumer run
queued (``queued_at``; not meaningful for the sensors, whose run was queued before), and -> the consumer's first
task after the mechanism (``work``) start. Also, to see where the time goes: producer run end (the scheduler marks it
success; the plugin's listener fires then), consumer run ``run_after`` and ``start_date``. Median, min-max and p90 per
mechanism; a markdown table on stdout, raw numbers with ``--json``. With both ``task`` and ``asset`` measured, the
ratio of their medians (the target: task-level <= 0.8x assets) is printed too. The scheduler process's CPU is
reported too, while measuring and for ``--idle-seconds`` with nothing to do (what ``scheduler_idle_sleep_time``
costs).

Usage: ``.venv/bin/python bench/side_by_side.py [--rounds 8] [--poke-interval 2] [--classic-mode reschedule]
[--mechanisms coord,task,asset,defer,classic] [--airflow-env NAME=VALUE ...] [--idle-seconds 15] [--json out.json]
[--md out.md] [--keep]``. ``--airflow-env`` sets Airflow options for every component, e.g.
``AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.2``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _harness as h

from devtools.airflow_stack import AirflowStack, AirflowStackError, AirflowUnreachable
from devtools.etcd_server import EtcdServer
from devtools.procs import stop_child

DAGS_DIR = Path(__file__).resolve().parent / "side_by_side_dags"
MECHANISMS = ("coord", "task", "asset", "defer", "classic", "permit")
#: The mechanisms whose consumer run exists before the producer runs (triggered with it, same logical date).
WAITING = ("defer", "classic", "permit")
#: The mechanisms whose consumer run is created by the mechanism itself (the sensors' is triggered with the producer).
CREATED = ("coord", "task", "asset")
COORDINATOR = ("coord", "task")
LABELS = {
    "coord": "coordinator",
    "task": "coordinator, task-level",
    "asset": "asset schedule",
    "defer": "deferrable ExternalTaskSensor",
    "classic": "classic ExternalTaskSensor",
    "permit": "coordinator, scheduled dependent (permit)",
}
FIRST_DATE = datetime(2001, 1, 1, tzinfo=UTC)
PAIR_TIMEOUT_S = 180.0
#: The target: a dependent on the producer's final task starts at most this fraction of the asset schedule's median.
TASK_TARGET = 0.8
#: What the watcher of the benchmark adopts, per coordinator mechanism: a run-level edge, a task-level edge (the
#: producer's only task).
EDGES: dict[str, dict[str, Any]] = {
    "coord": {"sbs_coord_consumer": {"upstreams": "sbs_coord_producer"}},
    "task": {"sbs_task_consumer": {"upstreams": [{"dag": "sbs_task_producer", "task": "work"}]}},
    "permit": {"sbs_permit_consumer": {"upstreams": "sbs_permit_producer", "runs": "scheduled"}},
}


def dag_ids() -> list[str]:
    return [f"sbs_{m}_{role}" for m in MECHANISMS for role in ("producer", "consumer")]


def parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


# ------------------------------------------------------------------------------------------------ the watcher


@dataclass
class Watcher:
    """``coordinator watch`` as a subprocess (its own session), logging to ``log_path``."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, stack: AirflowStack, etcd: str, deps: Path, work: Path, extra: Mapping[str, str]) -> Watcher:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
        env.update(
            COORDINATOR_ETCD_ENDPOINTS=etcd,
            COORDINATOR_PREFIX=stack.prefix,
            COORDINATOR_DEPS=str(deps),
            COORDINATOR_AIRFLOW_URL=stack.url,
            COORDINATOR_AIRFLOW_USERNAME=stack.username,
            COORDINATOR_AIRFLOW_PASSWORD=stack.password,
            COORDINATOR_WATCHER_ID="side-by-side",
            # Metrics listener (when the build has one): off, its default port may be taken by another process.
            COORDINATOR_HTTP="off",
        )
        env.update(extra)
        log_path = work / "watcher.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator.cli", "watch"],
                env=env,
                cwd=work,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, log_path)

    def wait_adopted(self, timeout_s: float = 60.0) -> None:
        """Until the watcher leads and adopted the graph: a definition only applies to later upstream successes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coordinator watch exited with {self.proc.returncode}; see {self.log_path}")
            if "graph.adopted" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"coordinator watch did not adopt the graph within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        stop_child(self.proc, timeout_s=15.0, what="coordinator watch")


# ------------------------------------------------------------------------------------------------ REST reads


class Rest:
    """The few reads the benchmark needs, retried while a loaded API server does not answer."""

    def __init__(self, stack: AirflowStack) -> None:
        self.stack = stack

    def get(self, path: str) -> dict[str, Any]:
        for attempt in range(5):
            try:
                status, body = self.stack.request("GET", path, timeout_s=20.0)
            except AirflowUnreachable:
                if attempt == 4:
                    raise
                time.sleep(1.0)
                continue
            if status != 200:
                raise AirflowStackError(f"GET {path} -> HTTP {status}: {body}")
            return dict(body)
        raise AssertionError("unreachable")  # pragma: no cover

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=-run_after")
        return list(body.get("dag_runs", []))

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}")

    def wait_done(self, dag_id: str, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + PAIR_TIMEOUT_S
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] == "success":
                return run
            if run["state"] == "failed":
                raise RuntimeError(f"{dag_id} {run_id} failed; see {self.stack.log_dir}")
            time.sleep(0.3)
        raise RuntimeError(f"{dag_id} {run_id} not done within {PAIR_TIMEOUT_S:.0f} s")

    def wait_new_run(self, dag_id: str, known: set[str], logical_date: str | None) -> str:
        """The run id of the consumer run the mechanism creates (a new one; with ``logical_date`` when given)."""
        deadline = time.monotonic() + PAIR_TIMEOUT_S
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                fresh = run["dag_run_id"] not in known
                if fresh and (logical_date is None or parse_time(run.get("logical_date")) == parse_time(logical_date)):
                    return str(run["dag_run_id"])
            time.sleep(0.3)
        raise RuntimeError(f"no new run of {dag_id} within {PAIR_TIMEOUT_S:.0f} s")


# ------------------------------------------------------------------------------------------------ one pair


@dataclass(frozen=True)
class Sample:
    """One pair's timestamps (ISO, Airflow's clock) and the derived seconds."""

    mechanism: str
    round: int
    logical_date: str
    producer_task_end: str
    producer_run_end: str
    consumer_run_id: str
    consumer_queued: str
    consumer_run_after: str
    consumer_run_start: str
    consumer_task_start: str
    to_queued_s: float | None  # None for the sensors: their consumer run was queued before the producer ran
    to_first_task_s: float
    producer_run_end_s: float  # producer task end -> producer run end (success decided by the scheduler)
    queued_to_start_s: float  # consumer run queued -> running (the scheduler picks it up)
    start_to_task_s: float  # consumer run running -> its work task starts (scheduling + executor + worker)


def run_pair(rest: Rest, mechanism: str, rnd: int) -> Sample:
    stack = rest.stack
    producer, consumer = f"sbs_{mechanism}_producer", f"sbs_{mechanism}_consumer"
    logical = (FIRST_DATE + timedelta(days=rnd)).isoformat()
    run_id = f"sbs_r{rnd:02d}"
    known = {str(r["dag_run_id"]) for r in rest.runs(consumer)}
    if mechanism in WAITING:
        stack.trigger(consumer, run_id, logical)  # the sensor or the wait waits for the producer's run of that date
    stack.trigger(producer, run_id, logical)
    if mechanism in COORDINATOR:
        consumer_run = rest.wait_new_run(consumer, known, logical)
    elif mechanism == "asset":
        consumer_run = rest.wait_new_run(consumer, known, None)
    else:
        consumer_run = run_id
    p_run = rest.wait_done(producer, run_id)
    c_run = rest.wait_done(consumer, consumer_run)
    p_task = rest.task(producer, run_id, "work")
    c_task = rest.task(consumer, consumer_run, "work")
    p_end, c_start = parse_time(p_task["end_date"]), parse_time(c_task["start_date"])
    p_run_end = parse_time(p_run["end_date"])
    queued, started = parse_time(c_run["queued_at"]), parse_time(c_run["start_date"])
    to_first = seconds(c_start, p_end)
    assert to_first is not None and p_end is not None and p_run_end is not None and queued and started
    return Sample(
        mechanism=mechanism,
        round=rnd,
        logical_date=logical,
        producer_task_end=p_task["end_date"],
        producer_run_end=p_run["end_date"],
        consumer_run_id=consumer_run,
        consumer_queued=c_run["queued_at"],
        consumer_run_after=c_run.get("run_after") or "",
        consumer_run_start=c_run["start_date"],
        consumer_task_start=c_task["start_date"],
        to_queued_s=seconds(queued, p_end) if mechanism in CREATED else None,
        to_first_task_s=to_first,
        producer_run_end_s=(p_run_end - p_end).total_seconds(),
        queued_to_start_s=(started - queued).total_seconds(),
        start_to_task_s=(c_start - started).total_seconds() if c_start else float("nan"),
    )


# ------------------------------------------------------------------------------------------------ numbers


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": h.percentile(values, 50),
        "min": min(values),
        "max": max(values),
        "p90": h.percentile(values, 90),
        "n": len(values),
    }


def cell(stats: dict[str, float] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['median']:.2f} ({stats['min']:.2f}-{stats['max']:.2f}; p90 {stats['p90']:.2f})"


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m in MECHANISMS:
        mine = [s for s in samples if s.mechanism == m]
        if not mine:
            continue
        fields: dict[str, list[float]] = {
            "to_first_task_s": [s.to_first_task_s for s in mine],
            "producer_run_end_s": [s.producer_run_end_s for s in mine],
            "queued_to_start_s": [s.queued_to_start_s for s in mine],
            "start_to_task_s": [s.start_to_task_s for s in mine],
        }
        if m in CREATED:
            fields["to_queued_s"] = [s.to_queued_s for s in mine if s.to_queued_s is not None]
        if m == "coord":  # the coordinator's own share: producer run success -> consumer run queued
            fields["own_share_s"] = [(_dt(s.consumer_queued) - _dt(s.producer_run_end)).total_seconds() for s in mine]
        if m == "task":  # its own share: producer TASK end (when the plugin records it) -> consumer run queued
            fields["own_share_s"] = [s.to_queued_s for s in mine if s.to_queued_s is not None]
        out[m] = {name: spread(values) for name, values in fields.items()}
    return out


def _dt(value: str) -> datetime:
    parsed = parse_time(value)
    assert parsed is not None
    return parsed


def markdown(summary: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace, info: dict[str, Any]) -> str:
    lines = [
        f"#### Side by side on one Airflow {info['airflow']} ({args.rounds} interleaved rounds, {h.now_utc()})",
        "",
        f"Machine: {h.machine_line(info['machine'])}; "
        f"machine busy while measuring (this Airflow included): {info['busy_cores']:.2f} cores of "
        f"{info['machine']['cores']} (shared with other work); scheduler process: {info['scheduler_cores']:.2f} cores "
        f"while measuring, {info['scheduler_idle_cores']:.3f} idle ({args.idle_seconds:g} s after the rounds).",
        f"Command: `{h.command_line()}`",
        f"Airflow options beyond the launcher's: {', '.join(args.airflow_env) or 'none'}; "
        f"sensors poke every {args.poke_interval:g} s (classic in {args.classic_mode} mode).",
        "",
        "Seconds, median (min-max; p90), from the producer's last task end (Airflow's timestamps):",
        "",
        "| mechanism | -> consumer run queued | -> consumer's first task start |",
        "|---|---|---|",
    ]
    for m, stats in summary.items():
        lines.append(f"| {LABELS[m]} | {cell(stats.get('to_queued_s'))} | {cell(stats['to_first_task_s'])} |")
    lines += [
        "",
        "Where the time goes (medians, s): producer task end -> producer run success | consumer run queued -> "
        "running | running -> first task start:",
        "",
    ]
    for m, stats in summary.items():
        lines.append(
            f"- {LABELS[m]}: {stats['producer_run_end_s']['median']:.2f} | "
            f"{stats['queued_to_start_s']['median']:.2f} | {stats['start_to_task_s']['median']:.2f}"
        )
    if "coord" in summary:
        lines.append(
            "- coordinator's own share (producer run success -> consumer run queued): "
            + cell(summary["coord"]["own_share_s"])
        )
    if "task" in summary:
        lines.append(
            "- task-level coordinator's own share (producer task end -> consumer run queued): "
            + cell(summary["task"]["own_share_s"])
        )
    if (ratio := task_to_asset(summary)) is not None:
        verdict = "met" if ratio <= TASK_TARGET else "NOT met"
        lines += [
            "",
            f"Task-level / assets, medians to the consumer's first task: {ratio:.2f} "
            f"(target <= {TASK_TARGET:g}: **{verdict}**).",
        ]
    return "\n".join(lines) + "\n"


def task_to_asset(summary: dict[str, dict[str, dict[str, float]]]) -> float | None:
    """Median to the first task of the task-level coordinator over the asset schedule's (None unless both ran)."""
    if "task" not in summary or "asset" not in summary:
        return None
    return summary["task"]["to_first_task_s"]["median"] / summary["asset"]["to_first_task_s"]["median"]


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--poke-interval", type=float, default=2.0)
    p.add_argument("--classic-mode", choices=("reschedule", "poke"), default="reschedule")
    p.add_argument(
        "--mechanisms", default=",".join(MECHANISMS), help="comma-separated subset of " + ",".join(MECHANISMS)
    )
    p.add_argument("--airflow-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--watcher-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--idle-seconds", type=float, default=15.0, help="after the rounds: scheduler CPU while idle")
    p.add_argument("--json")
    p.add_argument("--md")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, Airflow home)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.idle_seconds <= 0:
        p.error(f"--idle-seconds must be positive, got {args.idle_seconds}")
    if args.poke_interval <= 0:
        p.error(f"--poke-interval must be positive, got {args.poke_interval}")
    args.mechanism_list = [m.strip() for m in args.mechanisms.split(",") if m.strip()]
    if bad := sorted(set(args.mechanism_list) - set(MECHANISMS)):
        p.error(f"--mechanisms: unknown {', '.join(bad)} (known: {', '.join(MECHANISMS)})")
    for flag, pairs in (("--airflow-env", args.airflow_env), ("--watcher-env", args.watcher_env)):
        for pair in pairs:
            if "=" not in pair or not pair.split("=", 1)[0]:
                p.error(f"{flag} wants NAME=VALUE, got {pair!r}")
    return args


def env_pairs(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def scheduler_pid(stack: AirflowStack) -> int:
    """The scheduler's main process (its executor's workers are other processes), from the launcher's state file."""
    state = json.loads((stack.home / "stack.json").read_text(encoding="utf-8"))
    return int(state["pids"]["scheduler"])


def measure(rest: Rest, args: argparse.Namespace, rng: random.Random) -> None:
    """The rounds, then the table (stdout) and the raw numbers (``--json``)."""
    samples: list[Sample] = []
    scheduler = scheduler_pid(rest.stack)
    meter = h.CpuMeter({"scheduler": scheduler})
    mechanisms: list[str] = args.mechanism_list
    for rnd in range(args.rounds):
        shift = rnd % len(mechanisms)
        for mechanism in mechanisms[shift:] + mechanisms[:shift]:
            time.sleep(rng.uniform(0.5, 1.5))
            sample = run_pair(rest, mechanism, rnd)
            samples.append(sample)
            queued = "-" if sample.to_queued_s is None else f"{sample.to_queued_s:.2f}"
            print(f"round {rnd} {mechanism:8s} to_queued={queued} to_first_task={sample.to_first_task_s:.2f}",
                  file=sys.stderr)  # fmt: skip
    used = meter.read()
    # What the scheduler costs with nothing to do (its loop rate is set by scheduler_idle_sleep_time).
    idle = h.CpuMeter({"scheduler": scheduler})
    time.sleep(args.idle_seconds)
    info = {
        "machine": h.machine(),
        "airflow": rest.get("/api/v2/version").get("version", "3"),
        "busy_cores": used["machine"],
        "scheduler_cores": used["scheduler"],
        "scheduler_idle_cores": idle.read()["scheduler"],
    }
    summary = summarise(samples)
    results = {
        "info": info,
        "task_to_asset_median_ratio": task_to_asset(summary),
        "args": {k: v for k, v in vars(args).items() if k not in ("json", "md")},
        "summary": summary,
        "samples": [asdict(s) for s in samples],
    }
    h.emit(markdown(summary, args, info), results, args.md, args.json)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with h.work_dir("side-by-side-", keep=args.keep) as work:
        (work / "dags").mkdir()
        # The Airflow processes' temporary files (the plugin's named-tasks cache) go with the rest.
        (work / "tmp").mkdir()
        for source in DAGS_DIR.glob("*.py"):
            shutil.copy2(source, work / "dags" / source.name)
        deps = work / "dependencies.json"
        # Only the edges of the mechanisms measured: a run-level comparison still runs on a coordinator without task
        # edges.
        dags = {dag: entry for m in args.mechanism_list if m in EDGES for dag, entry in EDGES[m].items()}
        deps.write_text(json.dumps({"version": 1, "dags": dags}))
        rng = random.Random(10)
        with EtcdServer() as etcd:
            stack = AirflowStack(
                home=work / "airflow",
                dags_folder=work / "dags",
                etcd_endpoints=etcd.endpoint,
                prefix="/side-by-side",
                triggerer=True,
                extra_env={
                    "TMPDIR": str(work / "tmp"),
                    "SBS_POKE_INTERVAL": str(args.poke_interval),
                    "SBS_CLASSIC_MODE": args.classic_mode,
                    **env_pairs(args.airflow_env),
                },
            )
            watcher: Watcher | None = None
            try:  # stopped (by PID) before etcd, also on failure
                stack.start(timeout_s=180.0)
                print(f"airflow up in {stack.started_in_s:.1f} s at {stack.url} (work dir {work})", file=sys.stderr)
                stack.wait_for_dags(dag_ids(), timeout_s=120.0)
                stack.unpause(dag_ids())
                watcher = Watcher.start(stack, etcd.endpoint, deps, work, env_pairs(args.watcher_env))
                watcher.wait_adopted()
                measure(Rest(stack), args, rng)
            finally:
                if watcher is not None:
                    watcher.stop()
                stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
