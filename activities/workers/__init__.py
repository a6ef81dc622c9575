"""Worker processes: the GPU worker, the control worker, their CLI, the Temporal connection."""
