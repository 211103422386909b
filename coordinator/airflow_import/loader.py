"""Load a DAGs folder with Airflow's own loader (``DagBag``) and read the facts ``import-dags`` translates.

Rules:
- **Imports airflow, lazily.** The only module of the package, with the plugin, that imports ``airflow``; it runs where
  Airflow is (2.9+ or 3.x, whichever is installed) and is imported lazily by the ``import-dags`` command only.
- **Airflow stays inside.** Airflow objects never leave this module: DAGs, timetables and operators become the typed
  facts of :mod:`coordinator.core.importer.facts`, and the translation is pure.
- **Sensors' own dates.** A sensor's dates are the sensor's own: its ``_get_dttm_filter(context)`` is called with a
  context for a run of its DAG at each sample partition (the keys a scheduled run's context has: ``logical_date``, the
  data interval, ``ds``/``ts``, ``dag_run``...). An exception is recorded as the reason the dates are unknown, never
  raised.
- **Call sites recorded.** file:line of every DAG and cross-DAG operator is recorded while the folder loads, by wrapping
  the ``__init__`` of ``DAG`` and of the three operator classes for the duration of the load (restored afterwards, even
  on error): the line of the call in the DAG file, which also holds for DAGs built in loops and factories.
- **Clean stdout.** Airflow logs to stdout while it loads a folder; stdout is pointed at stderr for that time, so the
  JSON written to stdout stays clean.
- **Loads as Airflow does.** The folder loads as Airflow loads it: the DAGs folder and the plugins folder are appended
  to ``sys.path`` for the load. No timetable crashes the load: Airflow 3's ``AssetOrTimeSchedule`` gets the grid of its
  time half (the asset half reported), a ``PartitionedAssetTimetable`` is an asset schedule
  (**Airflow's own partition mapper**), and any timetable without one cron grid is reported with its description.
- **Timedelta starts.** A timedelta schedule starts at the earliest start date of the DAG and its tasks
  (``default_args`` included), as Airflow's scheduler restricts it. An Airflow 2 SubDAG (``parent.child``) is read with
  the top DAG it runs in, so the translation can skip it as a DAG and keep its operators as its parent's.
- **Rendered templates.** A marker's or trigger's ``logical_date`` template is rendered as Airflow renders it (the
  operator's ``render_template`` with the run's context, ``macros`` included; then Airflow's ``timezone.parse``) for
  runs of its DAG at the sample partitions; the translation fits an edge to those dates as it does for a sensor's.
- **Airflow's own partition mapper.** A ``PartitionedAssetTimetable``'s mapping of each asset's partition keys is
  computed by Airflow's own mapper on the producer's sample runs (:mod:`coordinator.airflow_import.partitions`).
- **Failed files, deepest cause.** A file that failed is recorded with its deepest cause
  (:func:`coordinator.core.importer.failures.deepest_cause`); a DAG id that a sensor, marker or trigger names, that did
  not load, and that a failed file's text holds (quoted) is recorded as that file's, so the report says "its file
  failed" rather than "not in this folder".
- **Missing means not found.** Airflow is missing only when ``airflow`` itself cannot be found; when it is found but
  fails to import, the error says so, with its deepest cause and any module from outside site-packages that shadows a
  library of the same name later on ``sys.path`` (an estate's ``plugins/yaml`` on PYTHONPATH hiding PyYAML).
- **Job sensors.** A sensor on another system's job (a provider class :mod:`coordinator.airflow_import.job_sensors`
  knows by name) is a link of kind ``JOB``, its arguments as written; its line is recorded by wrapping the ``__init__``
  of Airflow's ``BaseSensorOperator``, which every provider sensor calls, so no provider is imported.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

from coordinator.airflow_import.job_sensors import job_fact
from coordinator.airflow_import.schedules import asset_names, asset_producers, attr, dag_root, dag_schedule, utc
from coordinator.core.importer.facts import (
    DagFact,
    DateSample,
    LinkFact,
    LinkKind,
    Origin,
    ScheduleFact,
)
from coordinator.core.importer.failures import FailedFile, deepest_cause, failing_line
from coordinator.core.importer.schedule import choose_grid, sample_partitions
from coordinator.core.task_facts import NOT_RUN_OPERATORS
from coordinator.errors import ConfigError

#: How many frames up from an ``__init__`` the call site in the DAGs folder is looked for.
MAX_FRAMES = 40
LINK_CLASSES = {
    "ExternalTaskSensor": LinkKind.SENSOR,
    "ExternalTaskMarker": LinkKind.MARKER,
    "TriggerDagRunOperator": LinkKind.TRIGGER,
}
#: Where the classes live in Airflow 3 (the standard provider) and Airflow 2 (core; the provider when installed).
CLASS_MODULES = (
    "airflow.providers.standard.sensors.external_task",
    "airflow.providers.standard.operators.trigger_dagrun",
    "airflow.sensors.external_task",
    "airflow.operators.trigger_dagrun",
)
DAG_MODULES = ("airflow.sdk.definitions.dag", "airflow.models.dag")
#: Every sensor's base class (Airflow 3, Airflow 2): its ``__init__`` records a job sensor's line (**Job sensors**).
SENSOR_MODULES = ("airflow.sdk.bases.sensor", "airflow.sensors.base")


@dataclass(frozen=True, slots=True)
class LoadedFolder:
    """What the loader found: the facts, the files that failed to import, and where (Airflow version, Python)."""

    dags: tuple[DagFact, ...]
    links: tuple[LinkFact, ...]
    failed: tuple[FailedFile, ...]
    airflow_version: str
    #: Python files Airflow read (those that imported, with or without DAGs, and those that failed).
    files: int = 0
    #: (DAG id, its failed file) for DAGs that links name but that did not load (**Failed files, deepest cause**).
    failed_dags: tuple[tuple[str, str], ...] = ()
    #: The interpreter that loaded the folder.
    python: str = ""


@dataclass
class _Origins:
    """Call sites recorded while the folder loads (**Call sites recorded**), keyed by ``id()`` of the created object."""

    folder: Path
    sites: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    keep: list[object] = field(default_factory=list)  # ids stay unique only while the objects live

    def record(self, obj: object) -> None:
        frames: list[tuple[str, int]] = []
        frame: FrameType | None = sys._getframe(2)
        for _ in range(MAX_FRAMES):
            if frame is None:
                break
            name = frame.f_code.co_filename
            if name.startswith(str(self.folder)):
                frames.append((name, frame.f_lineno))
            frame = frame.f_back
        self.sites[id(obj)] = tuple(frames)
        self.keep.append(obj)

    def origin(self, obj: object, fileloc: str) -> Origin:
        """The innermost call site in the DAG's own file, else in the folder, else the file without a line."""
        sites = self.sites.get(id(obj), ())
        for name, line in sites:
            if name == fileloc:
                return Origin(self.relative(name), line)
        if sites:
            return Origin(self.relative(sites[0][0]), sites[0][1])
        return Origin(self.relative(fileloc))

    def relative(self, name: str) -> str:
        try:
            return str(Path(name).relative_to(self.folder))
        except ValueError:
            return name


