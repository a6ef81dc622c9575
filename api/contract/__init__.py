"""What the API and the workers both need: signed download URLs and the view of an ended task.

Pure: stdlib, pydantic and our Temporal payload models only, never FastAPI or a Temporal client,
so `activities` can import it without pulling in the HTTP layer.
"""
