"""The reports behind ``status``, ``why`` and the page: the planner's verdicts, the deadline states and the
OpenLineage jobs' states rendered as plain answers for operators (``doctor``'s checks are in
``coordinator/diagnosis``)."""
