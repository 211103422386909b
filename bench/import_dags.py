"""``coordinator import-dags`` on a generated estate: 200 DAGs with 300 ExternalTaskSensors (target: under 30 s), or
a 600-file estate with failing files (target: under 60 s; docs/benchmarks.md, "coordinator import-dags", has both
commands).

Set-up: ``--files`` DAG files in a temporary folder holding ``--producers`` upstream DAGs (daily at a random hour and
minute, hourly, weekly, @daily; UTC or Europe/Berlin; two tasks and a task group) and ``--dependents`` DAGs with
``--sensors`` sensors spread over them, written the ways real repositories write them: ``execution_delta`` to the
upstream's time of day (positive and negative, a whole day back), ``external_task_id`` / ``external_task_ids`` /
``external_task_group_id``, deferrable and classic, ``allowed_states=[success, failed]``, a truncating
``execution_date_fn`` and a list-returning one, and a share of buggy deltas (never satisfied). ``--failing N`` adds
N files that do not import, as on a real estate: Airflow 2 idioms (``schedule_interval``, ``days_ago``,
``airflow.operators.dummy``) and a company library that is not installed, so grouping their causes is timed too.

``--rewrite`` adds ``--rewrite --diff-out FILE`` (the DAG files rewritten with LibCST into a diff), so the two are
timed side by side on the same estate.

Measured: the wall time of the whole command (``python -m coordinator.cli import-dags FOLDER --output FILE``) in a
fresh process with its own AIRFLOW_HOME: interpreter and Airflow start-up, the DagBag load, evaluating every sensor
on its sample dates and fitting its edge, validation, writing. Runs ``--repeat`` times; prints each time, the median
and the report's counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HEADER = """from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG, TaskGroup


def previous_hours(logical_date, **context):
    return [logical_date - timedelta(hours=h) for h in range(1, 25)]

