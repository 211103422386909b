"""import-dags on sensors that poll another system's job (issue 36): an OpenLineage node offered, never an edge guessed.

Most cases are the pure translation (facts built by hand as the adapter builds them); the adapter's reading of a
task's arguments is checked on plain objects (it duck-types, so no provider is needed), and one test runs the whole
command on ``tests/import_dags/estate_lineage/`` (stand-ins with the providers' class names, under ``plugins/``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from coordinator.airflow_import import wire
from coordinator.airflow_import.job_sensors import job_fact
from coordinator.airflow_import.loader import LoadedFolder
from coordinator.core.importer.facts import (
    DagFact,
    FindingKind,
    JobArgument,
    JobFact,
    LinkFact,
    LinkKind,
    Origin,
    ScheduleFact,
    ScheduleKind,
    ValueKind,
)
from coordinator.core.importer.jobs import (
    JOB_PLACEHOLDER,
    JOB_SENSORS,
    NAMESPACE_PLACEHOLDER,
    LineageOffer,
    spark_job_name,
)
from coordinator.core.importer.report import counts
from coordinator.core.importer.translate import ImportResult, dump, translate
from coordinator.core.lineage.mapping import LineageJob
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from tests.test_import_dags import run_import

ESTATE = Path(__file__).parent / "import_dags" / "estate_lineage" / "dags"


def dag(dag_id: str = "orders_report", cron: str | None = "0 5 * * *", written: str = "") -> DagFact:
    """A DAG as the adapter reads it: ``cron`` resolved by Airflow, ``written`` as the file wrote it (a preset)."""
    kind = ScheduleKind.CRON if cron else ScheduleKind.NONE
    schedule = ScheduleFact(kind, "CronTriggerTimetable", written or cron or "", cron, "UTC" if cron else None)
    return DagFact(dag_id, Origin(f"{dag_id}.py", 3), schedule, task_ids=("wait", "start"))


def job_link(
    sensor: str, *arguments: JobArgument, dag_id: str = "orders_report", task_class: str | None = None, module: str = ""
) -> LinkFact:
    kind = JOB_SENSORS[sensor]
    job = JobFact(sensor, module or f"{kind.provider}.sensors.x", task_class or sensor, arguments)
    return LinkFact(LinkKind.JOB, dag_id, "wait", Origin(f"{dag_id}.py", 9), "", job=job)


def literal(name: str, value: str) -> JobArgument:
    return JobArgument(name, ValueKind.LITERAL, value)


def one(result: ImportResult) -> LineageOffer:
    (offer,) = result.offers
    return offer


def message(result: ImportResult, kind: FindingKind = FindingKind.INEXPRESSIBLE) -> str:
    (finding,) = result.of(kind)
    return finding.message


# ----- which sensors, and what becomes of them -----


@pytest.mark.parametrize("sensor", sorted(JOB_SENSORS), ids=sorted(JOB_SENSORS))
def test_every_recognised_sensor_is_reported_with_an_offer_and_writes_no_edge(sensor: str) -> None:
    """Each provider class of the table, with its arguments given as literals, is one 'cannot express' finding with
    an offer at its file:line, and the written document holds no edge and no "openlineage" section."""
    kind = JOB_SENSORS[sensor]
    result = translate([dag()], [job_link(sensor, *(literal(a, f"x_{a}") for a in kind.arguments))])
    offer = one(result)
    assert (offer.sensor, offer.system, offer.instance, offer.origin) == (sensor, kind.system, kind.instance,
                                                                          Origin("orders_report.py", 9))  # fmt: skip
    assert f"{sensor} polls {kind.system}" in message(result) and "no edge written" in message(result)
    assert "upstreams" not in result.document["dags"]["orders_report"] and "openlineage" not in result.document
    assert result.edge_count == 0


def test_the_recognised_classes_are_the_providers_names() -> None:
    """The table names the classes the providers ship (dbt Cloud, Databricks, Glue, EMR, Spark on Kubernetes,
    Dataproc, Dataflow) and leaves out the SQL sensors that poll no job."""
    assert set(JOB_SENSORS) == {
        "DbtCloudJobRunSensor", "DatabricksJobRunSensor", "GlueJobSensor", "EmrServerlessJobSensor",
        "EmrJobFlowSensor", "EmrStepSensor", "EmrContainerSensor", "SparkKubernetesSensor", "DataprocJobSensor",
        "DataflowJobStatusSensor",
    }  # fmt: skip
    assert "DatabricksSqlSensor" not in JOB_SENSORS


@pytest.mark.parametrize(
    ("sensor", "argument", "name", "job"),
    [
        ("GlueJobSensor", "job_name", "Orders ETL", "orders_etl"),
        ("SparkKubernetesSensor", "application_name", "ordersEnrich", "orders_enrich"),
        ("SparkKubernetesSensor", "application_name", "spark-pi", "spark_pi"),
    ],
    ids=["glue-spaces", "spark-camel-case", "spark-dashes"],
)
def test_a_literal_job_name_gives_a_guessed_job_and_node(sensor: str, argument: str, name: str, job: str) -> None:
    """A literal job or application name becomes the Spark listener's snake_case job name, marked a guess, and the
    node's dag id; the edge from the sensing DAG names that node."""
    result = translate([dag()], [job_link(sensor, literal(argument, name))])
    offer = one(result)
    assert (offer.job, offer.job_guessed, offer.dag) == (job, True, job)
    assert f"OpenLineage job {job!r} (a guess)" in message(result)
    assert offer.to_json()["upstreams"] == {"orders_report": [{"dag": f"{offer.instance}/{job}"}]}


