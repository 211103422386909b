"""What the writers of run-state keys share: the one run-record writer (read, decide, compare-and-swap) the plugin,
the OpenLineage receiver, the audit and ``mark`` use, and the etcd role of every writer and reader, derived from
the key layout."""
