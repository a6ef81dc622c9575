"""Process log setup: per-request HTTP logs stay out of a worker's log unless asked for."""

from __future__ import annotations

import logging

import pytest

from activities.workers.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_http_loggers():
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_info_logging_hides_each_http_request() -> None:
    configure_logging("INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


def test_debug_logging_shows_http_requests() -> None:
    configure_logging("DEBUG")
    assert logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)
