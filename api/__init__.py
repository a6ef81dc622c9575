"""HTTP front: FastAPI app, routes, request/response models, settings, and the CLI."""
