"""Steering and watching generations: SSE events, previews, the CLI client, setup."""
