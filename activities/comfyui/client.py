"""Async client for one ComfyUI server (HTTP via httpx, events via websockets).

`run_prompt` runs the whole life of a prompt: WebSocket first, submit with our own ids, follow
events to the reliable done signal, recover from dropped sockets through history, stream every
output file to disk, and turn ComfyUI's errors into typed exceptions (comfyui_errors).
Protocol facts are from docs/comfyui-protocol.md (cited as §n).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from activities.comfyui.errors import (
    ComfyUIError,
    ComfyUIExecutionError,
    ComfyUIInterrupted,
    ComfyUIStalled,
    ComfyUIUnavailable,
    ComfyUIValidationError,
)
from activities.comfyui.events import (
    BINARY_PREVIEW_IMAGE,
    BINARY_PREVIEW_IMAGE_WITH_METADATA,
    ComfyEvent,
    ConnectionLost,
    ConnectionRestored,
    NodeExecuted,
    NodeExecuting,
    NodeProgress,
    NodesCached,
    PreviewFrame,
    PromptFailed,
    PromptInterrupted,
    PromptQueued,
    PromptStarted,
    PromptSucceeded,
    decode_binary,
)
from activities.io.media_types import content_type_for

log = logging.getLogger(__name__)

_DOWNLOAD_CHUNK = 1 << 20


@dataclass
class OutputFile:
    """One output file of a prompt, downloaded into the caller's output_dir."""

    node_id: str
    filename: str  # name in output_dir
    path: Path
    size: int
    content_type: str
    comfy_filename: str
    subfolder: str
    type: str  # "output" | "temp"
    kind: str  # the UI key it came from: "images", "audio", "gifs", "video", ...


@dataclass
class PromptResult:
    prompt_id: str
    outputs: list[OutputFile]
    cached: bool
    started_ms: int | None  # ComfyUI's execution_start timestamp
    finished_ms: int | None  # ComfyUI's execution_success timestamp

    @property
    def execution_seconds(self) -> float | None:
        if self.started_ms is None or self.finished_ms is None:
            return None
        return (self.finished_ms - self.started_ms) / 1000.0


@dataclass
class _Outcome:
    """What ComfyUI reported for a finished prompt, from live messages or from history."""

    status: str  # "success" | "error" | "interrupted"
    outputs: dict[str, dict] = field(default_factory=dict)
    started_ms: int | None = None
    finished_ms: int | None = None
    cached_nodes: list[str] = field(default_factory=list)
    error: dict | None = None
    interrupted: dict | None = None


def outcome_from_history(entry: dict) -> _Outcome:
    """Read a `/history/{id}` entry (comfyui-protocol.md §2.5)."""
    status = entry.get("status") or {}
    messages = {name: data for name, data in status.get("messages") or []}
    outcome = _Outcome(status="success", outputs=dict(entry.get("outputs") or {}))
    if "execution_start" in messages:
        outcome.started_ms = messages["execution_start"].get("timestamp")
    if "execution_cached" in messages:
        outcome.cached_nodes = [str(n) for n in messages["execution_cached"].get("nodes") or []]
    if "execution_success" in messages:
        outcome.finished_ms = messages["execution_success"].get("timestamp")
    if "execution_error" in messages:
        outcome.status = "error"
        outcome.error = messages["execution_error"]
    elif "execution_interrupted" in messages:
        outcome.status = "interrupted"
        outcome.interrupted = messages["execution_interrupted"]
    elif status.get("status_str") == "error":
        outcome.status = "error"
        outcome.error = {"exception_type": "Exception", "exception_message": "prompt failed"}
    return outcome


