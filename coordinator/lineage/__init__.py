"""The OpenLineage receiver (semantics rule 18): its own process, writing OpenLineage run events as run states."""
