"""Driving one ComfyUI: HTTP client, the prompt-following state machine, output files, typed
protocol messages, events and errors, process supervisor."""
