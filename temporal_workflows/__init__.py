"""Orchestration: workflow definitions and the payloads they exchange (deterministic code only)."""
