"""The life of one prompt on one ComfyUI: WebSocket first, submit with our own ids, follow events
to the reliable done signal, recover through history when the socket drops, and cancel by delete
or interrupt. Protocol facts are from docs/comfyui-protocol.md (cited as §n).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from activities.comfyui.errors import (
    ComfyUIError,
    ComfyUIExecutionError,
    ComfyUIInterrupted,
    ComfyUIStalled,
    ComfyUIUnavailable,
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
from activities.comfyui.outputs import PromptResult, collect_outputs
from activities.comfyui.protocol import (
    ExecutionCachedData,
    ExecutionErrorData,
    ExecutionInterruptedData,
    ExecutionStartData,
    ExecutionSuccessData,
    Graph,
    HistoryEntry,
    UIOutput,
    WsMessage,
)

if TYPE_CHECKING:
    from activities.comfyui.client import ComfyUIClient

log = logging.getLogger(__name__)


@dataclass
class PromptOutcome:
    """What ComfyUI reported for a finished prompt, from live messages or from history."""

    status: str  # "success" | "error" | "interrupted"
    outputs: dict[str, UIOutput] = field(default_factory=dict)
    started_ms: int | None = None
    finished_ms: int | None = None
    cached_nodes: list[str] = field(default_factory=list)
    error: ExecutionErrorData | None = None
    interrupted: ExecutionInterruptedData | None = None


def outcome_from_history(entry: HistoryEntry) -> PromptOutcome:
    """Read a `/history/{id}` entry (comfyui-protocol.md §2.5)."""
    status = entry.get("status") or {}
    # Each message's data is the WebSocket message of that name (§2.5).
    messages = {name: data for name, data in status.get("messages") or []}
    outcome = PromptOutcome(status="success", outputs=dict(entry.get("outputs") or {}))
    if "execution_start" in messages:
        outcome.started_ms = cast(ExecutionStartData, messages["execution_start"]).get("timestamp")
    if "execution_cached" in messages:
        cached = cast(ExecutionCachedData, messages["execution_cached"])
        outcome.cached_nodes = [str(n) for n in cached.get("nodes") or []]
    if "execution_success" in messages:
        success = cast(ExecutionSuccessData, messages["execution_success"])
        outcome.finished_ms = success.get("timestamp")
    if "execution_error" in messages:
        outcome.status = "error"
        outcome.error = cast(ExecutionErrorData, messages["execution_error"])
    elif "execution_interrupted" in messages:
        outcome.status = "interrupted"
        outcome.interrupted = cast(ExecutionInterruptedData, messages["execution_interrupted"])
    elif status.get("status_str") == "error":
        outcome.status = "error"
        outcome.error = {"exception_type": "Exception", "exception_message": "prompt failed"}
    return outcome


async def run_prompt(
    client: ComfyUIClient,
    graph: Graph,
    *,
    output_dir: Path,
    prompt_id: str | None = None,
    on_event: Callable[[ComfyEvent], None] | None = None,
    output_nodes: Sequence[str] | None = None,
    include_temp: bool = False,
    stall_timeout: float | None = None,
    extra_data: Mapping[str, Any] | None = None,
) -> PromptResult:
    """ComfyUIClient.run_prompt: run `graph` and download its output files into `output_dir`.
    Raises ComfyUIValidationError, ComfyUIExecutionError (ComfyUIOutOfMemory), ComfyUIInterrupted,
    ComfyUIStalled (no message for `stall_timeout` s while running) or ComfyUIUnavailable.
    Cancelling the call deletes or interrupts the prompt before it returns."""
    prompt_id = prompt_id or str(uuid.uuid4())
    follower = PromptFollower(client, prompt_id, graph, on_event)
    # The socket is open before submitting, so no event of this prompt is lost (§3.2).
    await follower.connect()
    try:
        try:
            response = await client.submit(
                graph, prompt_id=prompt_id, client_id=follower.client_id, extra_data=extra_data
            )
            follower.submitted = True
            number = response.get("number", 0)
            position = 0 if follower.started else await _queue_position(client, prompt_id, number)
            follower.release(PromptQueued(prompt_id, number, position))
            outcome = await follower.wait(stall_timeout)
        except asyncio.CancelledError:
            await _cancel_for_caller(client, prompt_id, follower)
            raise
        except ComfyUIStalled:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.interrupt(prompt_id), 2.0)
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
            where: Mapping[str, Any] = outcome.interrupted or {}
            raise ComfyUIInterrupted(
                prompt_id, _str_or_none(where.get("node_id")), where.get("node_type")
            )
        files = await collect_outputs(
            outcome.outputs,
            Path(output_dir),
            client.download,
            output_nodes=output_nodes,
            include_temp=include_temp,
        )
    finally:
        await closing
    producing = [node for node, ui in outcome.outputs.items() if ui]
    cached = bool(outcome.cached_nodes) and all(node in outcome.cached_nodes for node in producing)
    return PromptResult(prompt_id, files, cached, outcome.started_ms, outcome.finished_ms)


async def cancel_prompt(
    client: ComfyUIClient, prompt_id: str, *, done: asyncio.Event | None = None
) -> None:
    """Delete the prompt if queued, else interrupt it if running and wait until ComfyUI
    confirms (history entry written, or `done` set by a follower), bounded by
    `client.cancel_timeout`."""
    async with asyncio.timeout(client.cancel_timeout):
        interrupted_at: float | None = None
        while True:
            queue = await client.queue()
            pending = {item[1] for item in queue.get("queue_pending", [])}
            running = {item[1] for item in queue.get("queue_running", [])}
            if prompt_id in pending:
                await client.delete_queued([prompt_id])
                continue  # it may have started meanwhile: look again
            if prompt_id not in running:
                return
            now = time.monotonic()
            # Re-send now and then: an interrupt landing just before ComfyUI resets its
            # flag at prompt start is lost (§4.2).
            if interrupted_at is None or now - interrupted_at >= 1.0:
                await client.interrupt(prompt_id)
                interrupted_at = now
            if done is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await done.wait()
                if done.is_set():
                    return
            else:
                await asyncio.sleep(0.05)
            if await client.history(prompt_id) is not None:
                return


async def _queue_position(client: ComfyUIClient, prompt_id: str, number: float) -> int | None:
    """Prompts ahead of ours: the running one plus pending ones with a lower number (the
    queue is a min-heap on (number, prompt_id), §2.1, §2.3). 0 means running or next."""
    try:
        # Best effort with a short timeout: a busy or frozen ComfyUI must not delay the run.
        queue = await client.queue(timeout=min(client.timeout, 2.0))
    except (ComfyUIError, ValueError):
        return None
    running = [item[1] for item in queue.get("queue_running", [])]
    if prompt_id in running:
        return 0
    ahead = [
        item for item in queue.get("queue_pending", []) if (item[0], item[1]) < (number, prompt_id)
    ]
    return len(running) + len(ahead)


async def _cancel_for_caller(
    client: ComfyUIClient, prompt_id: str, follower: PromptFollower
) -> None:
    try:
        await cancel_prompt(client, prompt_id, done=follower.done)
    except (ComfyUIError, TimeoutError) as exc:
        log.warning("cancel of prompt %s not confirmed: %s", prompt_id, exc)


class PromptFollower:
    """Follows one prompt over its own WebSocket (one per run_prompt, fresh client_id each
    connection), decoding events and recovering through history when the socket drops."""

    def __init__(
        self,
        client: ComfyUIClient,
        prompt_id: str,
        graph: Graph,
        on_event: Callable[[ComfyEvent], None] | None,
    ) -> None:
        self.client = client
        self.prompt_id = prompt_id
        self.graph = graph
        self.on_event = on_event
        self.client_id = ""
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.poke = asyncio.Event()  # something changed: check history (after a reconnect)
        self.outcome: PromptOutcome | None = None
        self.failure: BaseException | None = None
        self.live = True  # False after a reconnect: our events go to the old client_id (§3.2)
        self.started = False
        self.submitted = False
        self.current_node: str | None = None
        self.last_message_at = time.monotonic()
        self.outputs: dict[str, UIOutput] = {}
        self.started_ms: int | None = None
        self.finished_ms: int | None = None
        self.cached_nodes: list[str] = []
        self.error: ExecutionErrorData | None = None
        self.interrupted: ExecutionInterruptedData | None = None
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

    def _finish(self, outcome: PromptOutcome) -> None:
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
            message: WsMessage = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "status":
            if not self.live:
                self.poke.set()  # queue changed: maybe our prompt finished (§3.2 status)
            return
        data = message.get("data")
        if not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id:
            return
        if message["type"] == "executing":
            node = message["data"].get("node")
            if node is None:
                # Sent after the history entry is written: the reliable done signal (§3.2, §4.9).
                self._finish(self._live_outcome())
                return
            self.current_node = str(node)
            class_type = (self.graph.get(self.current_node) or {}).get("class_type")
            self.emit(
                NodeExecuting(self.prompt_id, self.current_node, class_type, self.last_message_at)
            )
        elif message["type"] == "progress":
            progress = message["data"]
            node = str(progress.get("node") or self.current_node or "")
            self.emit(
                NodeProgress(
                    self.prompt_id,
                    node,
                    float(progress.get("value", 0)),
                    float(progress.get("max", 0)),
                )
            )
        elif message["type"] == "executed":
            executed = message["data"]
            node = str(executed.get("node"))
            output = executed.get("output") or {}
            merged = self.outputs.setdefault(node, {})
            for key, value in output.items():
                if isinstance(value, list) and isinstance(merged.get(key), list):
                    merged[key] = merged[key] + value
                else:
                    merged[key] = value
            self.emit(NodeExecuted(self.prompt_id, node, output, self.last_message_at))
        elif message["type"] == "execution_start":
            self.started = True
            self.started_ms = message["data"].get("timestamp")
            self.emit(PromptStarted(self.prompt_id, int(self.started_ms or 0)))
        elif message["type"] == "execution_cached":
            self.cached_nodes = [str(n) for n in message["data"].get("nodes") or []]
            self.emit(NodesCached(self.prompt_id, list(self.cached_nodes)))
        elif message["type"] == "execution_success":
            self.finished_ms = message["data"].get("timestamp")
            self.emit(PromptSucceeded(self.prompt_id, self.finished_ms, self.last_message_at))
        elif message["type"] == "execution_error":
            error = self.error = message["data"]
            self.emit(
                PromptFailed(
                    self.prompt_id,
                    _str_or_none(error.get("node_id")),
                    error.get("node_type"),
                    str(error.get("exception_type") or ""),
                    str(error.get("exception_message") or ""),
                    self.last_message_at,
                )
            )
        elif message["type"] == "execution_interrupted":
            interrupted = self.interrupted = message["data"]
            self.emit(
                PromptInterrupted(
                    self.prompt_id,
                    _str_or_none(interrupted.get("node_id")),
                    interrupted.get("node_type"),
                    self.last_message_at,
                )
            )

    def _live_outcome(self) -> PromptOutcome:
        status = "error" if self.error else "interrupted" if self.interrupted else "success"
        return PromptOutcome(
            status=status,
            outputs=self.outputs,
            started_ms=self.started_ms,
            finished_ms=self.finished_ms,
            cached_nodes=self.cached_nodes,
            error=self.error,
            interrupted=self.interrupted,
        )

    # -------------------------------------------------------------- waiting
    async def wait(self, stall_timeout: float | None) -> PromptOutcome:
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