def test_a_templated_job_name_is_reported_as_a_template_and_the_job_left_to_fill_in() -> None:
    """A Jinja job name is known only when the task runs: the offer's job is the placeholder and the node is named
    after the sensor's task."""
    template = "{{ var.value.glue_job }}"
    result = translate([dag()], [job_link("GlueJobSensor", JobArgument("job_name", ValueKind.TEMPLATE, template))])
    offer = one(result)
    assert (offer.job, offer.job_guessed, offer.dag) == (JOB_PLACEHOLDER, False, "wait")
    assert f"job_name {template!r} (a template)" in message(result) and "job unknown (fill it in)" in message(result)


def test_a_literal_that_names_no_job_is_no_guess() -> None:
    """An application name without a letter or digit has no snake_case job name: the job is left to fill in."""
    offer = one(translate([dag()], [job_link("SparkKubernetesSensor", literal("application_name", "---"))]))
    assert (offer.job, offer.job_guessed, offer.dag) == (JOB_PLACEHOLDER, False, "wait")


def test_a_run_id_sensor_says_a_literal_run_is_one_run_and_gives_the_integrations_naming() -> None:
    """dbt Cloud's sensor names a run, never the job: a literal run id is said to be one run, the job is left to
    fill in, and the message quotes how dbt-ol names its jobs."""
    result = translate([dag()], [job_link("DbtCloudJobRunSensor", literal("run_id", "70403103"))])
    assert one(result).job == JOB_PLACEHOLDER
    text = message(result)
    assert "run_id '70403103' (a literal: one run, not the job)" in text
    assert "{project}.{schema}.{project}.{model}.build.run" in text and "dbt-run-{project}" in text


def test_a_run_the_dag_starts_itself_is_its_own_work_noted_and_not_offered() -> None:
    """A run id that is the output of a GlueJobOperator of the same DAG is the DAG's own work: a note, no offer."""
    run = JobArgument("run_id", ValueKind.XCOM, "start.output", "start", "GlueJobOperator")
    result = translate([dag()], [job_link("GlueJobSensor", literal("job_name", "nightly"), run)])
    assert result.offers == () and not result.of(FindingKind.INEXPRESSIBLE)
    assert "task start of its own DAG (GlueJobOperator)" in message(result, FindingKind.NOTE)


def test_a_run_from_another_kind_of_task_is_offered_saying_where_it_came_from() -> None:
    """A run id pulled from a PythonOperator (which may look a run up rather than start one) is offered, naming the
    task, its class, and that it is the DAG's own work if that task starts the run."""
    run = JobArgument("run_id", ValueKind.XCOM, "{{ ti.xcom_pull('find') }}", "find", "PythonOperator")
    result = translate([dag()], [job_link("DbtCloudJobRunSensor", run)])
    assert one(result)
    assert "run_id from task find's output (a PythonOperator, not a dbt Cloud operator" in message(result)


# ----- the offer itself -----


def test_the_offered_entry_is_a_lineage_job_that_maps_its_job_to_the_node_the_edge_names() -> None:
    """Read as the mapping's LineageJob, the offered "openlineage" entry maps the guessed job, in the namespace
    the user fills in, to exactly the node the offered edge waits for."""
    offer = one(translate([dag()], [job_link("GlueJobSensor", literal("job_name", "Orders ETL"))]))
    entry = offer.entry()
    assert entry["namespace"] == NAMESPACE_PLACEHOLDER
    mapping = LineageJob(namespace="glue_prod", job=entry["job"], instance=entry["instance"], dag=entry["dag"])
    assert mapping.matches("glue_prod", "orders_etl")
    assert mapping.node_for("orders_etl") == NodeId.parse(offer.to_json()["upstreams"]["orders_report"][0]["dag"])


