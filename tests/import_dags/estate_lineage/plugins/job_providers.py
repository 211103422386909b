"""Stand-ins for provider classes this test environment does not install (AWS, dbt Cloud, cncf.kubernetes).

Each has the provider's class name, base class and the arguments its ``__init__`` stores (the providers' own
signatures, trimmed to what matters): import-dags recognises a job sensor by class name, never by importing it.
"""

from airflow.sdk import BaseOperator, BaseSensorOperator


class _JobSensor(BaseSensorOperator):
    def poke(self, context: object) -> bool:
        raise NotImplementedError("a stand-in: it never runs")


class GlueJobSensor(_JobSensor):
    template_fields = ("job_name", "run_id")

    def __init__(self, *, job_name: str, run_id: str, aws_conn_id: str | None = "aws_default", **kwargs: object):
        super().__init__(**kwargs)
        self.job_name = job_name
        self.run_id = run_id
        self.aws_conn_id = aws_conn_id


class DbtCloudJobRunSensor(_JobSensor):
    template_fields = ("dbt_cloud_conn_id", "run_id", "account_id")

    def __init__(self, *, run_id: int | str, account_id: int | None = None, **kwargs: object):
        super().__init__(**kwargs)
        self.run_id = run_id
        self.account_id = account_id


class SparkKubernetesSensor(_JobSensor):
    template_fields = ("application_name", "namespace")

    def __init__(self, *, application_name: str, namespace: str | None = None, **kwargs: object):
        super().__init__(**kwargs)
        self.application_name = application_name
        self.namespace = namespace


class GlueJobOperator(BaseOperator):
    def __init__(self, *, job_name: str, wait_for_completion: bool = True, **kwargs: object):
        super().__init__(**kwargs)
        self.job_name = job_name
        self.wait_for_completion = wait_for_completion

    def execute(self, context: object) -> str:
        raise NotImplementedError("a stand-in: it never runs")
