"""The OpenLineage receiver (semantics rule 18): a process of its own that writes OpenLineage run events as run states."""
