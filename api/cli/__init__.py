"""The `comfy-temporal` console commands: serving (api, dev), setup, the HTTP client commands."""
