"""etcd-backed coordinator for DAG-to-DAG dependencies across Apache Airflow DAGs, teams and instances."""

__version__ = "0.1.0"
