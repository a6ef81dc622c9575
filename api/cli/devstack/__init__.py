"""What `comfy-temporal dev` supervises: the Temporal dev server, children, the uvicorn runner."""
