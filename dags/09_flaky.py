"""09_flaky: a DAG that fails on demand, for the failure-handler scenario (see 08_on_failure). NOT in the
top-level dependencies.json: the end-to-end tests use their own dependencies file.

It fails unless told otherwise: trigger conf {"fail": false}, or the Airflow Variable ``09_flaky_fail`` set to
"false" (a Variable, unlike conf, can be changed before a clear, so the same run can fail and then succeed).
Started only by hand or by the coordinator (schedule=None).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Variable
from example_pipeline import example_dag


def fail_on_demand(partition: str, conf: dict[str, Any]) -> None:
    """Fail unless conf says {"fail": false} or the Variable 09_flaky_fail is "false"."""
    if "fail" in conf:
        should_fail = bool(conf["fail"])
    else:
        should_fail = str(Variable.get("09_flaky_fail", default="true")).lower() != "false"
    if should_fail:
        raise RuntimeError(f"09_flaky fails on demand for partition {partition}")


dag = example_dag("09_flaky", "flaky_step", __doc__, tags=("coordinator-test",), before_work=fail_on_demand)
