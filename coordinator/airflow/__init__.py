"""The Airflow adapter: an async client for one Airflow instance's REST API (v2 on Airflow 3, v1 on Airflow 2).

This is the only package that imports the HTTP client (``httpx``, ``h11``).

Modules: ``client`` (:class:`AirflowClient`: requests, error mapping, the single re-login), ``transport`` (the lean
keep-alive HTTP/1.1 transport under it), ``runs`` (the values it returns and their parsing; no I/O).
"""

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.runs import (
    RUN_AFTER_MARGIN_S,
    ApiVersion,
    DagInfo,
    DagRunInfo,
    TriggerOutcome,
    TriggerResult,
    iso_utc,
    startable_run_after,
)

__all__ = [
    "RUN_AFTER_MARGIN_S",
    "AirflowClient",
    "ApiVersion",
    "DagInfo",
    "DagRunInfo",
    "TriggerOutcome",
    "TriggerResult",
    "iso_utc",
    "startable_run_after",
]