def _airflow() -> Any:
    """Airflow, or why not (**Missing means not found**)."""
    try:
        import airflow
    except Exception as exc:  # an estate module shadowing a library breaks Airflow's import in any way at all
        if not _installed("airflow"):
            raise ConfigError(
                f"Airflow is not installed in this Python environment ({sys.executable}): import-dags loads the "
                f"folder with Airflow's own DAG loader; run it where your DAGs run (pip install "
                f"airflow-etcd-coordinator into that environment), or point --python at that environment's python"
            ) from None
        shadows = "; ".join(_shadowing()) or "no module outside site-packages shadows a library"
        cause = deepest_cause("".join(traceback.format_exception(exc)))
        raise ConfigError(
            f"Airflow is installed in this Python ({sys.executable}) but does not import: {cause}; {shadows}"
        ) from None
    return airflow


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken parent package
        return False


def _shadowing() -> list[str]:
    """Loaded top-level modules from outside site-packages (an estate's folder on PYTHONPATH) that hide a module of
    the same name later on ``sys.path`` (a library): an estate's ``plugins/yaml`` hiding PyYAML from Airflow."""
    found = []
    for name, module in sorted(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if "." in name or not where or any(p in Path(where).parts for p in ("site-packages", "dist-packages")):
            continue
        entries = [p for p in sys.path if p and Path(where).resolve().is_relative_to(Path(p).resolve())]
        if not entries:
            continue
        later = sys.path[sys.path.index(entries[0]) + 1 :]
        library = importlib.machinery.PathFinder.find_spec(name, later)
        if library is not None and library.origin != where:
            found.append(
                f"{where} shadows the library {name!r} ({library.origin}): its folder comes first on sys.path "
                f"(PYTHONPATH); rename it or take its folder off PYTHONPATH"
            )
    return found


def _classes(modules: tuple[str, ...], wanted: set[str]) -> list[type]:
    """Each wanted class from the first module that has it (Airflow 3's locations come first: the Airflow 2 paths
    still import in Airflow 3, with a deprecation warning)."""
    found: dict[str, type] = {}
    for module_name in modules:
        missing = wanted - set(found)
        if not missing:
            break
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in missing:
            value = module.__dict__.get(name)
            if isinstance(value, type):
                found[name] = value
    return list(found.values())


@contextlib.contextmanager
def _recording(classes: list[type], origins: _Origins) -> Iterator[None]:
    """Wrap ``__init__`` of ``classes`` so every instance's call site is recorded (**Call sites recorded**); always
    restored."""
    saved: list[tuple[type, Callable[..., None]]] = []

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(original)
        def init(self: object, *args: Any, **kwargs: Any) -> None:
            if id(self) not in origins.sites:
                origins.record(self)
            original(self, *args, **kwargs)

        return init

    try:
        for cls in classes:
            original = cls.__dict__.get("__init__")
            if original is not None:
                saved.append((cls, original))
                type.__setattr__(cls, "__init__", wrap(original))
        yield
    finally:
        for cls, original in saved:
            type.__setattr__(cls, "__init__", original)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """**Clean stdout**: file descriptor 1 points at stderr while Airflow loads (its loggers hold their own stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def load_folder(folder: Path) -> LoadedFolder:
    """Load ``folder`` with Airflow's DagBag and read its facts (every rule of the module)."""
    folder = folder.resolve()
    if not folder.exists():
        raise ConfigError(f"{folder}: no such DAGs folder — pass the folder your DAG files are in")
    with _stdout_to_stderr():  # Airflow's loggers write to the stdout they saw at import time
        airflow = _airflow()
        origins = _Origins(folder if folder.is_dir() else folder.parent)
        link_classes = _classes(CLASS_MODULES, set(LINK_CLASSES))
        dag_classes = _classes(DAG_MODULES, {"DAG"})
        sensor_classes = _classes(SENSOR_MODULES, {"BaseSensorOperator"})
        with _recording([*dag_classes, *link_classes, *sensor_classes], origins), _import_path(folder):
            bag = _dagbag(folder)
        producers = asset_producers(bag.dags.values())
        names = asset_names(bag.dags.values())
        facts = {dag_id: _dag_fact(bag.dags[dag_id], origins, producers, names) for dag_id in sorted(bag.dags)}
        links = [link for dag_id, fact in facts.items() for link in _links(bag.dags[dag_id], fact, facts, origins)]
        recorded = {str(f): str(e) for f, e in bag.import_errors.items()}
        files = {str(getattr(stat, "file", "")) for stat in getattr(bag, "dagbag_stats", None) or ()}
    missing = {link.other_dag for link in links if link.kind is not LinkKind.JOB and link.other_dag not in facts}
    return LoadedFolder(
        tuple(facts.values()),
        tuple(links),
        tuple(
            sorted(FailedFile(origins.relative(f), deepest_cause(e), failing_line(e, f)) for f, e in recorded.items())
        ),
        str(airflow.__version__),
        files=len(
            {origins.relative(_stat_path(f, folder)) for f in files if f} | {origins.relative(f) for f in recorded}
        ),
        failed_dags=tuple(sorted(_failed_dags(missing, recorded, origins))),
        python=sys.executable,
    )


def _stat_path(name: str, folder: Path) -> str:
    """The file a ``dagbag_stats`` entry names, as an absolute path. Airflow 2 cuts its DAGS_FOLDER off the front
    (``/x.py`` for ``DAGS_FOLDER/x.py``) while its import errors keep the whole path: read as written, one failed file
    would count twice (once from each) and a folder would seem to hold more files than it does."""
    path = Path(name)
    if path.is_absolute() and path.exists():
        return name
    try:
        from airflow import settings

        dags_folder = Path(str(settings.DAGS_FOLDER))
    except Exception:  # Airflow's settings are its own; without them, the folder given is the best guess
        dags_folder = folder if folder.is_dir() else folder.parent
    for base in (dags_folder, folder if folder.is_dir() else folder.parent):
        candidate = base / name.lstrip("/")
        if candidate.exists():
            return str(candidate)
    return name


def _failed_dags(missing: set[str], failed: Mapping[str, str], origins: _Origins) -> Iterator[tuple[str, str]]:
    """**Failed files, deepest cause**: a missing DAG id written as a string in a failed file is most likely that file's
    DAG."""
    if not missing or not failed:
        return
    texts = {}
    for name in failed:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            texts[name] = Path(name).read_text(encoding="utf-8")
    for dag_id in sorted(missing):
        quoted = (f'"{dag_id}"', f"'{dag_id}'")
        for name, text in sorted(texts.items()):
            if any(q in text for q in quoted):
                yield dag_id, origins.relative(name)
                break


@contextlib.contextmanager
def _import_path(folder: Path) -> Iterator[None]:
    """The DAGs folder and the plugins folder on ``sys.path`` while the folder loads, as Airflow puts them.

    Airflow appends its configured DAGs and plugins folders at start-up (so ``from mylib import x`` in a DAG file
    finds ``dags/mylib``); this folder is not the configured one. Appended, not prepended, as Airflow does: an
    estate's ``plugins/yaml`` must not shadow PyYAML. The plugins folder is ``AIRFLOW__CORE__PLUGINS_FOLDER``,
    else the estate's usual layout, a ``plugins`` folder beside the DAGs folder.
    """
    added = [str(p) for p in _folders(folder) if p.is_dir() and str(p) not in sys.path]
    sys.path.extend(added)
    try:
        yield
    finally:
        for path in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)


