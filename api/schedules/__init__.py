"""Recurring generations: schedule schemas and their translation to Temporal Schedules."""