"""


def producer(i: int, rng: random.Random) -> tuple[str, str, int, int]:
    """(source, schedule kind, hour, minute) of upstream ``u{i}``."""
    kind = rng.choice(["daily", "daily", "daily", "hourly", "weekly", "preset"])
    hour, minute = rng.randrange(24), rng.choice([0, 15, 30, 45])
    schedule = {
        "daily": f"{minute} {hour} * * *",
        "hourly": f"{minute} * * * *",
        "weekly": f"{minute} {hour} * * 1",
        "preset": "@daily",
    }[kind]
    if kind == "preset":
        hour, minute = 0, 0
    zone = rng.choice(["UTC", "UTC", "Europe/Berlin"])
    source = (
        f'with DAG("u{i}", schedule="{schedule}", start_date=pendulum.datetime(2024, 1, 1, tz="{zone}")):\n'
        f'    with TaskGroup("publish"):\n'
        f'        EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")\n'
        f'    EmptyOperator(task_id="load") >> EmptyOperator(task_id="check")\n'
    )
    return source, kind, hour, minute


def sensor(j: int, up: int, kind: str, hour: int, minute: int, down_hour: int, rng: random.Random) -> str:
    """One sensor of a dependent running daily at ``down_hour``:00 on upstream ``u{up}``."""
    style = rng.choice(["delta", "delta", "delta", "ids", "group", "finished", "truncate", "list", "bug"])
    delta_minutes = (down_hour * 60) - (hour * 60 + minute)
    if kind == "hourly":
        delta_minutes = -minute
    common = f'task_id="wait_{j}", external_dag_id="u{up}", deferrable={rng.choice([True, False])}'
    delta = f"execution_delta=timedelta(minutes={delta_minutes})"
    if kind == "weekly" or style == "bug":
        delta = f"execution_delta=timedelta(minutes={delta_minutes + 7})"  # off the upstream's grid: a bug
    if style == "ids":
        return f'    ExternalTaskSensor({common}, external_task_ids=["load", "check"], {delta})\n'
    if style == "group":
        return f'    ExternalTaskSensor({common}, external_task_group_id="publish", {delta})\n'
    if style == "finished":
        return f'    ExternalTaskSensor({common}, allowed_states=["success", "failed"], {delta})\n'
    if style == "truncate" and kind == "hourly":
        truncate = f"lambda dt: dt.replace(minute={minute})"
        return f'    ExternalTaskSensor({common}, external_task_id="load", execution_date_fn={truncate})\n'
    if style == "list" and kind == "hourly":
        return f"    ExternalTaskSensor({common}, execution_date_fn=previous_hours)\n"
    return f'    ExternalTaskSensor({common}, external_task_id="load", {delta})\n'


def generate(folder: Path, producers: int, dependents: int, sensors: int, files: int, seed: int) -> None:
    rng = random.Random(seed)
    sources: list[str] = []
    kinds = []
    for i in range(producers):
        source, kind, hour, minute = producer(i, rng)
        sources.append(source)
        kinds.append((kind, hour, minute))
    per_dependent = [sensors // dependents + (1 if d < sensors % dependents else 0) for d in range(dependents)]
    j = 0
    for d, count in enumerate(per_dependent):
        down_hour = rng.randrange(24)
        body = (
            f'with DAG("d{d}", schedule="0 {down_hour} * * *", start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):\n'
        )
        for _ in range(count):
            up = rng.randrange(producers)
            while kinds[up][0] == "weekly" and rng.random() < 0.8:  # a daily run rarely waits for a weekly one
                up = rng.randrange(producers)
            kind, hour, minute = kinds[up]
            body += sensor(j, up, kind, hour, minute, down_hour, rng)
            j += 1
        sources.append(body)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        chunk = sources[f::files]
        (folder / f"dags_{f:03d}.py").write_text(HEADER + "\n".join(chunk), encoding="utf-8")


FAILING = (
    "from airflow.operators.dummy import DummyOperator\n",
    "from airflow.utils.dates import days_ago\n",
    "import acme_warehouse_sdk\n",
    'from airflow.sdk import DAG\n\nDAG("legacy_{n}", schedule_interval="@daily")\n',
)


def failing(folder: Path, count: int) -> None:
    """``count`` DAG files that fail to import, cycling through the causes real estates show."""
    for n in range(count):
        body = FAILING[n % len(FAILING)].format(n=n)
        (folder / f"legacy_{n:03d}.py").write_text(f"# an airflow dag file\n{body}", encoding="utf-8")


def run_once(folder: Path, work: Path, rewrite: bool = False) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {"AIRFLOW_HOME": str(work / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONWARNINGS": "ignore"}
    output = work / "dependencies.json"
    output.unlink(missing_ok=True)
    diff = work / "rewrite.diff"
    extra = ["--rewrite", "--diff-out", str(diff)] if rewrite else []
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "import-dags", str(folder), "--output", str(output), *extra],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - begin
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"import-dags failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = next(line for line in done.stderr.splitlines() if line.startswith("import-dags:"))
    counts = [line.split(" (")[0] for line in done.stderr.splitlines() if line[:1].isalpha()]
    json.loads(output.read_text(encoding="utf-8"))
    details = "; ".join(c for c in counts if not c.startswith("import-dags"))
    if rewrite:
        details += f"; diff {diff.stat().st_size:,} bytes"
    return elapsed, f"cpu {cpu:.2f} s  {summary} | {details}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--producers", type=int, default=100)
    parser.add_argument("--dependents", type=int, default=100)
    parser.add_argument("--sensors", type=int, default=300)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--failing", type=int, default=0, help="extra files that fail to import")
    parser.add_argument("--target", type=float, default=30.0, help="the time the median must stay under (s)")
    parser.add_argument("--rewrite", action="store_true", help="also rewrite the DAG files (--rewrite --diff-out)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        work = Path(tmp)
        folder = work / "dags"
        generate(folder, args.producers, args.dependents, args.sensors, args.files, args.seed)
        failing(folder, args.failing)
        print(
            f"estate: {args.producers + args.dependents} DAGs, {args.sensors} sensors in {args.files} files "
            f"+ {args.failing} failing (seed {args.seed}); python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )
        times = []
        for n in range(args.repeat):
            elapsed, summary = run_once(folder, work, args.rewrite)
            times.append(elapsed)
            print(f"run {n + 1}: {elapsed:.2f} s  {summary}")
        median = statistics.median(times)
        print(f"median {median:.2f} s (min {min(times):.2f}, max {max(times):.2f}); target < {args.target:g} s")


if __name__ == "__main__":
    main()
