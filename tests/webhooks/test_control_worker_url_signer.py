"""A control worker running alone signs webhook download URLs with the API's key: the one in
COMFY_URL_SIGNING_KEY, else the API's <data-dir>/url-signing.key, so the API accepts them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from activities.workers.control import load_url_signer
from activities.workers.settings import ControlWorkerSettings
from api.app import create_app
from api.contract.signed_urls import DownloadForbidden, UrlSigner
from api.settings import Settings

TASK_ID = "smoke_image-20261127-101500-a1b2c3"
FILENAME = "smoke_00001_.png"


def _api_signer(app: FastAPI) -> UrlSigner:
    signer: UrlSigner = app.state.url_signer
    return signer


def test_signer_from_the_data_dir_makes_urls_the_api_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMFY_URL_SIGNING_KEY", raising=False)
    api = create_app(Settings(data_dir=tmp_path))  # creates <data-dir>/url-signing.key
    signed = load_url_signer(
        ControlWorkerSettings(data_dir=tmp_path, download_url_ttl_seconds=60)
    ).sign(TASK_ID, FILENAME)
    _api_signer(api).verify(TASK_ID, FILENAME, str(signed.expires), signed.sig)


def test_signer_from_another_data_dir_is_refused_by_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMFY_URL_SIGNING_KEY", raising=False)
    api = create_app(Settings(data_dir=tmp_path / "api"))
    signed = load_url_signer(ControlWorkerSettings(data_dir=tmp_path / "elsewhere")).sign(
        TASK_ID, FILENAME
    )
    with pytest.raises(DownloadForbidden):
        _api_signer(api).verify(TASK_ID, FILENAME, str(signed.expires), signed.sig)


def test_signing_key_from_the_environment_wins_over_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "k" * 40
    monkeypatch.setenv("COMFY_URL_SIGNING_KEY", key)
    api = create_app(Settings(data_dir=tmp_path / "api", url_signing_key=key))
    signed = load_url_signer(ControlWorkerSettings(data_dir=tmp_path / "worker")).sign(
        TASK_ID, FILENAME
    )
    _api_signer(api).verify(TASK_ID, FILENAME, str(signed.expires), signed.sig)
    assert not (tmp_path / "worker" / "url-signing.key").exists()
