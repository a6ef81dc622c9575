"""The S3 store's region comes from the standard variables, AWS_REGION included (botocore itself
reads only AWS_DEFAULT_REGION and the config file)."""

from __future__ import annotations

import pytest

from activities.io.s3_store import _s3_client


def test_aws_region_sets_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert _s3_client().meta.region_name == "eu-west-3"


def test_aws_default_region_wins_over_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert _s3_client().meta.region_name == "us-west-2"
