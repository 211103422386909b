"""The OpenLineage receiver (semantics `lineage-upstreams`): its own process, writing OpenLineage run events as run
states."""
