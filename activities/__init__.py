"""Everything with I/O: the ComfyUI client and supervisor, activities, worker entry points."""