def test_the_offers_partitions_are_the_sensing_dags_grid_or_none_said_so() -> None:
    """The node's partitions are the sensing DAG's cron and zone, to confirm; a DAG without a grid gets none and
    the offer says a grid must be added."""
    gridded = one(
        translate([dag(cron="0 0 * * *", written="@daily")], [job_link("GlueJobSensor", literal("job_name", "a"))])
    )
    assert gridded.entry()["partitions"] == {"cron": "@daily", "timezone": "UTC"}
    result = translate([dag(cron=None)], [job_link("GlueJobSensor", literal("job_name", "a"))])
    assert "partitions" not in one(result).entry()
    assert "partitions (the sensing DAG has no grid)" in one(result).to_json()["confirm"]
    assert "orders_report has no grid: add the job's" in message(result)


def test_the_offered_instance_and_edge_added_to_the_written_document_validate() -> None:
    """Declaring the offered instance and adding the offered edge to the document the command writes gives a file
    the loader accepts, with the sensing DAG waiting for the job's node."""
    result = translate([dag()], [job_link("SparkKubernetesSensor", literal("application_name", "ordersEnrich"))])
    offer = one(result).to_json()
    document = json.loads(dump(result.document))
    document["instances"] = offer["instances"]
    for key, upstreams in offer["upstreams"].items():
        document["dags"][key]["upstreams"] = upstreams
    graph = parse_spec(dump(document), "offer")
    assert graph.edge_count == 1 and NodeId("spark", "orders_enrich") in graph.dags


def test_with_an_instance_the_dependent_is_qualified() -> None:
    """Under --instance the offered edge belongs to the qualified DAG key (team/orders_report)."""
    result = translate([dag()], [job_link("GlueJobSensor", literal("job_name", "a"))], "team")
    assert one(result).to_json()["upstreams"] == {"team/orders_report": [{"dag": "glue/a"}]}


def test_a_subclass_and_a_class_from_elsewhere_are_named_as_such() -> None:
    """A company subclass is named with the provider class it extends; a class of that name from another module
    is recognised, the message saying which module it came from."""
    sub = translate([dag()], [job_link("GlueJobSensor", literal("job_name", "a"), task_class="MyGlueSensor")])
    assert message(sub).startswith("MyGlueSensor (a GlueJobSensor) polls AWS Glue")
    elsewhere = translate([dag()], [job_link("GlueJobSensor", literal("job_name", "a"), module="plugins.sensors")])
    assert message(elsewhere).endswith("; the class is of module plugins.sensors, not airflow.providers.amazon")


@pytest.mark.parametrize(
    ("name", "job"),
    [
        ("ordersETL", "orders_etl"),
        ("Daily Sales v2", "daily_sales_v2"),
        ("a.b-c", "a_b_c"),
        ("already_ok", "already_ok"),
    ],
    ids=["camel-acronym", "spaces", "punctuation", "snake"],
)
def test_spark_job_names_are_snake_case(name: str, job: str) -> None:
    """The Spark listener's naming: camelCase split, anything not a letter or digit an underscore, lowercase."""
    assert spark_job_name(name) == job


def test_the_summary_counts_job_sensors_apart_and_only_when_there_are_some() -> None:
    """Job sensors are counted in the summary's own words and JSON field; a folder without any keeps the line."""
    link = job_link("GlueJobSensor", literal("job_name", "a"))
    with_jobs = counts(1, 0, 1, [link], 0, [])
    assert with_jobs.job_sensors == 1 and "(1 sensor on other systems' jobs: no edges)" in str(with_jobs)
    assert "other systems" not in str(counts(1, 0, 1, [], 0, []))


def test_a_job_link_travels_through_the_loaders_json_answer() -> None:
    """The estate's interpreter sends a job sensor (its class, module and arguments of every kind) and the CLI reads
    back the same fact."""
    arguments = (
        literal("job_name", "nightly"),
        JobArgument("run_id", ValueKind.XCOM, "start.output", "start", "GlueJobOperator"),
    )
    link = job_link("GlueJobSensor", *arguments, task_class="MyGlueSensor")
    loaded = LoadedFolder(dags=(dag(),), links=(link,), failed=(), airflow_version="3.3.2")
    assert wire.loads(wire.dumps(loaded)) == loaded


