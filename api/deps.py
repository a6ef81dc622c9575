"""Typed dependencies of the routes: settings, Temporal client, manifests, public base URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from api.errors import TemporalUnavailable
from api.manifest_access import AsyncManifestRegistry
from api.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_temporal(request: Request) -> Client:
    client: Client | None = getattr(request.app.state, "temporal", None)
    if client is None:
        raise TemporalUnavailable("not connected to Temporal yet")
    return client


def get_manifests(request: Request) -> AsyncManifestRegistry:
    manifests: AsyncManifestRegistry = request.app.state.manifests
    return manifests


def get_base_url(request: Request) -> str:
    """Where clients reach this API: the configured public URL, else the URL of this request."""
    settings = get_settings(request)
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
ManifestsDep = Annotated[AsyncManifestRegistry, Depends(get_manifests)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]
