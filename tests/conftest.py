"""Shared fixtures: the ComfyUI emulator and the Temporal dev server live in their own plugin modules."""

pytest_plugins = ["tests.fixtures_emulator", "tests.fixtures_temporal"]
