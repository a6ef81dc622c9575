"""Driving one ComfyUI: HTTP/WebSocket client, typed events and errors, process supervisor."""
