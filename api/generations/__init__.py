"""Starting a generation: idempotency keys, request inputs staged before the workflow starts."""
