"""Helpers shared by tests (fixtures stay in conftest.py files)."""
