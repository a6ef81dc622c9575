"""Async client for one ComfyUI server: its HTTP endpoints (httpx, one keep-alive pool), ComfyUI's
error answers turned into typed exceptions once (errors.py), and `run_prompt`, the public entry
to a prompt's whole life (prompt_run.py). Protocol facts: docs/comfyui-protocol.md (cited as §n).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from activities.comfyui.errors import ComfyUIError, ComfyUIUnavailable, ComfyUIValidationError
from activities.comfyui.prompt_run import cancel_prompt, run_prompt
from activities.comfyui.protocol import (
    Graph,
    HistoryEntry,
    Job,
    NodeInfo,
    PromptAccepted,
    PromptRejected,
    QueueState,
    SystemStats,
    Uploaded,
)
from activities.io.media_types import content_type_for

_DOWNLOAD_CHUNK = 1 << 20


class ComfyUIClient:
    """Client of one ComfyUI server. One httpx client with keep-alive is shared by every call;
    each run_prompt opens its own WebSocket, so several may run concurrently."""

    def __init__(
        self, base_url: str, *, timeout: float = 30.0, unavailable_after: float = 3.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        scheme, _, rest = self.base_url.partition("://")
        self.ws_url = ("wss" if scheme == "https" else "ws") + "://" + rest + "/ws"
        self.timeout = timeout
        # Tunables; the defaults suit a local ComfyUI.
        self.ping_interval: float | None = 5.0  # ComfyUI sends no pings; we ping (§3.1)
        self.ping_timeout: float | None = 10.0
        self.connect_timeout = 5.0
        # Refused this long while a prompt runs -> ComfyUIUnavailable ("dies mid-run: raise within
        # seconds"); long enough to ride out a WebSocket hiccup.
        self.unavailable_after = unavailable_after
        self.poll_interval = 0.25  # history polling after a reconnect
        self.silent_poll_after = 2.0  # live socket silent this long -> check history too
        self.cancel_timeout = 10.0
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            trust_env=False,  # always loopback or a direct address; never via a proxy
        )

    async def __aenter__(self) -> ComfyUIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -------------------------------------------------------------- HTTP plumbing
    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
            httpx.PoolTimeout,
        ) as exc:
            raise ComfyUIUnavailable(f"ComfyUI at {self.base_url} unreachable: {exc!r}") from exc
        except httpx.TimeoutException as exc:
            raise ComfyUIUnavailable(
                f"ComfyUI at {self.base_url} timed out on {method} {path}"
            ) from exc

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise ComfyUIError(
                f"{method} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return response.json()

    async def _action(self, path: str, body: dict[str, Any]) -> None:
        # Action endpoints answer 200 with an empty body (§2.0).
        response = await self._request("POST", path, json=body)
        if response.status_code != 200:
            raise ComfyUIError(
                f"POST {path} answered {response.status_code}: {response.text[:500]}"
            )

    # -------------------------------------------------------------- simple endpoints
    async def ready(self) -> bool:
        """True when GET /queue answers: ComfyUI binds its port only when fully started (§1.5)."""
        try:
            response = await self._http.get("/queue", timeout=min(self.timeout, 2.0))
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def queue(self, *, timeout: float | None = None) -> QueueState:
        """GET /queue; `timeout` overrides the client's for callers that must not wait long."""
        kwargs = {} if timeout is None else {"timeout": timeout}
        queue: QueueState = await self._json("GET", "/queue", **kwargs)
        return queue

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        body = await self._json("GET", f"/history/{prompt_id}")
        # Unknown or unfinished ids answer {} with 200 (§2.5).
        entry: HistoryEntry | None = body.get(prompt_id) if isinstance(body, dict) else None
        return entry

    async def job(self, prompt_id: str) -> Job | None:
        response = await self._request("GET", f"/api/jobs/{prompt_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ComfyUIError(f"GET /api/jobs/{prompt_id} answered {response.status_code}")
        job: Job = response.json()
        return job

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Targeted when prompt_id is given: ComfyUI then interrupts only if that prompt is the
        running one (§2.4). Without it, whatever runs is interrupted."""
        await self._action("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    async def delete_queued(self, prompt_ids: Sequence[str]) -> None:
        await self._action("/queue", {"delete": list(prompt_ids)})

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        await self._action("/free", {"unload_models": unload_models, "free_memory": free_memory})

    async def system_stats(self) -> SystemStats:
        stats: SystemStats = await self._json("GET", "/system_stats")
        return stats

    async def object_info(self, class_type: str | None = None) -> dict[str, NodeInfo]:
        """{class: info}; one class, or {} for an unknown one, when `class_type` is given (§2.8)."""
        info: dict[str, NodeInfo] = await self._json(
            "GET", f"/object_info/{class_type}" if class_type else "/object_info"
        )
        return info

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", overwrite: bool = False
    ) -> Uploaded:
        """Upload into ComfyUI's input dir. Returns {"name", "subfolder", "type"}: use `name`,
        which differs from `filename` when different bytes already had that name (§2.7)."""
        response = await self._request(
            "POST",
            "/upload/image",
            files={"image": (filename, data, content_type_for(filename))},
            data={
                "type": "input",
                "subfolder": subfolder,
                "overwrite": "true" if overwrite else "false",
            },
        )
        if response.status_code != 200:
            raise ComfyUIError(
                f"upload of {filename!r} answered {response.status_code}: {response.text[:200]}"
            )
        uploaded: Uploaded = response.json()
        return uploaded

    async def download(self, filename: str, subfolder: str, type: str, dest: Path) -> int:
        """Stream GET /view into dest chunk by chunk; a large video never sits in memory."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        try:
            async with self._http.stream("GET", "/view", params=params) as response:
                if response.status_code != 200:
                    raise ComfyUIError(
                        f"GET /view {type}/{subfolder}/{filename} answered {response.status_code}"
                    )
                size = 0
                with open(dest, "wb") as out:
                    async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK):
                        out.write(chunk)
                        size += len(chunk)
                return size
        except (
            httpx.ConnectError,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.TimeoutException,
        ) as exc:
            raise ComfyUIUnavailable(f"download of {filename!r} failed: {exc!r}") from exc

    # -------------------------------------------------------------- submission and cancel
    async def submit(
        self,
        graph: Graph,
        *,
        prompt_id: str,
        client_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
    ) -> PromptAccepted:
        """POST /prompt with our own ids. Raises ComfyUIValidationError on 400, and also on a
        200 whose node_errors is not empty (ComfyUI then queued only the valid outputs, §2.1;
        that partial prompt is removed again before raising). `extra_data` is passed through,
        e.g. {"preview_method": "auto"} or {"extra_pnginfo": {...}} (§2.1, §4.10)."""
        body: dict[str, Any] = {"prompt": graph, "prompt_id": prompt_id}
        if client_id is not None:
            body["client_id"] = client_id
        if extra_data:
            body["extra_data"] = dict(extra_data)
        response = await self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            try:
                rejected: PromptRejected = response.json()
            except ValueError:
                rejected = {
                    "error": {
                        "type": "bad_request",
                        "message": response.text[:500],
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": {},
                }
            raise ComfyUIValidationError.from_response(rejected, graph)
        if response.status_code == 413:
            raise ComfyUIValidationError(
                "payload_too_large", "Prompt larger than ComfyUI's upload limit", []
            )
        if response.status_code != 200:
            raise ComfyUIError(
                f"POST /prompt answered {response.status_code}: {response.text[:500]}"
            )
        accepted: PromptAccepted = response.json()
        if accepted.get("node_errors"):
            with contextlib.suppress(ComfyUIError, TimeoutError):
                await self.cancel(prompt_id)
            raise ComfyUIValidationError.from_response(accepted, graph)
        return accepted

    async def cancel(self, prompt_id: str) -> None:
        """Delete the prompt if queued, else interrupt it if running and wait until ComfyUI
        confirms (history entry written), bounded by `cancel_timeout`."""
        await cancel_prompt(self, prompt_id)

    # -------------------------------------------------------------- the whole run
    # prompt_run.py's function, as a method: this client is its `client`.
    run_prompt = run_prompt
