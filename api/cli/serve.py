"""`comfy-temporal dev` (the whole stack on one machine) and `comfy-temporal api` (production API).

`dev` starts the Temporal dev server (SQLite under the data dir, Web UI, our search attributes),
the API with an embedded control worker, and one GPU worker when ComfyUI is configured. Ctrl-C or
SIGTERM stops the GPU worker (it finishes its job), then the API, then Temporal; nothing is left
running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from activities.io.ports import free_port
from activities.workers.cli import (
    EXIT_COMFYUI_UNUSABLE,
    add_admission_flags,
    add_comfyui_flags,
    add_data_dir_flag,
    add_log_format_flag,
    add_manifest_dir_flags,
    add_output_store_flags,
    add_routing_flags,
    add_temporal_flags,
    comfyui_flags,
    comfyui_problem,
    open_configured_store,
)
from activities.workers.logs import configure_logging
from activities.workers.settings import add_setting_flag, settings_from_args
from activities.workers.temporal_client import exit_now
from activities.workers.tracing import Tracing, add_tracing_flags, start_tracing
from api.api_keys import InsecureBind, check_bind_access, read_api_keys_file
from api.app import create_app
from api.cli.devstack.child_process import ChildProcess
from api.cli.devstack.http_server import ApiServer
from api.cli.devstack.temporal_server import (
    DevServerConfig,
    DevServerError,
    TemporalDevServer,
    temporal_cli,
)
from api.metrics import api_metrics_with_sdk
from api.settings import DevSettings, Settings

ApiOrDev = TypeVar("ApiOrDev", Settings, DevSettings)


def _add_common_api_flags(p: argparse.ArgumentParser) -> None:
    add_data_dir_flag(p, "outputs, Temporal's database and logs")
    add_setting_flag(p, Settings, "host", "--host", help="API bind address")
    add_setting_flag(p, Settings, "port", "--port", type=int, help="API port")
    add_manifest_dir_flags(p)
    add_output_store_flags(p, download_mode=True)
    add_setting_flag(
        p, Settings, "public_url", "--public-url",
        help="base URL clients use, for download links",
    )  # fmt: skip
    add_setting_flag(
        p, Settings, "api_keys_file", "--api-keys-file", type=Path, metavar="FILE",
        help="API keys, one per line, besides those in env COMFY_API_KEYS (comma-separated);"
        " with none the API is open",
    )  # fmt: skip
    add_setting_flag(
        p, Settings, "insecure_no_auth", "--insecure-no-auth", action="store_true",
        help="serve without API keys on a non-loopback --host",
    )  # fmt: skip
    add_setting_flag(
        p, Settings, "download_url_ttl_seconds", "--download-url-ttl", type=int, metavar="SECONDS",
        help="how long signed download URLs stay valid (the secret is env COMFY_URL_SIGNING_KEY,"
        " else <data-dir>/url-signing.key)",
    )  # fmt: skip
    add_setting_flag(
        p, Settings, "max_body_bytes", "--max-body-bytes", type=int, metavar="BYTES",
        help="largest request body accepted, 413 above",
    )  # fmt: skip
    add_admission_flags(p)
    add_routing_flags(p)
    add_setting_flag(
        p, Settings, "log_level", "--log-level",
        choices=["debug", "info", "warning", "error"], help="log level",
    )  # fmt: skip
    add_log_format_flag(p)
    add_tracing_flags(p)


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser(
        "dev",
        help="run everything on this machine: Temporal dev server, API, control and GPU worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_api_flags(dev)
    # The same flags as `gpu-worker`: dev passes them on to the GPU worker it starts.
    add_comfyui_flags(dev)
    add_setting_flag(
        dev, DevSettings, "temporal_port", "--temporal-port", type=int,
        help="Temporal frontend port",
    )  # fmt: skip
    add_setting_flag(
        dev, DevSettings, "ui_port", "--ui-port", type=int, help="Temporal Web UI port"
    )
    add_setting_flag(
        dev, DevSettings, "headless", "--headless", action="store_true", help="no Temporal Web UI"
    )
    add_setting_flag(
        dev, DevSettings, "shutdown_grace", "--shutdown-grace", type=float, metavar="SECONDS",
        help="seconds each process gets to stop before it is killed",
    )  # fmt: skip
    dev.set_defaults(func=run_dev_command)

    api = subparsers.add_parser(
        "api",
        help="run the HTTP API against a Temporal cluster (TEMPORAL_ADDRESS, ...)",
        description="The production API. Reaches Temporal through temporalio.envconfig: "
        "TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS*, TEMPORAL_API_KEY.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_api_flags(api)
    add_temporal_flags(api)
    add_setting_flag(
        api, Settings, "embedded_control_worker", "--with-control-worker", action="store_true",
        help="also run the control worker in this process",
    )  # fmt: skip
    api.set_defaults(func=run_api_command)


def api_settings(kind: type[ApiOrDev], args: argparse.Namespace, **fixed: Any) -> ApiOrDev:
    """The command's settings, with the keys of --api-keys-file added; ends the command (exit 2)
    with the reason when they are invalid, the access configuration is refused or the output
    store cannot be opened, before Temporal or ComfyUI start."""
    settings = settings_from_args(kind, args, **fixed)
    keys = settings.api_keys
    problem = None
    if settings.api_keys_file is not None:
        try:
            keys += read_api_keys_file(settings.api_keys_file)
        except OSError as err:
            problem = f"cannot read --api-keys-file {settings.api_keys_file}: {err.strerror}"
    if problem is None:
        try:
            check_bind_access(settings.host, keys, insecure_no_auth=settings.insecure_no_auth)
        except InsecureBind as err:
            problem = str(err)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        exit_now(2)
    settings = settings.model_copy(
        update={"api_keys": keys, "data_dir": settings.data_dir.resolve()}
    )
    open_configured_store(settings, settings.data_dir)
    return settings


def _uvicorn_server(app: Any, settings: Settings) -> ApiServer:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # JSON: uvicorn's own handlers stay out, its lines go to the process's JSON handler.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        lifespan="on",
    )
    return ApiServer(config)


async def _serve_until_signal(
    server: ApiServer,
    before_stop: Callable[[], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM or `stop` is set (or uvicorn stops by itself, e.g. port taken).

    `before_stop` runs while the API still serves (the GPU worker finishes its job first).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    stop_wait = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([serving, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if before_stop is not None:
            await before_stop()
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await serving
        stop_wait.cancel()
        # The handlers stay: a second Ctrl-C during shutdown must not kill this process before
        # its children are stopped (each stop is bounded by its grace period anyway).


def run_api_command(args: argparse.Namespace) -> int:
    settings = api_settings(Settings, args)
    configure_logging(settings.log_level, settings.log_format)
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> int:
        from activities.workers.temporal_client import connect_process_client

        metrics, runtime = api_metrics_with_sdk("api")
        tracing = start_tracing(settings, "api")
        try:
            client = await connect_process_client(settings, runtime=runtime, tracing=tracing)
        except Exception as err:  # the user's configuration to fix, not a traceback
            print(f"error: cannot reach Temporal: {err}", file=sys.stderr)
            return 1
        server = _uvicorn_server(
            create_app(settings, temporal_client=client, metrics=metrics, tracing=tracing),
            settings,
        )
        try:
            await _serve_until_signal(server)
        finally:
            if tracing is not None:  # the process ends with os._exit: send the last spans now
                await asyncio.to_thread(tracing.shutdown)
        return 0 if server.started else 1

    exit_now(asyncio.run(main()))


# ---- dev ----


def gpu_worker_command(settings: DevSettings) -> list[str] | None:
    """`comfy-temporal gpu-worker ...` for the configured ComfyUI, or None when there is none."""
    if not settings.configured:
        return None
    store = ["--output-store", settings.output_store] if settings.output_store else []
    return [
        sys.executable, "-m", "api.cli.main", "gpu-worker",
        "--data-dir", str(settings.data_dir),
        *store,
        *comfyui_flags(settings),
        "--log-format", settings.log_format,
        *(["--otlp-endpoint", settings.otlp_endpoint] if settings.otlp_endpoint else []),
        # Its jobs get a little less than the whole grace, so it exits before dev kills it.
        "--shutdown-grace", str(max(settings.shutdown_grace - 5, 1)),
    ]  # fmt: skip


def _child_env(temporal_address: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The GPU worker gets its ComfyUI settings as flags; stale env values must not mix in.
    for name in ("COMFYUI_PATH", "COMFYUI_URL", "COMFYUI_PYTHON", "COMFYUI_ARGS", "GPU"):
        env.pop(name, None)
    env["TEMPORAL_ADDRESS"] = temporal_address
    env.pop("TEMPORAL_NAMESPACE", None)  # the dev server serves "default"
    env.update(extra or {})
    return env


def as_typed(program: str) -> str:
    """`program` as a user types it in this directory: relative when it lies below (so
    `.venv/bin/temporal` runs as written from the checkout), else the absolute path."""
    path = Path(program).absolute()
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    return str(relative) if relative.parent != Path(".") else f"./{relative}"


def _banner(
    settings: DevSettings, server: TemporalDevServer, gpu: bool, gpu_metrics_port: int
) -> str:
    api_url = f"http://{settings.host}:{settings.port}"
    metrics = f"{api_url}/metrics (API, control worker)"
    if gpu:
        metrics += f", http://127.0.0.1:{gpu_metrics_port}/metrics (GPU worker)"
    try:
        temporal = as_typed(temporal_cli())
    except DevServerError:  # the server runs, so the binary is there; only paranoia
        temporal = "temporal"
    lines = [
        "",
        "comfy-temporal is running",
        f"  API docs:         {api_url}/docs",
        f"  API:              {api_url}  (POST /generate, GET /tasks/<task_id>)",
        f"  Temporal Web UI:  {server.ui_url or '(headless)'}",
        f"  Temporal address: {server.address}   e.g. {temporal} workflow list"
        f" --address {server.address}",
        f"  Metrics:          {metrics}",
        f"  Data:             {settings.data_dir}",
        f"  Outputs:          {settings.output_store or settings.outputs_dir}",
    ]
    if gpu:
        source = settings.comfyui_url or settings.comfyui_path
        lines.append(f"  GPU worker:       ComfyUI at {source}")
    else:
        lines.append(
            "  GPU worker:       none - ComfyUI is not configured, so jobs will wait for a GPU"
            " worker. Set COMFYUI_PATH (or --comfyui PATH / --comfyui-url URL) to run them."
        )
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


async def run_dev(settings: DevSettings) -> int:
    # Say so before anything starts, rather than after Temporal and ComfyUI came up.
    problem = comfyui_problem(settings)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    for what, port in (("API", settings.port), ("Temporal", settings.temporal_port)):
        if _port_taken(settings.host if what == "API" else "127.0.0.1", port):
            print(f"error: the {what} port {port} is already in use", file=sys.stderr)
            return 1
    # A signal while things start cancels the startup; the `finally` below still stops every
    # child already started. Once serving, _serve_until_signal takes the signals over.
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    settings.outputs_dir.mkdir(exist_ok=True)
    server = TemporalDevServer(
        DevServerConfig(
            db_file=data_dir / "temporal.db",
            port=settings.temporal_port,
            ui_port=None if settings.headless else settings.ui_port,
            log_file=data_dir / "logs" / "temporal.log",
        )
    )
    gpu_worker: ChildProcess | None = None
    tracing: Tracing | None = None
    waits: list[asyncio.Task[Any]] = []
    stop = asyncio.Event()  # set by SIGINT/SIGTERM, or when the GPU worker cannot run ComfyUI
    unusable = asyncio.Event()  # the latter: the stack then stops with the GPU worker's code

    async def stop_gpu_worker() -> None:
        for task in waits:  # the exit we cause now is not worth a warning
            task.cancel()
        if gpu_worker is not None and gpu_worker.running:
            print("stopping the GPU worker (it finishes its current job)...", flush=True)
            await gpu_worker.stop(grace=settings.shutdown_grace)

    async def before_api_stops() -> None:
        await stop_gpu_worker()
        print("stopping the API and the control worker...", flush=True)

    try:
        try:
            await server.start()
        except DevServerError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"Temporal dev server ready on {server.address} (pid {server.pid})", flush=True)

        from activities.workers.temporal_client import connect_temporal

        metrics, runtime = api_metrics_with_sdk("api")
        tracing = start_tracing(settings, "api")
        client = await connect_temporal(
            server.address,
            "default",
            runtime=runtime,
            interceptors=[tracing.interceptor()] if tracing else [],
        )
        argv = gpu_worker_command(settings)
        gpu_metrics_port = free_port()
        if argv is not None:
            # On loopback whatever COMFY_METRICS_HOST says, as the banner tells.
            argv += ["--metrics-port", str(gpu_metrics_port), "--metrics-host", "127.0.0.1"]
            gpu_worker = ChildProcess("gpu-worker", argv, env=_child_env(server.address))
            await gpu_worker.start()
            # The GPU worker's exit is reported, not fatal (the API keeps serving, jobs wait),
            # unless its ComfyUI cannot run at all.
            waits.append(asyncio.create_task(_report_exit(gpu_worker, unusable, stop)))
        app = create_app(
            settings.model_copy(
                update={"embedded_control_worker": True, "temporal_address": server.address}
            ),
            temporal_client=client,
            metrics=metrics,
            tracing=tracing,
        )
        uv = _uvicorn_server(app, settings)
        banner = _banner(settings, server, bool(argv), gpu_metrics_port)
        waits.append(asyncio.create_task(_print_when_started(uv, banner)))
        await _serve_until_signal(uv, before_stop=before_api_stops, stop=stop)
        if unusable.is_set():
            return EXIT_COMFYUI_UNUSABLE
        return 0 if uv.started else 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # nothing may interrupt the cleanup
            asyncio.get_running_loop().add_signal_handler(sig, lambda: None)
        await stop_gpu_worker()
        print("stopping the Temporal dev server...", flush=True)
        await server.stop(grace=settings.shutdown_grace)
        if tracing is not None:  # the process ends with os._exit: send the last spans now
            await asyncio.to_thread(tracing.shutdown)
        print("stopped", flush=True)


async def _print_when_started(server: ApiServer, banner: str) -> None:
    while not server.started:
        await asyncio.sleep(0.05)
    print(banner, flush=True)


async def _report_exit(child: ChildProcess, unusable: asyncio.Event, stop: asyncio.Event) -> None:
    code = await child.wait()
    if code == EXIT_COMFYUI_UNUSABLE:  # it said why; nothing will run jobs, so stop the stack
        print("error: the GPU worker cannot run ComfyUI (see above); stopping", file=sys.stderr)
        unusable.set()
        stop.set()
        return
    print(
        f"warning: the {child.name} (pid {child.pid}) exited with code {code};"
        " jobs wait until a GPU worker runs again",
        file=sys.stderr,
        flush=True,
    )


def run_dev_command(args: argparse.Namespace) -> int:
    settings = api_settings(DevSettings, args)  # before Temporal or ComfyUI start
    configure_logging(settings.log_level, settings.log_format)
    try:
        code = asyncio.run(run_dev(settings))
    except (KeyboardInterrupt, asyncio.CancelledError):  # stopped while starting up
        code = 130
    exit_now(code)
