"""HTTP + WebSocket server of the ComfyUI emulator: queue, one prompt worker, history, jobs,
files and fault injection, speaking ComfyUI 0.8.0's protocol as recorded in
tests/comfyui/traces (docs/comfyui-protocol.md §2, §3, §4). A test double only.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import mimetypes
import os
import platform
import struct
import sys
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from emulator_nodes import (
    ANY,
    BOOLEAN,
    DIRECTORIES,
    EXTRA_MODEL_PATHS,
    FLOAT,
    INT,
    MODEL_FOLDERS,
    MODEL_MEMORY,
    NODE_CLASSES,
    STRING,
    EmulatedFailure,
    InterruptProcessing,
    Node,
    NodeContext,
    input_specs,
    model_files,
    object_info,
)

log = logging.getLogger("comfyui-emulator")

MAX_HISTORY = 10000
OOM_TIP = (
    "\nThis error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before"
    " you might have accidentally set the batch_size to a large number."
)
PREVIEW_FORMATS = {"JPEG": 1, "PNG": 2}
BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4


def now_ms() -> int:
    return int(time.time() * 1000)


def full_type_name(exc: BaseException) -> str:
    """`module.QualifiedName`, or the bare name for builtins (comfyui-protocol.md §4.3)."""
    if isinstance(exc, EmulatedFailure):
        return exc.type_name
    cls = type(exc)
    module = cls.__module__
    if module in ("builtins", "__main__", "emulator_nodes"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


@dataclass(order=True)
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict = field(compare=False)
    extra_data: dict = field(compare=False)
    outputs_to_execute: list = field(compare=False)

    def as_list(self) -> list:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]


@dataclass
class Directories:
    output: Path
    input: Path
    temp: Path
    user: Path
    models: Path
    # From --extra-model-paths-config: folder -> more directories (comfyui-protocol.md §1.3).
    extra_models: dict[str, list[Path]] = field(default_factory=dict)


@dataclass(frozen=True)
class CacheEntry:
    """What the classic cache keeps per node signature: the node's outputs, which downstream
    nodes read, and its UI, which an output node replays as `executed` (comfyui-protocol.md
    §4.8)."""

    outputs: tuple
    ui: dict | None


class ValidationFailed(Exception):
    def __init__(self, body: dict) -> None:
        super().__init__(body["error"]["message"])
        self.body = body


def _error(type_: str, message: str, details: str, extra_info: dict | None = None) -> dict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


class EmulatorServer:
    """One emulated ComfyUI: routes, sockets, queue, worker and fault switches."""

    def __init__(self, args: Any, dirs: Directories, faults: dict[str, Any]) -> None:
        self.args = args
        self.dirs = dirs
        self.faults: dict[str, Any] = dict(faults)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.socket_flags: dict[str, dict] = {}
        self.outbox: asyncio.Queue[tuple[str, Any, str | None]] = asyncio.Queue()
        self.pending: list[QueueItem] = []
        self.running: QueueItem | None = None
        self.current_node: str | None = None
        self.history: OrderedDict[str, dict] = OrderedDict()
        self.number = 0
        self.queue_changed = asyncio.Event()
        self.interrupted = False
        self.cache: dict[Any, CacheEntry] = {}
        self.node_state: dict[tuple[str, str], dict] = {}
        self.free_memory_requested = False
        self.free_requests: list[dict] = []  # bodies of POST /free, for tests
        self.cache_enabled = not args.cache_none
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self.max_upload_size = (
            int(args.max_upload_size * 1024 * 1024)
            if args.max_upload_size is not None
            else 100 * 1024 * 1024
        )
        self.features = {
            "supports_preview_metadata": True,
            "max_upload_size": self.max_upload_size,
            "extension": {"manager": {"supports_v4": True}},
        }
        self.background: set[asyncio.Task] = set()
        # --leak-mb-per-prompt: memory held forever after each prompt, as a leaking ComfyUI does.
        self.leak_bytes_per_prompt = int(getattr(args, "leak_mb_per_prompt", 0) * 1024 * 1024)
        self.leaked: list[bytearray] = []
        DIRECTORIES.update(output=dirs.output, input=dirs.input, temp=dirs.temp, models=dirs.models)
        MODEL_MEMORY.seconds_per_gb = float(getattr(args, "emulator_load_seconds_per_gb", 0) or 0)
        MODEL_MEMORY.max_loaded = int(getattr(args, "emulator_max_loaded_models", 0) or 0)
        EXTRA_MODEL_PATHS.update(dirs.extra_models)

    # ------------------------------------------------------------------ app and routes
    @web.middleware
    async def origin_check(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Without --enable-cors-header: OPTIONS gets an empty 200, and a loopback Host with a
        different Origin gets 403 (comfyui-protocol.md §1.1)."""
        if request.method == "OPTIONS":
            return web.Response(status=200)
        if self.args.enable_cors_header is None:
            origin = request.headers.get("Origin")
            host = request.headers.get("Host", "")
            loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
            if origin and loopback and origin.split("://", 1)[-1].rstrip("/") != host:
                return web.Response(status=403)
        return await handler(request)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_upload_size, middlewares=[self.origin_check])
        routes = [
            ("GET", "/ws", self.websocket_handler),
            ("GET", "/prompt", self.get_prompt),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_prompt),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.view),
            ("POST", "/upload/image", self.upload_image),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info_node),
            ("GET", "/features", self.get_features),
            ("POST", "/free", self.post_free),
            ("GET", "/embeddings", self.get_embeddings),
            ("GET", "/models", self.get_models),
            ("GET", "/models/{folder}", self.get_models_folder),
            ("GET", "/emulator/faults", self.get_faults),
            ("POST", "/emulator/faults", self.post_faults),
            ("GET", "/emulator/free-requests", self.get_free_requests),
            ("GET", "/emulator/models", self.get_loaded_models),
        ]
        # Every route exists plain and under /api; jobs only under /api (comfyui-protocol.md §2.0).
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_route("GET", "/api/jobs", self.get_jobs)
        app.router.add_route("GET", "/api/jobs/{job_id}", self.get_job)
        return app

    async def start(self, host: str, port: int) -> None:
        self.spawn(self.publisher())
        self.spawn(self.prompt_worker())
        self.runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        if self.faults.get("refuse_connections"):
            log.warning("emulator fault: refusing connections (port never bound)")
            return
        self.site = web.TCPSite(self.runner, host, port)
        await self.site.start()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # ------------------------------------------------------------------ messaging
    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        """Queue a JSON message: sid None = every socket; else that socket if connected then."""
        self.outbox.put_nowait(("json", {"type": event, "data": data}, sid))

    def send_bytes(self, payload: bytes, sid: str | None = None) -> None:
        self.outbox.put_nowait(("bytes", payload, sid))

    async def publisher(self) -> None:
        # One FIFO for all messages, like PromptServer.publish_loop (comfyui-protocol.md §3.2).
        while True:
            kind, payload, sid = await self.outbox.get()
            if kind == "json":
                text = json.dumps(payload)
                targets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
                for ws in targets:
                    if ws is not None and not ws.closed:
                        try:
                            await ws.send_str(text)
                        except Exception as exc:  # logged and ignored, like ComfyUI
                            log.debug("send failed: %s", exc)
            else:
                targets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
                for ws in targets:
                    if ws is not None and not ws.closed:
                        try:
                            await ws.send_bytes(payload)
                        except Exception as exc:
                            log.debug("send failed: %s", exc)

    def queue_remaining(self) -> int:
        return len(self.pending) + (1 if self.running is not None else 0)

    def queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self.queue_remaining()}}

    def queue_updated(self) -> None:
        self.send("status", {"status": self.queue_info()})

    # ------------------------------------------------------------------ websocket
    async def websocket_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        self.socket_flags.pop(sid, None)
        try:
            await ws.send_str(
                json.dumps({"type": "status", "data": {"status": self.queue_info(), "sid": sid}})
            )
            # Reconnect of the running prompt's client mid-node (comfyui-protocol.md §3.1).
            if (
                self.running is not None
                and self.running.extra_data.get("client_id") == sid
                and self.current_node is not None
            ):
                await ws.send_str(
                    json.dumps({"type": "executing", "data": {"node": self.current_node}})
                )
            first = True
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                if not first:
                    continue
                first = False
                try:
                    parsed = json.loads(message.data)
                except ValueError:
                    log.warning("invalid websocket message from %s", sid)
                    continue
                if isinstance(parsed, dict) and parsed.get("type") == "feature_flags":
                    self.socket_flags[sid] = dict(parsed.get("data") or {})
                    self.send("feature_flags", self.features, sid)
        finally:
            # ComfyUI removes the sid unconditionally, which is the duplicate-clientId quirk
            # (comfyui-protocol.md §3.1).
            self.sockets.pop(sid, None)
            self.socket_flags.pop(sid, None)
        return ws

    # ------------------------------------------------------------------ prompt submission
    async def post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        if not isinstance(body, dict):
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = self.number
            if body.get("front"):
                number = -number
            self.number += 1
        if "prompt" not in body:
            return web.json_response(
                {
                    "error": _error("no_prompt", "No prompt provided", "No prompt provided"),
                    "node_errors": {},
                },
                status=400,
            )
        prompt = body["prompt"]
        if not isinstance(prompt, dict):
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        prompt_id = str(body["prompt_id"]) if "prompt_id" in body else str(uuid.uuid4())
        try:
            outputs, node_errors = self.validate_prompt(
                prompt, body.get("partial_execution_targets")
            )
        except ValidationFailed as failed:
            log.warning("invalid prompt: %s", failed)
            return web.json_response(failed.body, status=400)
        extra_data["create_time"] = now_ms()
        item = QueueItem(number, prompt_id, prompt, extra_data, outputs)
        heapq.heappush(self.pending, item)
        self.queue_updated()
        self.queue_changed.set()
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    def validate_prompt(self, prompt: dict, targets: list | None) -> tuple[list[str], dict]:
        """Validation as in execution.validate_prompt (comfyui-protocol.md §2.1)."""
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                raise ValidationFailed(
                    {
                        "error": _error(
                            "invalid_prompt",
                            "Cannot execute because a node is missing the class_type property.",
                            f"Node ID '#{node_id}'",
                        ),
                        "node_errors": {},
                    }
                )
            if node["class_type"] not in NODE_CLASSES:
                raise ValidationFailed(
                    {
                        "error": _error(
                            "invalid_prompt",
                            f"Cannot execute because node {node['class_type']} does not exist.",
                            f"Node ID '#{node_id}'",
                        ),
                        "node_errors": {},
                    }
                )
        outputs = [
            node_id
            for node_id, node in prompt.items()
            if NODE_CLASSES[node["class_type"]].OUTPUT_NODE
            and (targets is None or node_id in targets)
        ]
        if not outputs:
            raise ValidationFailed(
                {
                    "error": _error("prompt_no_outputs", "Prompt has no outputs", ""),
                    "node_errors": {},
                }
            )
        validated: dict[str, tuple[bool, list[dict]]] = {}
        good: list[str] = []
        node_errors: dict[str, dict] = {}
        output_details: list[str] = []
        for output_id in outputs:
            try:
                ok = self._validate_node(prompt, output_id, validated)
            except Exception as exc:
                ok = False
                validated[output_id] = (
                    False,
                    [
                        _error(
                            "exception_during_validation",
                            "Exception when validating node",
                            str(exc),
                            {
                                "exception_type": full_type_name(exc),
                                "traceback": [],
                                "linked_node": None,
                            },
                        )
                    ],
                )
            if ok:
                good.append(output_id)
                continue
            for node_id, (valid, errors) in validated.items():
                if valid or not errors:
                    continue
                if not self._depends_on(prompt, output_id, node_id):
                    continue
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": errors,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                if output_id not in entry["dependent_outputs"]:
                    entry["dependent_outputs"].append(output_id)
            for error in validated[output_id][1]:
                output_details.append(f"{error['message']}: {error['details']}")
        if not good:
            raise ValidationFailed(
                {
                    "error": _error(
                        "prompt_outputs_failed_validation",
                        "Prompt outputs failed validation",
                        "\n".join(output_details),
                    ),
                    "node_errors": node_errors,
                }
            )
        return good, node_errors

    def _depends_on(self, prompt: dict, output_id: str, node_id: str) -> bool:
        seen: set[str] = set()
        stack = [output_id]
        while stack:
            current = stack.pop()
            if current == node_id:
                return True
            if current in seen or current not in prompt:
                continue
            seen.add(current)
            for value in prompt[current].get("inputs", {}).values():
                if is_link(value):
                    stack.append(value[0])
        return False

    def _validate_node(self, prompt: dict, node_id: str, validated: dict) -> bool:
        if node_id in validated:
            return validated[node_id][0]
        node = prompt[node_id]  # KeyError for a dangling link, as in ComfyUI
        cls = NODE_CLASSES[node["class_type"]]
        inputs = node.get("inputs", {})
        errors: list[dict] = []
        upstream_ok = True
        required, optional = input_specs(cls)
        specs = {**required, **optional}
        for name, (kind, opts) in specs.items():
            if name not in inputs:
                if name in cls.REQUIRED:
                    errors.append(
                        _error(
                            "required_input_missing",
                            "Required input is missing",
                            name,
                            {"input_name": name},
                        )
                    )
                continue
            value = inputs[name]
            config = [kind, opts]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(
                        _error(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name,
                            {"input_name": name, "input_config": config, "received_value": value},
                        )
                    )
                    continue
                source_id = value[0]
                if source_id not in prompt:
                    raise KeyError(source_id)
                source_cls = NODE_CLASSES.get(prompt[source_id].get("class_type"))
                if source_cls is None:
                    continue
                received = (
                    source_cls.RETURN_TYPES[value[1]]
                    if 0 <= value[1] < len(source_cls.RETURN_TYPES)
                    else None
                )
                expected = kind if isinstance(kind, str) else "COMBO"
                if received is not None and expected != ANY and received != expected:
                    errors.append(
                        _error(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({expected})",
                            {
                                "input_name": name,
                                "input_config": config,
                                "received_type": received,
                                "linked_node": value,
                            },
                        )
                    )
                    continue
                if not self._validate_node(prompt, source_id, validated):
                    upstream_ok = False
                continue
            if isinstance(kind, list):
                if value not in kind:
                    errors.append(
                        _error(
                            "value_not_in_list",
                            "Value not in list",
                            f"{name}: '{value}' not in {kind}",
                            {
                                "input_name": name,
                                "input_config": config if len(kind) <= 20 else None,
                                "received_value": value,
                            },
                        )
                    )
                continue
            converter = {INT: int, FLOAT: float, STRING: str, BOOLEAN: bool}.get(kind)
            if converter is None:
                continue
            try:
                converted = converter(value)
            except Exception as exc:
                errors.append(
                    _error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {kind} value",
                        f"{name}, {value}, {exc}",
                        {
                            "input_name": name,
                            "input_config": config,
                            "received_value": value,
                            "exception_message": str(exc),
                        },
                    )
                )
                continue
            # Coerced values are written back into the stored prompt (comfyui-protocol.md §2.1).
            inputs[name] = converted
            if kind in (INT, FLOAT):
                if "min" in opts and converted < opts["min"]:
                    errors.append(
                        _error(
                            "value_smaller_than_min",
                            f"Value {converted} smaller than min of {opts['min']}",
                            name,
                            {
                                "input_name": name,
                                "input_config": config,
                                "received_value": converted,
                            },
                        )
                    )
                if "max" in opts and converted > opts["max"]:
                    errors.append(
                        _error(
                            "value_bigger_than_max",
                            f"Value {converted} bigger than max of {opts['max']}",
                            name,
                            {
                                "input_name": name,
                                "input_config": config,
                                "received_value": converted,
                            },
                        )
                    )
        for name, reason in cls.validate(inputs, self.dirs.input):
            errors.append(
                _error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"{name} - {reason}",
                    {
                        "input_name": name,
                        "input_config": list(specs.get(name, ("*", {}))),
                        "received_value": inputs.get(name),
                    },
                )
            )
        ok = not errors and upstream_ok
        validated[node_id] = (ok, errors)
        return ok

    # ------------------------------------------------------------------ queue endpoints
    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.queue_info())

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [self.running.as_list()] if self.running is not None else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [item.as_list() for item in self.pending]}
        )

    async def post_queue(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        if body.get("clear"):
            self.pending.clear()
            self.queue_updated()
        for prompt_id in body.get("delete", []) or []:
            for index, item in enumerate(self.pending):
                if item.prompt_id == prompt_id:
                    if len(self.pending) == 1:
                        # Removing the last item goes through the queue wipe, which broadcasts
                        # too: two status messages (comfyui-protocol.md §3.2).
                        self.pending.clear()
                        self.queue_updated()
                    else:
                        self.pending.pop(index)
                        heapq.heapify(self.pending)
                    self.queue_updated()
                    break
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except Exception:
            body = {}
        if not isinstance(body, dict):
            body = {}
        target = body.get("prompt_id")
        if target is None:
            self.interrupted = True
        elif self.running is not None and self.running.prompt_id == target:
            self.interrupted = True
        else:
            # Targeted interrupt of a prompt that is not running does nothing (§2.4).
            log.info("Prompt %s is not currently running, skipping interrupt", target)
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            body = {}
        self.free_requests.append(body if isinstance(body, dict) else {})
        if body.get("unload_models") or body.get("free_memory"):
            MODEL_MEMORY.clear()
        if body.get("free_memory"):
            self.free_memory_requested = True
            if self.running is None:
                self.reset_cache()
        return web.Response(status=200)

    def reset_cache(self) -> None:
        self.cache.clear()
        self.node_state.clear()
        self.free_memory_requested = False

    # ------------------------------------------------------------------ history and jobs
    async def get_history(self, request: web.Request) -> web.Response:
        max_items = request.rel_url.query.get("max_items")
        offset = request.rel_url.query.get("offset")
        items = list(self.history.items())
        if offset is not None:
            start = int(offset)
            items = (
                items[start : start + int(max_items)] if max_items is not None else items[start:]
            )
        elif max_items is not None:
            items = items[-int(max_items) :] if int(max_items) > 0 else []
        return web.json_response(dict(items))

    async def get_history_prompt(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return web.Response(status=500)
        if body.get("clear"):
            self.history.clear()
        for prompt_id in body.get("delete", []) or []:
            self.history.pop(prompt_id, None)
        return web.Response(status=200)

    def _job(self, prompt_id: str, status: str, item_list: list, entry: dict | None) -> dict:
        extra = item_list[3]
        workflow = (extra.get("extra_pnginfo") or {}).get("workflow")
        job: dict[str, Any] = {
            "id": prompt_id,
            "status": status,
            "priority": item_list[0],
            "create_time": extra.get("create_time"),
            "outputs_count": 0,
            "workflow_id": workflow.get("id") if isinstance(workflow, dict) else None,
        }
        if entry is not None:
            outputs = entry["outputs"]
            job["outputs_count"] = sum(
                len(v)
                for out in outputs.values()
                for k, v in out.items()
                if isinstance(v, list) and k != "animated"
            )
            messages = dict((name, data) for name, data in entry["status"]["messages"])
            if "execution_start" in messages:
                job["execution_start_time"] = messages["execution_start"]["timestamp"]
            for end in ("execution_success", "execution_error", "execution_interrupted"):
                if end in messages:
                    job["execution_end_time"] = messages[end].get("timestamp")
            if "execution_error" in messages:
                job["execution_error"] = messages["execution_error"]
            preview = self._preview_output(outputs)
            if preview is not None:
                job["preview_output"] = preview
        return {k: v for k, v in job.items() if v is not None}

    @staticmethod
    def _preview_output(outputs: dict) -> dict | None:
        candidates = []
        for node_id, out in outputs.items():
            for media, items in out.items():
                if not isinstance(items, list):
                    continue
                for item in items:
                    if isinstance(item, dict) and "filename" in item:
                        candidates.append({**item, "nodeId": node_id, "mediaType": media})
        candidates.sort(key=lambda c: c.get("type") != "output")
        return candidates[0] if candidates else None

    def _all_jobs(self) -> list[tuple[dict, dict | None, list]]:
        jobs = []
        if self.running is not None:
            item = self.running.as_list()
            jobs.append((self._job(item[1], "in_progress", item, None), None, item))
        for queued in self.pending:
            item = queued.as_list()
            jobs.append((self._job(item[1], "pending", item, None), None, item))
        for prompt_id, entry in self.history.items():
            status = "completed" if entry["status"]["status_str"] == "success" else "failed"
            jobs.append(
                (self._job(prompt_id, status, entry["prompt"], entry), entry, entry["prompt"])
            )
        return jobs

    async def get_jobs(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        valid = ["pending", "in_progress", "completed", "failed"]
        statuses = None
        if "status" in query:
            statuses = [s.strip() for s in query["status"].split(",") if s.strip()]
            bad = [s for s in statuses if s not in valid]
            if bad:
                return web.json_response(
                    {
                        "error": f"Invalid status value(s): {', '.join(bad)}."
                        f" Valid values: {', '.join(valid)}"
                    },
                    status=400,
                )
        limit: int | None = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return web.json_response({"error": "limit must be an integer"}, status=400)
            if limit <= 0:
                return web.json_response({"error": "limit must be a positive integer"}, status=400)
        try:
            offset = max(0, int(query.get("offset", "0")))
        except ValueError:
            return web.json_response({"error": "offset must be an integer"}, status=400)
        jobs = [job for job, _, _ in self._all_jobs()]
        if statuses is not None:
            jobs = [job for job in jobs if job["status"] in statuses]
        if "workflow_id" in query:
            jobs = [job for job in jobs if job.get("workflow_id") == query["workflow_id"]]
        reverse = query.get("sort_order", "desc") != "asc"
        if query.get("sort_by") == "execution_duration":
            jobs.sort(
                key=lambda j: (
                    (j.get("execution_end_time") or 0) - (j.get("execution_start_time") or 0)
                ),
                reverse=reverse,
            )
        else:
            jobs.sort(key=lambda j: j.get("create_time") or 0, reverse=reverse)
        total = len(jobs)
        page = jobs[offset : offset + limit] if limit is not None else jobs[offset:]
        return web.json_response(
            {
                "jobs": page,
                "pagination": {
                    "offset": offset,
                    "limit": limit,
                    "total": total,
                    "has_more": offset + len(page) < total,
                },
            }
        )

    async def get_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        for job, entry, item in self._all_jobs():
            if job["id"] != job_id:
                continue
            if entry is not None:
                job = dict(job)
                job["outputs"] = entry["outputs"]
                job["execution_status"] = entry["status"]
                job["workflow"] = {"prompt": item[2], "extra_data": item[3]}
            return web.json_response(job)
        return web.json_response({"error": "Job not found"}, status=404)

    # ------------------------------------------------------------------ files
    def _type_dir(self, type_: str) -> Path | None:
        return {"output": self.dirs.output, "input": self.dirs.input, "temp": self.dirs.temp}.get(
            type_
        )

    async def view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        filename = query.get("filename")
        if not filename:
            return web.Response(status=404)
        type_ = query.get("type", "output")
        for annotation in ("output", "input", "temp"):
            suffix = f" [{annotation}]"
            if filename.endswith(suffix):
                filename = filename[: -len(suffix)]
                type_ = annotation
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        base_dir = self._type_dir(type_)
        if base_dir is None:
            return web.Response(status=400)
        directory = base_dir
        subfolder = query.get("subfolder", "")
        if subfolder:
            candidate = os.path.abspath(os.path.join(base_dir, os.path.normpath(subfolder)))
            if os.path.commonpath((candidate, os.path.abspath(base_dir))) != os.path.abspath(
                base_dir
            ):
                return web.Response(status=403)
            directory = Path(candidate)
        name = os.path.basename(filename)
        path = directory / name
        if not path.is_file():
            return web.Response(status=404)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if content_type in ("text/html", "text/javascript", "application/javascript", "text/css"):
            content_type = "application/octet-stream"
        # FileResponse streams the file in chunks (sendfile where possible).
        return web.FileResponse(
            path,
            headers={"Content-Type": content_type, "Content-Disposition": f'filename="{name}"'},
        )

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if image is None or not getattr(image, "filename", ""):
            return web.Response(status=400)
        type_ = str(post.get("type") or "input")
        base_dir = self._type_dir(type_)
        if base_dir is None:
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        subfolder = str(post.get("subfolder") or "")
        full_dir = os.path.abspath(os.path.join(base_dir, os.path.normpath(subfolder)))
        if os.path.commonpath((os.path.abspath(base_dir), full_dir)) != os.path.abspath(base_dir):
            return web.Response(status=400)
        os.makedirs(full_dir, exist_ok=True)
        data = image.file.read()
        overwrite = str(post.get("overwrite") or "").lower() in ("true", "1")
        filename = os.path.basename(image.filename)
        path = os.path.join(full_dir, filename)
        if os.path.exists(path) and not overwrite:
            # Identical bytes reuse the name; different bytes get "name (n).ext" (§2.7).
            digest = hashlib.sha256(data).hexdigest()
            stem, ext = os.path.splitext(filename)
            counter = 1
            while os.path.exists(path):
                with open(path, "rb") as existing:
                    if hashlib.sha256(existing.read()).hexdigest() == digest:
                        break
                filename = f"{stem} ({counter}){ext}"
                path = os.path.join(full_dir, filename)
                counter += 1
        if not os.path.exists(path) or overwrite:
            with open(path, "wb") as out:
                out.write(data)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": type_})

    # ------------------------------------------------------------------ introspection
    async def system_stats(self, request: web.Request) -> web.Response:
        total = 16 * 1024**3
        free = max(12 * 1024**3 - self.leaked_bytes, 0)
        device = (
            {"name": "cpu", "type": "cpu", "index": None}
            if self.args.cpu
            else {"name": "cuda:0 Emulated GPU : cudaMallocAsync", "type": "cuda", "index": 0}
        )
        device.update(
            {"vram_total": total, "vram_free": free, "torch_vram_total": 0, "torch_vram_free": 0}
        )
        return web.json_response(
            {
                "system": {
                    "os": os.name,
                    "ram_total": total,
                    "ram_free": free,
                    "comfyui_version": "0.8.0",
                    "required_frontend_version": "1.36.13",
                    "installed_templates_version": "0.7.69",
                    "required_templates_version": "0.7.69",
                    "python_version": sys.version,
                    "pytorch_version": "emulated",
                    "embedded_python": False,
                    "argv": sys.argv,
                    "emulator": True,
                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "platform": platform.platform(),
                },
                "devices": [device],
            }
        )

    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {name: object_info(cls, self.dirs.input) for name, cls in NODE_CLASSES.items()}
        )

    async def get_object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        cls = NODE_CLASSES.get(name)
        return web.json_response({name: object_info(cls, self.dirs.input)} if cls else {})

    async def get_features(self, request: web.Request) -> web.Response:
        return web.json_response(self.features)

    async def get_embeddings(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def get_models(self, request: web.Request) -> web.Response:
        return web.json_response(list(MODEL_FOLDERS))

    async def get_models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(model_files(folder))

    # ------------------------------------------------------------------ faults
    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults)

    async def get_loaded_models(self, request: web.Request) -> web.Response:
        """The model files loaded now, least recently used first, and how many loads so far
        (test-only)."""
        return web.json_response(MODEL_MEMORY.describe())

    async def get_free_requests(self, request: web.Request) -> web.Response:
        """Every POST /free body received so far, oldest first (test-only)."""
        return web.json_response(self.free_requests)

    async def post_faults(self, request: web.Request) -> web.Response:
        """Replace the whole fault set with the JSON object posted (`{}` clears it).

        Per node class, checked when a node of that class starts executing (not on cache hits):
          crash_on_node   os._exit mid-node (exit code `crash_exit_code`, default 134)
          hang_on_node    the worker stops forever; HTTP and WebSocket keep answering
                          (with hang_until_interrupted: true, until the prompt is interrupted;
                          with hang_once: true, only the first such node hangs)
          freeze_on_node  the whole event loop blocks (`freeze_seconds`): nothing answers
          fail_on_node    execution error with `exception_type` / `exception_message`
                          (with fail_once: true, only the first such node fails)
          drop_websockets_on_node   close every WebSocket once
        Immediate: drop_websockets (close every WebSocket now), refuse_connections (stop
        listening; the process stays alive). hang_on_progress stops at the next progress tick.
        leak_mb: the next prompt run holds that many MiB more, forever (as --leak-mb-per-prompt).
        The same keys work as `--emulator-fault KEY=VALUE` flags at startup; there
        refuse_connections means the port is never bound, startup_delay_seconds delays binding.
        """
        body = await request.json()
        if not isinstance(body, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        self.faults = dict(body)
        log.warning("emulator faults set: %s", self.faults)
        if self.faults.pop("drop_websockets", False):
            self.spawn(self.close_sockets())
        if self.faults.get("refuse_connections"):
            self.spawn(self.stop_listening())
        return web.json_response(self.faults)

    async def close_sockets(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()

    async def stop_listening(self) -> None:
        await asyncio.sleep(0)  # let the fault response go out first
        if self.site is not None:
            await self.site.stop()
            self.site = None
        await self.close_sockets()

    # ------------------------------------------------------------------ execution
    async def prompt_worker(self) -> None:
        while True:
            while not self.pending:
                self.queue_changed.clear()
                await self.queue_changed.wait()
            item = heapq.heappop(self.pending)
            self.running = item
            self.queue_updated()
            try:
                entry = await self.execute(item)
            except Exception:
                log.exception("emulator worker failed")
                entry = {
                    "outputs": {},
                    "status": {"status_str": "error", "completed": False, "messages": []},
                    "meta": {},
                }
            # task_done: write history, broadcast status, then `executing null` (§4.9).
            if len(self.history) > MAX_HISTORY:
                self.history.popitem(last=False)
            self.history.pop(item.prompt_id, None)
            self.history[item.prompt_id] = {"prompt": item.as_list(), **entry}
            self.running = None
            self.current_node = None
            self.queue_updated()
            client_id = item.extra_data.get("client_id")
            if client_id is not None:
                self.send("executing", {"node": None, "prompt_id": item.prompt_id}, client_id)
            if self.free_memory_requested:
                self.reset_cache()
            self.leak()

    def leak(self) -> None:
        """Hold `leak_bytes_per_prompt` more, and once the `leak_mb` fault's MiB, written through
        so every page is resident (a zeroed bytearray would only reserve address space, and RSS
        would not move)."""
        size = self.leak_bytes_per_prompt + int(float(self.faults.pop("leak_mb", 0)) * 1024 * 1024)
        if size > 0:
            self.leaked.append(bytearray(b"\x01") * size)

    @property
    def leaked_bytes(self) -> int:
        return sum(len(block) for block in self.leaked)

    def _signature(self, prompt: dict, node_id: str, memo: dict) -> Any:
        if node_id in memo:
            return memo[node_id]
        node = prompt[node_id]
        cls = NODE_CLASSES[node["class_type"]]
        parts: list[Any] = [node["class_type"]]
        for name in sorted(node.get("inputs", {})):
            value = node["inputs"][name]
            if is_link(value) and value[0] in prompt:
                parts.append((name, self._signature(prompt, value[0], memo), value[1]))
            else:
                parts.append((name, json.dumps(value, sort_keys=True, default=str)))
        parts.append(repr(cls.fingerprint(node.get("inputs", {}), self.dirs.input)))
        if cls.NOT_IDEMPOTENT:
            parts.append(node_id)
        signature = tuple(parts)
        memo[node_id] = signature
        return signature

    async def execute(self, item: QueueItem) -> dict:
        prompt, prompt_id = item.prompt, item.prompt_id
        client_id = item.extra_data.get("client_id")
        self.interrupted = False  # reset at the start of every prompt (§4.2)
        messages: list[list] = []
        ui_outputs: dict[str, dict] = {}
        progress_nodes: dict[str, dict] = {}
        preview_method = item.extra_data.get("preview_method") or self.args.preview_method or "none"

        def client_message(event: str, data: dict, keep: bool = True) -> None:
            if keep:
                messages.append([event, data])
            if client_id is not None:
                self.send(event, data, client_id)

        def progress_state(node_id: str, value: float, max_value: float, state: str) -> None:
            progress_nodes[node_id] = {
                "value": value,
                "max": max_value,
                "state": state,
                "node_id": node_id,
                "prompt_id": prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            # Cumulative map; sent to the submitter, or broadcast without client_id (§3.2).
            self.send(
                "progress_state",
                {"prompt_id": prompt_id, "nodes": {k: dict(v) for k, v in progress_nodes.items()}},
                client_id,
            )

        client_message("execution_start", {"prompt_id": prompt_id, "timestamp": now_ms()})
        memo: dict[str, Any] = {}
        signatures = {node_id: self._signature(prompt, node_id, memo) for node_id in prompt}
        if not self.cache_enabled:
            self.cache.clear()
        cached = [node_id for node_id in prompt if signatures[node_id] in self.cache]
        client_message(
            "execution_cached", {"nodes": cached, "prompt_id": prompt_id, "timestamp": now_ms()}
        )

        order = self._execution_order(prompt, item.outputs_to_execute, set(cached))
        # Cache hits are not staged as dependencies, so the nodes that do run read the hits'
        # outputs from the cache (comfyui-protocol.md §3.5 item 3, §4.8).
        values: dict[str, tuple] = {
            node_id: self.cache[signatures[node_id]].outputs for node_id in cached
        }
        executed: list[str] = []
        result_status = "success"
        current: str | None = None
        try:
            for node_id in order:
                current = node_id
                node = prompt[node_id]
                cls = NODE_CLASSES[node["class_type"]]
                signature = signatures[node_id]
                if signature in self.cache:
                    # A cached output node replays its UI; it gets no `executing` (§3.5 item 2).
                    # A node whose twin ran earlier in this prompt is a hit too.
                    entry = self.cache[signature]
                    values[node_id] = entry.outputs
                    ui = entry.ui
                    if ui is not None:
                        ui_outputs[node_id] = ui
                        client_message(
                            "executed",
                            {
                                "node": node_id,
                                "display_node": node_id,
                                "output": ui,
                                "prompt_id": prompt_id,
                            },
                            keep=False,
                        )
                    progress_state(node_id, 1, 1, "finished")
                    continue
                progress_state(node_id, 0.0, 1.0, "running")
                self.current_node = node_id
                client_message(
                    "executing",
                    {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
                    keep=False,
                )
                await self._node_faults(cls.__name__)
                self.check_interrupt()
                kwargs = {}
                for name, value in node.get("inputs", {}).items():
                    if is_link(value):
                        kwargs[name] = values[value[0]][value[1]]
                    elif isinstance(value, dict) and "__value__" in value:
                        kwargs[name] = value["__value__"]
                    else:
                        kwargs[name] = value
                kwargs = {k: v for k, v in kwargs.items() if k in cls.REQUIRED or k in cls.OPTIONAL}
                last_progress: list[float] = [0.0, 1.0]

                async def progress(
                    value: float,
                    max_value: float,
                    preview: tuple[str, bytes] | None,
                    node_id: str = node_id,
                    last: list[float] = last_progress,
                ) -> None:
                    await self._send_progress(
                        prompt_id, client_id, node_id, value, max_value, preview, progress_state
                    )
                    last[0], last[1] = value, max_value

                async def text(message: str, node_id: str = node_id) -> None:
                    encoded = node_id.encode()
                    self.send_bytes(
                        struct.pack(">II", BINARY_TEXT, len(encoded)) + encoded + message.encode(),
                        None,
                    )

                ctx = NodeContext(
                    prompt_id=prompt_id,
                    node_id=node_id,
                    prompt=prompt,
                    extra_data=item.extra_data,
                    output_dir=self.dirs.output,
                    temp_dir=self.dirs.temp,
                    input_dir=self.dirs.input,
                    disable_metadata=self.args.disable_metadata,
                    preview_method=preview_method,
                    progress=progress,
                    text=text,
                    check_interrupt=self.check_interrupt,
                    node_state=self.node_state.setdefault((node_id, node["class_type"]), {}),
                )
                instance: Node = cls()
                for input_name, folder in cls.MODEL_INPUTS.items():
                    if isinstance(kwargs.get(input_name), str):
                        await MODEL_MEMORY.use(folder, kwargs[input_name], self.check_interrupt)
                result = await instance.execute(ctx, **kwargs)
                values[node_id] = result.outputs
                if self.cache_enabled:
                    self.cache[signature] = CacheEntry(result.outputs, result.ui)
                if result.ui is not None:
                    ui_outputs[node_id] = result.ui
                    client_message(
                        "executed",
                        {
                            "node": node_id,
                            "display_node": node_id,
                            "output": result.ui,
                            "prompt_id": prompt_id,
                        },
                        keep=False,
                    )
                executed.append(node_id)
                if last_progress != [0.0, 1.0]:
                    progress_state(node_id, last_progress[1], last_progress[1], "finished")
                else:
                    progress_state(node_id, 1.0, 1.0, "finished")
            client_message("execution_success", {"prompt_id": prompt_id, "timestamp": now_ms()})
        except InterruptProcessing:
            result_status = "error"
            data = {
                "prompt_id": prompt_id,
                "node_id": current,
                "node_type": prompt[current]["class_type"] if current else None,
                "executed": executed,
                "timestamp": now_ms(),
            }
            # Broadcast when the prompt has no client_id (comfyui-protocol.md §3.4).
            messages.append(["execution_interrupted", data])
            self.send("execution_interrupted", data, client_id)
        except Exception as exc:
            result_status = "error"
            exception_type = full_type_name(exc)
            message = str(exc)
            if exception_type.endswith("OutOfMemoryError"):
                message += OOM_TIP
                MODEL_MEMORY.clear()  # ComfyUI unloads every model after an OOM (§4.3)
            node = prompt[current] if current else {}
            data = {
                "prompt_id": prompt_id,
                "node_id": current,
                "node_type": node.get("class_type"),
                "executed": executed,
                "exception_message": message + "\n",
                "exception_type": exception_type,
                "traceback": [f'  File "emulator_nodes.py", in {node.get("class_type")}.execute\n'],
                "current_inputs": {
                    name: [
                        value
                        if isinstance(value, (int, float, str, bool)) or value is None
                        else str(value)
                    ]
                    for name, value in node.get("inputs", {}).items()
                },
                "current_outputs": list(prompt),
                "timestamp": now_ms(),
            }
            client_message("execution_error", data)
        finally:
            self.current_node = None
        if self.cache_enabled:
            # The classic cache keeps only signatures of the latest prompt (§4.8).
            live = set(signatures.values())
            for key in [k for k in self.cache if k not in live]:
                del self.cache[key]
        return {
            "outputs": ui_outputs,
            "status": {
                "status_str": result_status,
                "completed": result_status == "success",
                "messages": messages,
            },
            "meta": {
                node_id: {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                }
                for node_id in ui_outputs
            },
        }

    async def _send_progress(
        self, prompt_id, client_id, node_id, value, max_value, preview, progress_state
    ):
        # Order per tick: progress_state, type-4 preview, progress, type-1 preview (§3.3).
        self.check_interrupt()
        progress_state(node_id, value, max_value, "running")
        wants_metadata = client_id is not None and self.socket_flags.get(client_id, {}).get(
            "supports_preview_metadata"
        )
        if preview is not None and wants_metadata:
            image_format, data = preview
            metadata = json.dumps(
                {
                    "node_id": node_id,
                    "prompt_id": prompt_id,
                    "display_node_id": node_id,
                    "parent_node_id": None,
                    "real_node_id": node_id,
                    "image_type": "image/jpeg" if image_format == "JPEG" else "image/png",
                }
            ).encode()
            self.send_bytes(
                struct.pack(">II", BINARY_PREVIEW_IMAGE_WITH_METADATA, len(metadata))
                + metadata
                + data,
                client_id,
            )
        self.send(
            "progress",
            {"value": value, "max": max_value, "prompt_id": prompt_id, "node": node_id},
            client_id,
        )
        if preview is not None and not wants_metadata:
            image_format, data = preview
            self.send_bytes(
                struct.pack(">II", BINARY_PREVIEW_IMAGE, PREVIEW_FORMATS[image_format]) + data,
                client_id,
            )
        if self.faults.get("hang_on_progress"):
            await asyncio.Event().wait()

    def check_interrupt(self) -> None:
        if self.interrupted:
            self.interrupted = False
            raise InterruptProcessing()

    async def _node_faults(self, class_type: str) -> None:
        faults = self.faults
        if faults.get("drop_websockets_on_node") == class_type:
            faults.pop("drop_websockets_on_node")
            await self.close_sockets()
        if faults.get("crash_on_node") == class_type:
            log.error("emulator fault: crashing on %s", class_type)
            sys.stderr.flush()
            os._exit(faults.get("crash_exit_code", 134))
        if faults.get("freeze_on_node") == class_type:
            # Blocks the whole event loop: HTTP and WebSocket stop answering, the process lives.
            log.error("emulator fault: freezing on %s", class_type)
            time.sleep(float(faults.get("freeze_seconds", 3600)))
        if faults.get("hang_on_node") == class_type:
            log.error("emulator fault: hanging on %s", class_type)
            if faults.get("hang_once"):
                faults.pop("hang_on_node")
            if not faults.get("hang_until_interrupted"):
                await asyncio.Event().wait()
            # A node busy without reporting that still checks the interrupt flag (like a sampler
            # between steps, comfyui-protocol.md §4.2): silent until someone interrupts it.
            while not self.interrupted:
                await asyncio.sleep(0.05)
            self.check_interrupt()
        if faults.get("fail_on_node") == class_type:
            if faults.get("fail_once"):
                faults.pop("fail_on_node")
            raise EmulatedFailure(
                faults.get("exception_type", "RuntimeError"),
                faults.get("exception_message", f"emulated failure in {class_type}"),
            )

    def _execution_order(self, prompt: dict, outputs: list[str], cached: set[str]) -> list[str]:
        """Stage nodes like ExecutionList: cached nodes are not pulled in as dependencies, and
        among ready nodes output nodes go first, then nodes feeding an output (§3.5)."""
        needed: dict[str, None] = {}

        def add(node_id: str) -> None:
            if node_id in needed:
                return
            needed[node_id] = None
            for value in prompt[node_id].get("inputs", {}).values():
                if is_link(value) and value[0] not in cached:
                    add(value[0])

        for output_id in outputs:
            add(output_id)
        deps = {
            node_id: {
                value[0]
                for value in prompt[node_id].get("inputs", {}).values()
                if is_link(value) and value[0] in needed
            }
            for node_id in needed
        }
        done: set[str] = set()
        order: list[str] = []
        while len(order) < len(needed):
            ready = [n for n in needed if n not in done and deps[n] <= done]
            if not ready:
                raise RuntimeError("dependency cycle")

            def is_output(node_id: str) -> bool:
                return NODE_CLASSES[prompt[node_id]["class_type"]].OUTPUT_NODE

            pick = next((n for n in ready if is_output(n)), None)
            if pick is None:
                pick = next(
                    (n for n in ready if any(n in deps[o] and is_output(o) for o in needed)),
                    ready[0],
                )
            done.add(pick)
            order.append(pick)
        return order