# ----- the adapter's reading of a task, on plain objects -----


class GlueJobSensor:
    """A class with the provider's name; the adapter never imports the provider."""

    def __init__(self, job_name: Any, run_id: Any) -> None:
        self.job_name, self.run_id = job_name, run_id


class MyGlueSensor(GlueJobSensor):
    pass


class GlueJobOperator:
    task_id = "start"


@dataclass
class PlainXComArg:
    operator: Any


@dataclass
class Dag:
    task_dict: dict[str, Any] = field(default_factory=lambda: {"start": GlueJobOperator()})


@pytest.mark.parametrize(
    ("value", "kind", "task", "task_class"),
    [
        ("nightly", ValueKind.LITERAL, None, None),
        ("{{ dag_run.conf['run'] }}", ValueKind.TEMPLATE, None, None),
        (PlainXComArg(GlueJobOperator()), ValueKind.XCOM, "start", "GlueJobOperator"),
        ("{{ ti.xcom_pull(task_ids='start') }}", ValueKind.XCOM, "start", "GlueJobOperator"),
        ("{{ task_instance.xcom_pull('start', key='return_value') }}", ValueKind.XCOM, "start", "GlueJobOperator"),
        ("{{ ti.xcom_pull(key='id', task_ids=['elsewhere']) }}", ValueKind.XCOM, "elsewhere", None),
        (None, ValueKind.MISSING, None, None),
    ],
    ids=["literal", "template", "xcom-arg", "pull-keyword", "pull-positional", "pull-unknown-task", "missing"],
)
def test_the_adapter_reads_each_argument_as_written(
    value: Any, kind: ValueKind, task: str | None, task_class: str | None
) -> None:
    """A literal, a template, another task's output (an XComArg or a template pulling it, with that task's class
    when it is in the DAG) and a missing value are told apart, on a subclass too, without rendering anything."""
    fact = job_fact(MyGlueSensor("nightly", value), Dag())
    assert fact is not None and (fact.sensor, fact.task_class) == ("GlueJobSensor", "MyGlueSensor")
    run = fact.argument("run_id")
    assert run is not None and (run.kind, run.task, run.task_class) == (kind, task, task_class)


def test_a_task_of_no_known_class_is_no_job_sensor() -> None:
    """A task whose classes are not in the table is not read (it stays what it was: no link)."""
    assert job_fact(GlueJobOperator(), Dag()) is None


# ----- the command, on a folder Airflow loads -----


@pytest.mark.airflow
def test_the_command_offers_nodes_for_a_folders_job_sensors(tmp_path: Path) -> None:
    """Airflow loads a folder with Glue, Spark on Kubernetes and dbt Cloud sensors: each polled job is offered at its
    file:line (text and JSON report), the DAG's own Glue run is noted, and the written file has no edge."""
    output, report = tmp_path / "deps.json", tmp_path / "report.json"
    done = run_import(Path(sys.executable), ESTATE, output, tmp_path / "home", "--report", str(report))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(4 sensors on other systems' jobs: no edges); 3 cannot express" in done.stderr
    assert "jobs.py:12: orders_report.wait_glue: GlueJobSensor polls AWS Glue job_name 'Orders ETL'" in done.stderr
    assert "node spark/orders_enrich for OpenLineage job 'orders_enrich' (a guess)" in done.stderr
    assert "jobs.py:21: own_glue.wait_etl: GlueJobSensor polls the AWS Glue run that task start_etl" in done.stderr
    document = json.loads(report.read_text(encoding="utf-8"))
    findings = {f["subject"]: f for f in document["findings"]}
    offered = {offer["subject"]: offer for offer in document["openlineage_offers"]}
    assert set(offered) == {"marts.wait_dbt", "orders_report.wait_glue", "orders_report.wait_spark"}
    assert offered["orders_report.wait_glue"]["sensor"] == "GlueJobSensor"
    assert (findings["marts.wait_dbt"]["line"], findings["marts.wait_dbt"]["kind"]) == (17, "cannot express")
    assert (
        '"job": "orders_etl", "instance": "glue", "dag": "orders_etl"' in findings["orders_report.wait_glue"]["message"]
    )
    written = json.loads(output.read_text(encoding="utf-8"))
    assert all("upstreams" not in entry for entry in written["dags"].values()) and "openlineage" not in written
