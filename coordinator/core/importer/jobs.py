"""Sensors on another system's job (dbt Cloud, Databricks, AWS Glue, EMR, Spark on Kubernetes, Dataproc, Dataflow) ->
an OpenLineage node offered for confirmation (semantics `lineage-upstreams`), never an edge written on a guess.

Rules (``docs/import-dags.md``, "Sensors on other systems' jobs"):
- **By class name.** A job sensor is known by the name of a class among the task's classes (:data:`JOB_SENSORS`), as an
  ``ExternalTaskSensor`` is, so a subclass counts and no provider is imported. The table says, per class, the system,
  the arguments that name the job (``job_name``, ``application_name``) and those that name one run (``run_id``,
  ``step_id``...), and the operators that start such runs.
- **Jobs started in the DAG.** A sensor whose job or run argument is the output of a task of its own DAG that starts
  such runs (a ``GlueJobOperator``'s run id, a ``SparkKubernetesOperator``'s application) polls the DAG's own work:
  noted, nothing to translate, the sensor stays.
- **Jobs outside the folder.** Any other job sensor depends on a job outside the folder: no edge is written; it is
  reported (cannot express) with an offer: the ``"openlineage"`` entry that makes the job a node
  (``coordinator.core.lineage.mapping``), the instance to declare, and the edge from the sensing DAG to that node, which
  replaces the sensor as an ``ExternalTaskSensor``'s edge does. Every offer needs confirmation: the namespace is a
  placeholder (:data:`NAMESPACE_PLACEHOLDER`); the job is a guess from a literal job name (the OpenLineage Spark
  listener's snake_case of the application's name), else a placeholder and what the system's integration emits; the
  node's partitions are the sensing DAG's grid (the job's own schedule is not in the folder).
- **Offers in the report only.** The offer is in the report only (text and JSON, :attr:`LineageOffer.to_json`), not in
  the written file: the file's loader has no ``"openlineage"`` section yet, and an edge to a node whose job is guessed
  wrong would receive no run and hold the sensing DAG forever.
- **Literals and templates.** A literal names the job or the run; a template is known only when the task runs and is
  reported as one; another task's output names that task. A literal run id names one run, not the job: it is said so.
- **The node's name.** The node's dag id is the guessed job name, else the sensor's task id; its instance is the
  system's (:attr:`JobSensorKind.instance`).
- **Pure**.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.core.importer.edges import Work
from coordinator.core.importer.facts import FindingKind, JobArgument, JobFact, LinkFact, Origin, ValueKind
from coordinator.core.model import NAME_RE, NODE_SEP

#: What the user writes in place of the namespace (**Jobs outside the folder**): only they know which namespace their
#: integration emits.
NAMESPACE_PLACEHOLDER = "<namespace your job's OpenLineage integration uses>"
#: The job when no literal names it (**Jobs outside the folder**).
JOB_PLACEHOLDER = "<the job's name as its OpenLineage integration emits it>"
SPARK_NAMING = "the OpenLineage Spark listener's: spark.app.name in snake_case, each action's job adding .<action>"
DBT_NAMING = "dbt-ol's: {project}.{schema}.{project}.{model}.build.run per model, dbt-run-{project} per invocation"


@dataclass(frozen=True, slots=True)
class JobSensorKind:
    """One provider sensor class that polls a job (**By class name**)."""

    sensor: str
    #: The provider package it ships in (``airflow.providers.amazon``), to say when a class of that name is not it.
    provider: str
    system: str
    #: The instance offered for the system's nodes (**The node's name**).
    instance: str
    #: Arguments naming the job itself (a literal one gives the job's name a guess).
    name_args: tuple[str, ...] = ()
    #: Arguments naming one run, or the application or cluster it runs on.
    run_args: tuple[str, ...] = ()
    #: The one of ``run_args`` that names the run itself (a literal names one run, not the job:
    #: **Literals and templates**).
    one_run: str | None = None
    #: Class-name prefixes of operators that start such runs (**Jobs started in the DAG**).
    starters: tuple[str, ...] = ()
    #: How the system's OpenLineage integration names the job.
    naming: str = SPARK_NAMING
    #: Whether a literal job name becomes a job name by the Spark listener's snake_case (else it is used as written).
    spark: bool = True

    @property
    def arguments(self) -> tuple[str, ...]:
        return self.name_args + self.run_args


_AWS = "airflow.providers.amazon"
_GOOGLE = "airflow.providers.google"
_EMR_STARTERS = ("EmrCreateJobFlow", "EmrAddSteps", "EmrServerlessStartJob", "EmrContainer")
#: **By class name**: the provider classes recognised, by the names the providers give them.
JOB_SENSORS: dict[str, JobSensorKind] = {
    k.sensor: k
    for k in (
        JobSensorKind(
            "DbtCloudJobRunSensor",
            "airflow.providers.dbt.cloud",
            "dbt Cloud",
            "dbt",
            run_args=("run_id",),
            one_run="run_id",
            starters=("DbtCloudRunJob",),
            naming=DBT_NAMING,
            spark=False,
        ),
        JobSensorKind(
            "DatabricksJobRunSensor",
            "airflow.providers.databricks",
            "Databricks",
            "databricks",
            run_args=("run_id",),
            one_run="run_id",
            starters=("DatabricksRunNow", "DatabricksSubmitRun", "DatabricksNotebook", "DatabricksTask"),
        ),
        JobSensorKind(
            "GlueJobSensor",
            _AWS,
            "AWS Glue",
            "glue",
            name_args=("job_name",),
            run_args=("run_id",),
            one_run="run_id",
            starters=("GlueJob",),
        ),
        JobSensorKind(
            "EmrServerlessJobSensor",
            _AWS,
            "EMR Serverless",
            "emr",
            run_args=("application_id", "job_run_id"),
            one_run="job_run_id",
            starters=_EMR_STARTERS,
        ),
        JobSensorKind("EmrJobFlowSensor", _AWS, "EMR", "emr", run_args=("job_flow_id",), starters=_EMR_STARTERS),
        JobSensorKind(
            "EmrStepSensor",
            _AWS,
            "EMR",
            "emr",
            run_args=("job_flow_id", "step_id"),
            one_run="step_id",
            starters=_EMR_STARTERS,
        ),
        JobSensorKind(
            "EmrContainerSensor",
            _AWS,
            "EMR on EKS",
            "emr",
            run_args=("virtual_cluster_id", "job_id"),
            one_run="job_id",
            starters=_EMR_STARTERS,
        ),
        JobSensorKind(
            "SparkKubernetesSensor",
            "airflow.providers.cncf.kubernetes",
            "Spark on Kubernetes",
            "spark",
            name_args=("application_name",),
            starters=("SparkKubernetes",),
        ),
        JobSensorKind(
            "DataprocJobSensor",
            _GOOGLE,
            "Dataproc",
            "dataproc",
            run_args=("dataproc_job_id",),
            one_run="dataproc_job_id",
            starters=("DataprocSubmit",),
        ),
        JobSensorKind(
            "DataflowJobStatusSensor",
            _GOOGLE,
            "Dataflow",
            "dataflow",
            run_args=("job_id",),
            one_run="job_id",
            starters=(
                "DataflowTemplatedJobStart",
                "DataflowStartFlexTemplate",
                "DataflowStartYamlJob",
                "DataflowRunPipeline",
                "BeamRun",
            ),
            naming="your pipeline's OpenLineage integration's",
            spark=False,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class LineageOffer:
    """**Jobs outside the folder**: what to add so the polled job is a node the sensing DAG waits for; every field is to
    confirm."""

    origin: Origin
    #: ``dag.task`` of the sensor.
    subject: str
    #: The sensing DAG's key in ``"dags"`` (qualified with ``--instance``).
    dependent: str
    sensor: str
    system: str
    namespace: str
    job: str
    #: Whether ``job`` is a guess from a literal name (False: a placeholder).
    job_guessed: bool
    instance: str
    dag: str
    #: The node's partitions (the sensing DAG's grid: cron as written, zone), or None when that DAG has none.
    cron: str | None
    timezone: str | None
    #: How the system's integration names the job, and what the sensor's arguments said.
    naming: str
    polls: str

    @property
    def node(self) -> str:
        return f"{self.instance}{NODE_SEP}{self.dag}"

    def entry(self) -> dict[str, Any]:
        """The ``"openlineage"`` entry (``coordinator.core.lineage.mapping.LineageJob``'s fields)."""
        entry: dict[str, Any] = {
            "namespace": self.namespace,
            "job": self.job,
            "instance": self.instance,
            "dag": self.dag,
        }
        if self.cron is not None:
            entry["partitions"] = {"cron": self.cron, "timezone": self.timezone or "UTC"}
        return entry

    def to_json(self) -> dict[str, Any]:
        """The offer for the JSON report: the entry, the instance to declare and the edge, and what to confirm."""
        confirm = ["namespace", "job" if self.job_guessed else "job (not known: fill it in)"]
        confirm.append("partitions" if self.cron is not None else "partitions (the sensing DAG has no grid)")
        return {
            "file": self.origin.file,
            "line": self.origin.line,
            "subject": self.subject,
            "sensor": self.sensor,
            "system": self.system,
            "polls": self.polls,
            "openlineage": self.entry(),
            "instances": {self.instance: {"description": f"OpenLineage jobs of {self.system}"}},
            "upstreams": {self.dependent: [{"dag": self.node}]},
            "confirm": confirm,
            "naming": self.naming,
        }


def spark_job_name(name: str) -> str:
    """The OpenLineage Spark listener's job name for an application name: snake_case, lowercase
    (**Jobs outside the folder**)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", spaced).strip("_").lower()


def job_sensor_kind(link: LinkFact) -> JobSensorKind | None:
    return JOB_SENSORS.get(link.job.sensor) if link.job is not None else None


def job_links(work: Work, links: Iterable[LinkFact]) -> tuple[LineageOffer, ...]:
    """**Jobs started in the DAG** to **The node's name** for every job sensor of ``links``: notes, findings and the
    offers, in the links' order."""
    offers = []
    for link in links:
        kind = job_sensor_kind(link)
        if link.job is None or kind is None:
            continue
        offer = _job_link(work, link, link.job, kind)
        if offer is not None:
            offers.append(offer)
    return tuple(offers)


def _job_link(work: Work, link: LinkFact, job: JobFact, kind: JobSensorKind) -> LineageOffer | None:
    named = _named(job)
    own = next((a for a in job.arguments if _started_here(a, kind)), None)
    if own is not None:
        work.add(
            FindingKind.NOTE,
            link,
            f"{named} polls the {kind.system} run that task {own.task} of its own DAG ({own.task_class}) starts "
            f"({own.name} is its output): the DAG's own work, no dependency on another DAG or job; keep the sensor",
        )
        return None
    offer = _offer(work, link, job, kind)
    where = (
        "" if job.module.startswith(kind.provider) else f"; the class is of module {job.module}, not {kind.provider}"
    )
    job_text = f"{offer.job!r} (a guess)" if offer.job_guessed else "unknown (fill it in)"
    grid = f"{link.dag_id}'s grid" if offer.cron is not None else f"none ({link.dag_id} has no grid: add the job's)"
    work.add(
        FindingKind.INEXPRESSIBLE,
        link,
        f"{named} polls {kind.system} {offer.polls}: no edge written; offered, to confirm: node {offer.node} "
        f"for OpenLineage job {job_text} in a namespace yours to fill in, edge {offer.dependent} <- {offer.node} in "
        f'place of the sensor; add to "openlineage" {json.dumps(offer.entry(), ensure_ascii=False)}, declare the '
        f'instance "{offer.instance}"; partitions: {grid}; job names: {kind.naming}{where}',
    )
    return offer


def _named(job: JobFact) -> str:
    return job.sensor if job.task_class == job.sensor else f"{job.task_class} (a {job.sensor})"


def _started_here(argument: JobArgument, kind: JobSensorKind) -> bool:
    """**Jobs started in the DAG**: the argument is the output of a task of this DAG that starts runs of this system."""
    return (
        argument.kind is ValueKind.XCOM
        and argument.task_class is not None
        and argument.task_class.startswith(kind.starters)
    )


def _offer(work: Work, link: LinkFact, job: JobFact, kind: JobSensorKind) -> LineageOffer:
    """**Jobs outside the folder**, **Literals and templates** and **The node's name**."""
    name = next((a for n in kind.name_args if (a := job.argument(n)) is not None), None)
    guess = None
    if name is not None and name.kind is ValueKind.LITERAL:
        guess = (spark_job_name(name.text) if kind.spark else name.text) or None  # "" (or "---") names nothing
    dag = guess if guess is not None and NAME_RE.match(guess) else link.task_id
    choice = work.grids.get(link.dag_id)
    grid = choice.grid if choice is not None else None
    return LineageOffer(
        origin=link.origin,
        subject=f"{link.dag_id}.{link.task_id}",
        dependent=work.ref(link.dag_id),
        sensor=job.sensor,
        system=kind.system,
        namespace=NAMESPACE_PLACEHOLDER,
        job=guess if guess is not None else JOB_PLACEHOLDER,
        job_guessed=guess is not None,
        instance=kind.instance,
        dag=dag,
        cron=(choice.written_cron or grid.cron) if choice is not None and grid is not None else None,
        timezone=grid.timezone if grid is not None else None,
        naming=kind.naming,
        polls=_polls(kind, job),
    )


def _polls(kind: JobSensorKind, job: JobFact) -> str:
    """What the sensor's arguments say it polls (**Literals and templates**), each argument by its name:
    ``job_name 'orders'``, ``run_id '{{ dag_run.conf["run"] }}' (a template: known only when it runs)``."""
    parts = []
    for name in kind.arguments:
        argument = job.argument(name)
        if argument is None or argument.kind is ValueKind.MISSING:
            continue
        if argument.kind is ValueKind.LITERAL:
            one = " (a literal: one run, not the job)" if name == kind.one_run else ""
            parts.append(f"{name} {argument.text!r}{one}")
        elif argument.kind is ValueKind.TEMPLATE:
            parts.append(f"{name} {argument.text!r} (a template)")
        else:
            source = f"task {argument.task}'s output" if argument.task else f"another task's output {argument.text!r}"
            by = (
                f" (a {argument.task_class}, not a {kind.system} operator: if it starts the run, this is the DAG's "
                f"own work)"
                if argument.task_class
                else ""
            )
            parts.append(f"{name} from {source}{by}")
    return ", ".join(parts) if parts else "a job its arguments do not name"
