"""Reading tasks from Temporal: the task view, queue statistics, output files."""