def _folders(folder: Path) -> tuple[Path, Path]:
    """The DAGs folder and the plugins folder of the estate (**Loads as Airflow does**)."""
    dags = folder if folder.is_dir() else folder.parent
    return dags, Path(os.environ.get("AIRFLOW__CORE__PLUGINS_FOLDER") or dags.parent / "plugins")


def _dagbag(folder: Path) -> Any:
    try:
        from airflow.dag_processing import dagbag as module  # Airflow 3
    except ImportError:
        from airflow.models import dagbag as module  # type: ignore[no-redef]  # Airflow 2
    kwargs: dict[str, Any] = {}
    if "include_examples" in inspect.signature(module.DagBag.__init__).parameters:
        kwargs["include_examples"] = False  # Airflow 2 would load its examples too
    return module.DagBag(str(folder), **kwargs)


def _dag_fact(dag: Any, origins: _Origins, producers: Mapping[str, list[Any]], names: Mapping[str, str]) -> DagFact:
    groups: list[tuple[str, tuple[str, ...]]] = []
    for group_id, group in sorted((getattr(dag, "task_group_dict", None) or {}).items()):
        if group_id:
            groups.append((group_id, tuple(sorted(t.task_id for t in group.iter_tasks()))))
    outlets = []
    for task in dag.tasks:
        for outlet in getattr(task, "outlets", None) or ():
            uri = getattr(outlet, "uri", None)
            if isinstance(uri, str):
                outlets.append((task.task_id, uri))
    return DagFact(
        dag.dag_id,
        origins.origin(dag, dag.fileloc),
        dag_schedule(dag, producers, names),
        tuple(groups),
        tuple(sorted(outlets)),
        tuple(sorted(dag.task_ids)),
        not_run=tuple(sorted(t.task_id for t in dag.tasks if _not_run(t))),
        subdag_of=dag_root(dag),
    )


