"""Helpers the test suites (and the benches) share; fixtures stay in the conftest.py files."""
