"""Fixtures that start the ComfyUI emulator as a real subprocess."""
