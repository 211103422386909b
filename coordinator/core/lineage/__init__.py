"""OpenLineage jobs as upstreams (semantics `lineage-upstreams`): the mapping, the events and the facts they become.
Pure."""
