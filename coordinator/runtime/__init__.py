"""What every long-running process of the coordinator shares, whatever it serves: its settings (flags and
environment, the instances file and its auth objects), the one retry policy, the graph file read from disk and
reloaded, the Prometheus metrics, the health probes and the HTTP listener that serves them, and redaction of
secrets from what leaves the process. The watcher and the OpenLineage receiver import them from here."""
