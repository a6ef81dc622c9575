"""Log setup shared by every `comfy-temporal` process."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format=LOG_FORMAT)
    # httpx logs every request at INFO: each ComfyUI health check, submit and download would
    # otherwise fill the log of a busy worker. At DEBUG they are wanted.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(quiet)