class _PromptFollower:
    """Follows one prompt over its own WebSocket (one per run_prompt, fresh client_id each
    connection), decoding events and recovering through history when the socket drops."""

    def __init__(
        self,
        client: ComfyUIClient,
        prompt_id: str,
        graph: dict,
        on_event: Callable[[ComfyEvent], None] | None,
    ) -> None:
        self.client = client
        self.prompt_id = prompt_id
        self.graph = graph
        self.on_event = on_event
        self.client_id = ""
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task | None = None
        self.done = asyncio.Event()
        self.poke = asyncio.Event()  # something changed: check history (after a reconnect)
        self.outcome: _Outcome | None = None
        self.failure: BaseException | None = None
        self.live = True  # False after a reconnect: our events go to the old client_id (§3.2)
        self.started = False
        self.submitted = False
        self.current_node: str | None = None
        self.last_message_at = time.monotonic()
        self.outputs: dict[str, dict] = {}
        self.started_ms: int | None = None
        self.finished_ms: int | None = None
        self.cached_nodes: list[str] = []
        self.error: dict | None = None
        self.interrupted: dict | None = None
        # Events can arrive before POST /prompt returns; hold them so PromptQueued comes first.
        self._held: list[ComfyEvent] | None = []

    # -------------------------------------------------------------- connection
    async def connect(self) -> None:
        self.ws = await self._open()
        self.reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def _open(self) -> ClientConnection:
        client_id = uuid.uuid4().hex
        try:
            ws = await ws_connect(
                f"{self.client.ws_url}?clientId={client_id}",
                ping_interval=self.client.ping_interval,
                ping_timeout=self.client.ping_timeout,
                open_timeout=self.client.connect_timeout,
                close_timeout=1.0,
                max_size=None,
                max_queue=1024,
                compression=None,
                proxy=None,
            )
        except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
            raise ComfyUIUnavailable(
                f"cannot open ComfyUI WebSocket at {self.client.ws_url}: {exc}"
            ) from exc
        self.client_id = client_id
        return ws

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    def emit(self, event: ComfyEvent) -> None:
        if self.on_event is None:
            return
        if self._held is not None:
            self._held.append(event)
            return
        self._deliver(event)

    def release(self, first: ComfyEvent | None) -> None:
        """Deliver `first`, then every event held back while the prompt was being submitted."""
        held, self._held = self._held or [], None
        for event in ([first] if first is not None else []) + held:
            self.emit(event)

    def _deliver(self, event: ComfyEvent) -> None:
        assert self.on_event is not None
        try:
            self.on_event(event)
        except Exception:  # a broken callback must not break the run
            log.exception("on_event callback failed for %s", type(event).__name__)

    # -------------------------------------------------------------- reading
    async def _read_forever(self) -> None:
        while not self.done.is_set():
            ws = self.ws
            reason = "closed"
            try:
                assert ws is not None
                async for message in ws:
                    self.last_message_at = time.monotonic()
                    if isinstance(message, bytes):
                        self._on_binary(message)
                    else:
                        self._on_text(message)
                    if self.done.is_set():
                        return
            except websockets.exceptions.ConnectionClosed as exc:
                reason = str(exc) or "closed"
            except OSError as exc:
                reason = str(exc)
            if self.done.is_set():
                return
            log.warning("ComfyUI WebSocket dropped while following %s: %s", self.prompt_id, reason)
            self.emit(ConnectionLost(self.prompt_id, reason))
            await self._reconnect()

    async def _reconnect(self) -> None:
        """Reconnect with a fresh client_id while polling history; give up with
        ComfyUIUnavailable once ComfyUI has refused connections for `unavailable_after` s."""
        self.live = False
        refused_since: float | None = None
        delay = 0.05
        while not self.done.is_set():
            try:
                self.ws = await self._open()
            except ComfyUIUnavailable as exc:
                now = time.monotonic()
                refused_since = refused_since or now
                if now - refused_since >= self.client.unavailable_after:
                    self._fail(
                        ComfyUIUnavailable(
                            f"ComfyUI went away while running {self.prompt_id}: {exc}"
                        )
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            self.emit(ConnectionRestored(self.prompt_id, self.client_id))
            self.poke.set()  # messages sent meanwhile are lost: look at history now
            return

    def _fail(self, exc: BaseException) -> None:
        if not self.done.is_set():
            self.failure = exc
            self.done.set()

    def _finish(self, outcome: _Outcome) -> None:
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()

    def _on_binary(self, frame: bytes) -> None:
        decoded = decode_binary(frame)
        if decoded is None or decoded.event_type not in (
            BINARY_PREVIEW_IMAGE,
            BINARY_PREVIEW_IMAGE_WITH_METADATA,
        ):
            return
        if decoded.metadata is not None and decoded.metadata.get("prompt_id") not in (
            None,
            self.prompt_id,
        ):
            return
        # Type-1 frames carry no ids; on our own client_id they belong to our prompt (§3.3).
        self.emit(
            PreviewFrame(
                self.prompt_id,
                decoded.node_id or self.current_node,
                decoded.image_type or "image/jpeg",
                decoded.data,
            )
        )

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        kind = message.get("type")
        data = message.get("data") or {}
        if kind == "status":
            if not self.live:
                self.poke.set()  # queue changed: maybe our prompt finished (§3.2 status)
            return
        if data.get("prompt_id") != self.prompt_id:
            return
        if kind == "executing":
            node = data.get("node")
            if node is None:
                # Sent after the history entry is written: the reliable done signal (§3.2, §4.9).
                self._finish(self._live_outcome())
                return
            self.current_node = str(node)
            class_type = (self.graph.get(self.current_node) or {}).get("class_type")
            self.emit(NodeExecuting(self.prompt_id, self.current_node, class_type))
        elif kind == "progress":
            node = str(data.get("node") or self.current_node or "")
            self.emit(
                NodeProgress(
                    self.prompt_id, node, float(data.get("value", 0)), float(data.get("max", 0))
                )
            )
        elif kind == "executed":
            node = str(data.get("node"))
            output = data.get("output") or {}
            merged = self.outputs.setdefault(node, {})
            for key, value in output.items():
                if isinstance(value, list) and isinstance(merged.get(key), list):
                    merged[key] = merged[key] + value
                else:
                    merged[key] = value
            self.emit(NodeExecuted(self.prompt_id, node, output))
        elif kind == "execution_start":
            self.started = True
            self.started_ms = data.get("timestamp")
            self.emit(PromptStarted(self.prompt_id, int(self.started_ms or 0)))
        elif kind == "execution_cached":
            self.cached_nodes = [str(n) for n in data.get("nodes") or []]
            self.emit(NodesCached(self.prompt_id, list(self.cached_nodes)))
        elif kind == "execution_success":
            self.finished_ms = data.get("timestamp")
            self.emit(PromptSucceeded(self.prompt_id, self.finished_ms))
        elif kind == "execution_error":
            self.error = data
            self.emit(
                PromptFailed(
                    self.prompt_id,
                    _str_or_none(data.get("node_id")),
                    data.get("node_type"),
                    str(data.get("exception_type") or ""),
                    str(data.get("exception_message") or ""),
                )
            )
        elif kind == "execution_interrupted":
            self.interrupted = data
            self.emit(
                PromptInterrupted(
                    self.prompt_id, _str_or_none(data.get("node_id")), data.get("node_type")
                )
            )

    def _live_outcome(self) -> _Outcome:
        status = "error" if self.error else "interrupted" if self.interrupted else "success"
        return _Outcome(
            status=status,
            outputs=self.outputs,
            started_ms=self.started_ms,
            finished_ms=self.finished_ms,
            cached_nodes=self.cached_nodes,
            error=self.error,
            interrupted=self.interrupted,
        )

    # -------------------------------------------------------------- waiting
    async def wait(self, stall_timeout: float | None) -> _Outcome:
        """Wait for the done signal; poll history as the fallback when the socket is not live
        or has been silent for a while."""
        silent_poll_after = self.client.silent_poll_after
        while True:
            if self.done.is_set():
                break
            timeout = self.client.poll_interval if not self.live else silent_poll_after
            if stall_timeout is not None and self.started and self.live:
                timeout = min(
                    timeout, max(0.01, stall_timeout - (time.monotonic() - self.last_message_at))
                )
            waiter = asyncio.ensure_future(self.done.wait())
            poker = asyncio.ensure_future(self.poke.wait())
            try:
                await asyncio.wait(
                    {waiter, poker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
                poker.cancel()
            if self.done.is_set():
                break
            self.poke.clear()
            silence = time.monotonic() - self.last_message_at
            if (
                stall_timeout is not None
                and self.started
                and self.live
                and silence >= stall_timeout
            ):
                raise ComfyUIStalled(self.prompt_id, silence, self.current_node)
            if not self.live or silence >= silent_poll_after:
                # A frozen ComfyUI may never answer: the reader's verdict must not wait for it.
                check = asyncio.ensure_future(self._check_state())
                waiter = asyncio.ensure_future(self.done.wait())
                try:
                    await asyncio.wait({check, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    check.cancel()
                    waiter.cancel()
        if self.failure is not None:
            raise self.failure
        assert self.outcome is not None
        return self.outcome

    async def _check_state(self) -> None:
        """Where is our prompt now? Queue first, then history, so a prompt finishing between
        the two reads is still found (§2.3, §2.5)."""
        try:
            queue = await self.client.queue()
            ids = {
                item[1] for item in queue.get("queue_running", []) + queue.get("queue_pending", [])
            }
            if self.prompt_id in ids:
                return
            entry = await self.client.history(self.prompt_id)
        except ComfyUIError:
            return  # the reconnect loop decides when ComfyUI counts as gone
        if entry is not None:
            self._finish(outcome_from_history(entry))
        elif self.submitted:
            # Neither queued nor in history: ComfyUI restarted (history is in memory, §2.5).
            self._fail(
                ComfyUIUnavailable(f"ComfyUI no longer knows prompt {self.prompt_id} (restarted?)")
            )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


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

    async def _action(self, path: str, body: dict) -> None:
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

    async def queue(self) -> dict:
        return await self._json("GET", "/queue")

    async def history(self, prompt_id: str) -> dict | None:
        body = await self._json("GET", f"/history/{prompt_id}")
        # Unknown or unfinished ids answer {} with 200 (§2.5).
        return body.get(prompt_id) if isinstance(body, dict) else None

    async def job(self, prompt_id: str) -> dict | None:
        response = await self._request("GET", f"/api/jobs/{prompt_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ComfyUIError(f"GET /api/jobs/{prompt_id} answered {response.status_code}")
        return response.json()

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Targeted when prompt_id is given: ComfyUI then interrupts only if that prompt is the
        running one (§2.4). Without it, whatever runs is interrupted."""
        await self._action("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    async def delete_queued(self, prompt_ids: Sequence[str]) -> None:
        await self._action("/queue", {"delete": list(prompt_ids)})

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        await self._action("/free", {"unload_models": unload_models, "free_memory": free_memory})

    async def system_stats(self) -> dict:
        return await self._json("GET", "/system_stats")

    async def object_info(self, class_type: str | None = None) -> dict:
        return await self._json(
            "GET", f"/object_info/{class_type}" if class_type else "/object_info"
        )

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", overwrite: bool = False
    ) -> dict:
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
        return response.json()

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
        graph: dict,
        *,
        prompt_id: str,
        client_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
    ) -> dict:
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
                payload = response.json()
            except ValueError:
                payload = {"error": {"type": "bad_request", "message": response.text[:500]}}
            raise ComfyUIValidationError.from_response(payload, graph)
        if response.status_code == 413:
            raise ComfyUIValidationError(
                "payload_too_large", "Prompt larger than ComfyUI's upload limit", []
            )
        if response.status_code != 200:
            raise ComfyUIError(
                f"POST /prompt answered {response.status_code}: {response.text[:500]}"
            )
        payload = response.json()
        if payload.get("node_errors"):
            with contextlib.suppress(ComfyUIError, TimeoutError):
                await self.cancel(prompt_id)
            raise ComfyUIValidationError.from_response(payload, graph)
        return payload

    async def cancel(self, prompt_id: str, *, _done: asyncio.Event | None = None) -> None:
        """Delete the prompt if queued, else interrupt it if running and wait until ComfyUI
        confirms (history entry written), bounded by `cancel_timeout`."""
        async with asyncio.timeout(self.cancel_timeout):
            interrupted_at: float | None = None
            while True:
                queue = await self.queue()
                pending = {item[1] for item in queue.get("queue_pending", [])}
                running = {item[1] for item in queue.get("queue_running", [])}
                if prompt_id in pending:
                    await self.delete_queued([prompt_id])
                    continue  # it may have started meanwhile: look again
                if prompt_id not in running:
                    return
                now = time.monotonic()
                # Re-send now and then: an interrupt landing just before ComfyUI resets its
                # flag at prompt start is lost (§4.2).
                if interrupted_at is None or now - interrupted_at >= 1.0:
                    await self.interrupt(prompt_id)
                    interrupted_at = now
                if _done is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.25):
                            await _done.wait()
                    if _done.is_set():
                        return
                else:
                    await asyncio.sleep(0.05)
                if await self.history(prompt_id) is not None:
                    return

    # -------------------------------------------------------------- the whole run
    async def run_prompt(
        self,
        graph: dict,
        *,
        output_dir: Path,
        prompt_id: str | None = None,
        on_event: Callable[[ComfyEvent], None] | None = None,
        output_nodes: Sequence[str] | None = None,
        include_temp: bool = False,
        stall_timeout: float | None = None,
        extra_data: Mapping[str, Any] | None = None,
    ) -> PromptResult:
        prompt_id = prompt_id or str(uuid.uuid4())
        follower = _PromptFollower(self, prompt_id, graph, on_event)
        # The socket is open before submitting, so no event of this prompt is lost (§3.2).
        await follower.connect()
        try:
            try:
                response = await self.submit(
                    graph, prompt_id=prompt_id, client_id=follower.client_id, extra_data=extra_data
                )
                follower.submitted = True
                number = response.get("number", 0)
                position = 0 if follower.started else await self._queue_position(prompt_id, number)
                follower.release(PromptQueued(prompt_id, number, position))
                outcome = await follower.wait(stall_timeout)
            except asyncio.CancelledError:
                await self._cancel_for_caller(prompt_id, follower)
                raise
            except ComfyUIStalled:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.interrupt(prompt_id), 2.0)
                raise
        except BaseException:
            await follower.close()
            raise
        # The close handshake is a round trip to a ComfyUI that may be starting the next prompt:
        # run it alongside the downloads instead of before them.
        closing = asyncio.ensure_future(follower.close())
        try:
            if outcome.status == "error":
                raise ComfyUIExecutionError.from_message(
                    {**(outcome.error or {}), "prompt_id": prompt_id}
                )
            if outcome.status == "interrupted":
                data = outcome.interrupted or {}
                raise ComfyUIInterrupted(
                    prompt_id, _str_or_none(data.get("node_id")), data.get("node_type")
                )
            files = await self._collect_outputs(
                outcome.outputs, Path(output_dir), output_nodes, include_temp
            )
        finally:
            await closing
        producing = [node for node, ui in outcome.outputs.items() if ui]
        cached = bool(outcome.cached_nodes) and all(
            node in outcome.cached_nodes for node in producing
        )
        return PromptResult(prompt_id, files, cached, outcome.started_ms, outcome.finished_ms)

    async def _queue_position(self, prompt_id: str, number: float) -> int | None:
        """Prompts ahead of ours: the running one plus pending ones with a lower number (the
        queue is a min-heap on (number, prompt_id), §2.1, §2.3). 0 means running or next."""
        try:
            # Best effort with a short timeout: a busy or frozen ComfyUI must not delay the run.
            response = await self._request("GET", "/queue", timeout=min(self.timeout, 2.0))
            queue = response.json() if response.status_code == 200 else {}
        except (ComfyUIError, ValueError):
            return None
        running = [item[1] for item in queue.get("queue_running", [])]
        if prompt_id in running:
            return 0
        ahead = [
            item
            for item in queue.get("queue_pending", [])
            if (item[0], item[1]) < (number, prompt_id)
        ]
        return len(running) + len(ahead)

    async def _cancel_for_caller(self, prompt_id: str, follower: _PromptFollower) -> None:
        try:
            await self.cancel(prompt_id, _done=follower.done)
        except (ComfyUIError, TimeoutError) as exc:
            log.warning("cancel of prompt %s not confirmed: %s", prompt_id, exc)

    async def _collect_outputs(
        self,
        outputs: dict[str, dict],
        output_dir: Path,
        output_nodes: Sequence[str] | None,
        include_temp: bool,
    ) -> list[OutputFile]:
        """Every file item ({filename, subfolder, type}) of every UI key: images, gifs, video,
        audio, anything (§2.5). Temp files only when asked."""
        output_dir.mkdir(parents=True, exist_ok=True)
        wanted = set(output_nodes) if output_nodes is not None else None
        planned: list[OutputFile] = []
        for node_id, ui in outputs.items():
            if wanted is not None and node_id not in wanted:
                continue
            for kind, items in (ui or {}).items():
                if not isinstance(items, list):
                    continue
                for item in items:
                    if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                        continue
                    file_type = str(item.get("type") or "output")
                    if file_type != "output" and not (include_temp and file_type == "temp"):
                        continue
                    comfy_name = item["filename"]
                    path = _claim_unique_path(output_dir, node_id, os.path.basename(comfy_name))
                    planned.append(
                        OutputFile(
                            node_id=node_id,
                            filename=path.name,
                            path=path,
                            size=0,
                            content_type=content_type_for(comfy_name),
                            comfy_filename=comfy_name,
                            subfolder=str(item.get("subfolder") or ""),
                            type=file_type,
                            kind=kind,
                        )
                    )

        async def fetch(output: OutputFile) -> None:
            output.size = await self.download(
                output.comfy_filename, output.subfolder, output.type, output.path
            )

        try:
            await asyncio.gather(*(fetch(output) for output in planned))
        except BaseException:
            for output in planned:
                with contextlib.suppress(OSError):
                    output.path.unlink()
            raise
        return planned


def _claim_unique_path(output_dir: Path, node_id: str, basename: str) -> Path:
    """Create an empty file under a flat unique name: ComfyUI's basename, prefixed with the node
    id only on a collision. O_EXCL makes concurrent claims in one directory safe."""
    stem, ext = os.path.splitext(basename)
    names = itertools.chain(
        [basename, f"{node_id}_{basename}"],
        (f"{node_id}_{stem}_{n}{ext}" for n in itertools.count(2)),
    )
    for name in names:
        path = output_dir / name
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise ComfyUIError(f"output name too long: {name}") from exc
            raise
        os.close(fd)
        return path
    raise AssertionError("unreachable")
