"""Free TCP ports on this machine, for the servers we start (ComfyUI, the API, test servers)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now. The caller binds it soon after; another process could take
    it in between, which only ever fails that start loudly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
