"""Scenario tests: real etcd + real watcher subprocesses + the fake Airflow HTTP server."""
