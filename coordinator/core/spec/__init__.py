"""The ``dependencies.json`` contract, read into a validated :class:`~coordinator.core.graph.Graph` (pure).

One idea per module:
- ``loader``: text -> Graph (``parse_spec``), every problem collected into one ``SpecError``;
- ``declared``: what the loader reads each DAG into before references are resolved;
- ``resolve``: those declarations -> the graph's DAGs and edges, with the checks that need the whole file;
- ``source``: JSON with file, path and line for messages (duplicate keys, type names);
- ``grid``: a DAG's ``partitions`` grid and the edge object (offset, shift, member, task, condition);
- ``deadline``: a DAG's ``expected_by`` and the deadline it sets per partition;
- ``cycles``: one shortest cycle per strongly connected component, for the error message;
- ``near_misses``: warnings about a file that loads but probably is not what its author meant;
- ``schema``: the JSON Schema built from the loader's own constants;
- ``render``: the graph as text, Mermaid or dot (``coordinator graph``).

Nothing is re-exported here: callers import the module that holds the idea they use.
"""
