"""Typed dependencies of the routes: settings, Temporal client, manifests, output store, public
base URL, and the access checks (API key, signed download URL)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from activities.generation.admission import PoolAdmission
from activities.io.output_store import OutputStore
from api.api_keys import ApiKeys, Unauthorized, presented_keys
from api.async_manifests import AsyncManifestRegistry
from api.contract.signed_urls import UrlSigner
from api.errors import TemporalUnavailable
from api.page_tokens import PageTokens
from api.settings import Settings

# The getters are `async def`: FastAPI runs a plain `def` dependency in a thread pool, a hop per
# dependency and request that cost more than the handler of POST /generate itself (py-spy).


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_temporal(request: Request) -> Client:
    client: Client | None = getattr(request.app.state, "temporal", None)
    if client is None:
        raise TemporalUnavailable("not connected to Temporal yet")
    return client


async def get_manifests(request: Request) -> AsyncManifestRegistry:
    manifests: AsyncManifestRegistry = request.app.state.manifests
    return manifests


async def get_base_url(request: Request) -> str:
    """Where clients reach this API: the configured public URL, else the URL of this request."""
    settings: Settings = request.app.state.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def get_admission(request: Request) -> PoolAdmission | None:
    """The pools' admission control; None while the API is not connected to Temporal yet."""
    admission: PoolAdmission | None = getattr(request.app.state, "admission", None)
    return admission


SettingsDep = Annotated[Settings, Depends(get_settings)]
AdmissionDep = Annotated[PoolAdmission | None, Depends(get_admission)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
ManifestsDep = Annotated[AsyncManifestRegistry, Depends(get_manifests)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]


async def get_output_store(request: Request) -> OutputStore:
    store: OutputStore = request.app.state.output_store
    return store


OutputStoreDep = Annotated[OutputStore, Depends(get_output_store)]


async def get_url_signer(request: Request) -> UrlSigner:
    signer: UrlSigner = request.app.state.url_signer
    return signer


UrlSignerDep = Annotated[UrlSigner, Depends(get_url_signer)]


async def get_page_tokens(request: Request) -> PageTokens:
    tokens: PageTokens = request.app.state.page_tokens
    return tokens


PageTokensDep = Annotated[PageTokens, Depends(get_page_tokens)]

# Declared as security schemes so /docs offers an "Authorize" button; checked by hand below so
# that no keys configured means no check, and the 401 has our wording.
_bearer = HTTPBearer(
    auto_error=False, description="An API key as a bearer token (when keys are configured)."
)
_x_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (when keys are configured)."
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
XApiKeyDep = Annotated[str | None, Depends(_x_api_key)]


def _api_keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


def _presented(request: Request) -> list[str]:
    return presented_keys(request.headers.get("authorization"), request.headers.get("x-api-key"))


def has_valid_api_key(request: Request) -> bool:
    return _api_keys(request).matches_any(_presented(request))


async def require_api_key(request: Request, bearer: BearerDep, x_api_key: XApiKeyDep) -> None:
    """401 unless keys are off or the request carries one of them."""
    keys = _api_keys(request)
    if not keys.enabled:
        return
    presented = _presented(request)
    if not presented:
        raise Unauthorized(
            "this API needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    if not keys.matches_any(presented):
        raise Unauthorized(
            "the API key is not valid (sent as 'Authorization: Bearer' or 'X-API-Key')"
        )


async def require_download_access(
    request: Request,
    task_id: str,
    filename: str,
    bearer: BearerDep,
    x_api_key: XApiKeyDep,
    expires: Annotated[
        str | None, Query(description="Unix time the signed URL is valid until.")
    ] = None,
    sig: Annotated[str | None, Query(description="HMAC-SHA256 signature of the URL.")] = None,
) -> None:
    """A valid API key, else a valid unexpired signature, else (keys off, no signature) open."""
    if has_valid_api_key(request):
        return
    if expires is not None or sig is not None:
        (await get_url_signer(request)).verify(task_id, filename, expires, sig)
        return
    await require_api_key(request, bearer, x_api_key)