def _not_run(task: Any) -> bool:
    """Airflow's own test (3.3 ``TaskInstance.is_task_schedulable``, 2.11 ``DagRun.schedule_tis``): an
    ``EmptyOperator`` (``DummyOperator`` in Airflow 2) with no callback, inlet or outlet is marked success unrun."""
    if not any(cls.__name__ in NOT_RUN_OPERATORS for cls in type(task).__mro__):
        return False
    hooks = ("on_execute_callback", "on_success_callback", "inlets", "outlets")
    return not any(getattr(task, name, None) for name in hooks)


def _kind(task: Any) -> LinkKind | None:
    for cls in type(task).__mro__:
        if cls.__name__ in LINK_CLASSES:
            return LINK_CLASSES[cls.__name__]
    return None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(getattr(v, "value", v)) for v in value or ())


def _links(dag: Any, fact: DagFact, facts: Mapping[str, DagFact], origins: _Origins) -> list[LinkFact]:
    found: list[LinkFact] = []
    for task in sorted(dag.tasks, key=lambda t: t.task_id):
        kind = _kind(task)
        if kind is None:
            job = job_fact(task, dag)  # **Job sensors**
            if job is not None:
                found.append(LinkFact(LinkKind.JOB, dag.dag_id, task.task_id, origins.origin(task, dag.fileloc), "",
                                      job=job))  # fmt: skip
            continue
        origin = origins.origin(task, dag.fileloc)
        if kind is LinkKind.SENSOR:
            found.append(_sensor(dag, task, fact, facts.get(str(task.external_dag_id)), origin))
        elif kind is LinkKind.MARKER:
            date = _template(attr(task, "logical_date", "execution_date"))
            samples, error = _rendered(dag, task, fact.schedule, date)
            found.append(LinkFact(kind, dag.dag_id, task.task_id, origin, str(task.external_dag_id),
                                  tasks=(str(task.external_task_id),), logical_date=date, samples=samples,
                                  date_error=error))  # fmt: skip
        else:
            date = _template(attr(task, "logical_date", "execution_date"))
            samples, error = _rendered(dag, task, fact.schedule, date)
            found.append(
                LinkFact(
                    kind,
                    dag.dag_id,
                    task.task_id,
                    origin,
                    str(task.trigger_dag_id),
                    logical_date=date,
                    samples=samples,
                    date_error=error,
                    upstream_tasks=tuple(sorted(task.upstream_task_ids)),
                    trigger_rule=str(getattr(task.trigger_rule, "value", task.trigger_rule)),
                    wait_for_completion=bool(getattr(task, "wait_for_completion", False)),
                )
            )
    return found


