"""The functional core: pure, synchronous, no I/O, no clock. Spec, view and planner live here."""
