"""A package inside the DAGs folder, imported by a DAG file as Airflow allows (the DAGs folder is on sys.path)."""

SCHEDULE = "0 2 * * *"
