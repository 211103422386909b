"""OpenLineage jobs as upstreams (semantics rule 18): the mapping, the events and the facts they become. Pure."""
