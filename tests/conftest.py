"""Shared fixtures: the ComfyUI emulator and the Temporal dev server, each in its plugin module."""

pytest_plugins = ["tests.fixtures_emulator", "tests.fixtures_temporal"]
