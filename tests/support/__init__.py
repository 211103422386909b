"""Test support: fakes and worlds shared by the test suite and the benchmarks."""