def _rendered(
    dag: Any, task: Any, schedule: ScheduleFact, template: str | None
) -> tuple[tuple[DateSample, ...], str | None]:
    """**Rendered templates**: the target's logical date for runs of the operator's DAG at its sample partitions,
    rendered by the operator's own template engine and parsed by Airflow's own parser, as a sample
    ``(target date, (this run,))``. Nothing when the operator keeps its default (the same logical date). An error is a
    reason, never raised."""
    if template is None:
        return (), None
    grid = choose_grid(schedule).grid
    interval = "DataInterval" in schedule.timetable
    by_target: dict[datetime, list[datetime]] = {}
    try:
        parse = _date_parser()
        env = _compiling_once(task.get_template_env())
        for partition in sample_partitions(grid):
            end = grid.next(partition) if interval and grid is not None else partition
            context = run_context(dag, task, partition, end)
            value = task.render_template(template, context, jinja_env=env)
            at = utc(value if isinstance(value, datetime) else parse(str(value)))
            if at is None:
                raise TypeError(f"it rendered {value!r} for {partition:%Y-%m-%dT%H:%M:%SZ}, not a date")
            by_target.setdefault(at, []).append(partition)
    except Exception as exc:  # a template may raise anything (an unknown macro, a bad format): a finding
        return (), f"{type(exc).__name__}: {exc}"
    return tuple(DateSample(target, tuple(runs)) for target, runs in sorted(by_target.items())), None


def _compiling_once(env: Any) -> Any:
    """The operator's own Jinja environment, compiling each template text once: Airflow compiles on every render
    (``from_string``), 8 ms a time, which for 50 samples of 600 markers would be most of an estate's import."""
    env.from_string = functools.lru_cache(maxsize=64)(env.from_string)
    return env


def _date_parser() -> Callable[[str], datetime]:
    """Airflow's own parser of a rendered ``logical_date`` (the trigger's ``timezone.parse``: pendulum, Airflow's
    default time zone for a date without one)."""
    try:
        module = importlib.import_module("airflow.sdk.timezone")  # Airflow 3
    except ImportError:
        module = importlib.import_module("airflow.utils.timezone")  # Airflow 2
    parse: Callable[[str], datetime] = module.parse
    return parse


