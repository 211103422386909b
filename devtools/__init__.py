"""Development tooling beside the package (launchers for tests, demos and benchmarks); never part of the wheel."""
