"""Everything with I/O: ComfyUI client and supervisor, generation activities, worker entry points."""