def _template(value: Any) -> str | None:
    if value is None or type(value).__name__ == "ArgNotSet":  # Airflow 3's NOTSET: the operator's default
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _sensor(dag: Any, task: Any, fact: DagFact, upstream: DagFact | None, origin: Origin) -> LinkFact:
    rule = "delta" if task.execution_delta else "function" if task.execution_date_fn else "same"
    samples: tuple[DateSample, ...] = ()
    error: str | None = None
    try:
        samples = sensor_samples(dag, task, fact.schedule, upstream.schedule if upstream is not None else None)
    except Exception as exc:  # the user's execution_date_fn may raise anything: that is a finding, not a crash
        error = f"{type(exc).__name__}: {exc}"
    return LinkFact(
        LinkKind.SENSOR,
        dag.dag_id,
        task.task_id,
        origin,
        str(task.external_dag_id),
        tasks=tuple(task.external_task_ids) if task.external_task_ids else None,
        task_group=task.external_task_group_id,
        allowed_states=_strings(task.allowed_states),
        failed_states=_strings(task.failed_states),
        skipped_states=_strings(task.skipped_states),
        deferrable=bool(getattr(task, "deferrable", False)),
        date_rule=rule,
        delta=task.execution_delta,
        samples=samples,
        date_error=error,
    )


def sensor_samples(
    dag: Any, task: Any, schedule: ScheduleFact, upstream: ScheduleFact | None
) -> tuple[DateSample, ...]:
    """The sensor's own dates for runs of its DAG at the sample partitions (**Sensors' own dates**). A DAG without a
    grid runs when something triggers it: sampled where its sensor can be satisfied, at the upstream's points plus the
    delta."""
    grid = choose_grid(schedule).grid
    interval = "DataInterval" in schedule.timetable
    partitions = sample_partitions(grid)
    up_grid = choose_grid(upstream).grid if upstream is not None else None
    if grid is None and up_grid is not None:
        partitions = tuple(p + (task.execution_delta or timedelta(0)) for p in sample_partitions(up_grid))
    samples = []
    for partition in partitions:
        end = grid.next(partition) if interval and grid is not None else partition
        dates = task._get_dttm_filter(run_context(dag, task, partition, end))
        found = []
        for value in dates:
            at = utc(value)
            if at is None:
                raise TypeError(f"it returned {value!r} for {partition:%Y-%m-%dT%H:%M:%SZ}, not a datetime")
            found.append(at)
        samples.append(DateSample(partition, tuple(found)))
    return tuple(samples)


def run_context(dag: Any, task: Any, logical_date: datetime, interval_end: datetime) -> dict[str, Any]:
    """The context keys a scheduled run of ``dag`` at ``logical_date`` carries (Airflow 2 and 3 names)."""
    import pendulum

    at = pendulum.instance(logical_date).in_timezone("UTC")
    end = pendulum.instance(interval_end).in_timezone("UTC")
    run_id = f"scheduled__{at.isoformat()}"
    dag_run = SimpleNamespace(
        dag_id=dag.dag_id, run_id=run_id, logical_date=at, execution_date=at, run_after=end,
        data_interval_start=at, data_interval_end=end, run_type="scheduled", conf={},
    )  # fmt: skip
    return {
        "dag": dag,
        "task": task,
        "dag_run": dag_run,
        "run_id": run_id,
        "logical_date": at,
        "execution_date": at,
        "data_interval_start": at,
        "data_interval_end": end,
        "ds": at.strftime("%Y-%m-%d"),
        "ds_nodash": at.strftime("%Y%m%d"),
        "ts": at.isoformat(),
        "ts_nodash": at.strftime("%Y%m%dT%H%M%S"),
        "params": {},
        "conf": None,
        "macros": _macros(),
    }


@functools.lru_cache(maxsize=1)
def _macros() -> Any:
    """The ``macros`` a template reads (``macros.ds_add``...): Airflow 3's module of the task SDK, Airflow 2's. Once
    per load: every sample run's context holds it (15,000 of them for 300 sensors)."""
    try:
        return importlib.import_module("airflow.sdk.execution_time.macros")
    except ImportError:
        return importlib.import_module("airflow.macros")
