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
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from activities.io.output_store import OutputStoreError, open_output_store
from activities.workers.cli import (
    add_manifest_dir_flags,
    add_output_store_flags,
    add_temporal_flags,
)
from activities.workers.logs import configure_logging
from api.api_keys import InsecureBind, check_bind_access, parse_api_keys, read_api_keys_file
from api.app import create_app
from api.cli.devstack.child_process import ChildProcess
from api.cli.devstack.http_server import ApiServer
from api.cli.devstack.temporal_server import DevServerConfig, DevServerError, TemporalDevServer
from api.settings import Settings

log = logging.getLogger("comfy_temporal.dev")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _add_common_api_flags(p: argparse.ArgumentParser) -> None:
    env = os.environ
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env.get("DATA_DIR") or "data"),
        help="outputs, Temporal's database and logs (env DATA_DIR; default ./data)",
    )
    p.add_argument(
        "--host",
        default=env.get("COMFY_API_HOST", "127.0.0.1"),
        help="API bind address (env COMFY_API_HOST; default 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=_env_int("COMFY_API_PORT", 8000),
        help="API port (env COMFY_API_PORT; default 8000)",
    )
    add_manifest_dir_flags(p)
    add_output_store_flags(p, download_mode=True)
    p.add_argument(
        "--public-url",
        default=env.get("COMFY_PUBLIC_URL"),
        help="base URL clients use, for download links (env COMFY_PUBLIC_URL)",
    )
    p.add_argument(
        "--api-keys-file",
        type=Path,
        default=Path(env["COMFY_API_KEYS_FILE"]) if env.get("COMFY_API_KEYS_FILE") else None,
        metavar="FILE",
        help="API keys, one per line, besides those in env COMFY_API_KEYS (comma-separated);"
        " with none the API is open (env COMFY_API_KEYS_FILE)",
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=_env_flag("COMFY_INSECURE_NO_AUTH"),
        help="serve without API keys on a non-loopback --host (env COMFY_INSECURE_NO_AUTH)",
    )
    p.add_argument(
        "--download-url-ttl",
        type=_int_at_least(1),
        # A string default goes through `type` too, so a bad env value is a usage error.
        default=env.get("COMFY_DOWNLOAD_URL_TTL") or str(24 * 3600),
        metavar="SECONDS",
        help="how long signed download URLs stay valid (env COMFY_DOWNLOAD_URL_TTL; default 86400;"
        " the secret is env COMFY_URL_SIGNING_KEY, else <data-dir>/url-signing.key)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_int_at_least(1024),
        default=env.get("COMFY_MAX_BODY_BYTES") or str(1024 * 1024),
        metavar="BYTES",
        help="largest request body accepted, 413 above (env COMFY_MAX_BODY_BYTES; default 1 MiB)",
    )
    p.add_argument(
        "--log-level",
        default=env.get("COMFY_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level (env COMFY_LOG_LEVEL; default info)",
    )


def register(subparsers: Any) -> None:
    env = os.environ
    dev = subparsers.add_parser(
        "dev",
        help="run everything on this machine: Temporal dev server, API, control and GPU worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_api_flags(dev)
    dev.add_argument(
        "--comfyui",
        type=Path,
        default=Path(env["COMFYUI_PATH"]) if env.get("COMFYUI_PATH") else None,
        metavar="PATH",
        help="ComfyUI install directory to launch (env COMFYUI_PATH)",
    )
    dev.add_argument(
        "--comfyui-python",
        default=env.get("COMFYUI_PYTHON"),
        metavar="PY",
        help="ComfyUI's own Python interpreter (env COMFYUI_PYTHON; default: its venv or python3)",
    )
    dev.add_argument(
        "--comfyui-url",
        default=env.get("COMFYUI_URL"),
        metavar="URL",
        help="attach to a running ComfyUI instead of launching one (env COMFYUI_URL)",
    )
    dev.add_argument(
        "--comfyui-arg",
        action="append",
        default=shlex.split(env.get("COMFYUI_ARGS", "")),
        metavar="ARG",
        help="extra ComfyUI flag, repeatable, e.g. --comfyui-arg=--cpu (env COMFYUI_ARGS)",
    )
    dev.add_argument(
        "--gpu",
        type=int,
        default=_env_int("GPU", None),
        metavar="N",
        help="CUDA device of the GPU worker's ComfyUI (env GPU)",
    )
    dev.add_argument(
        "--worker-name",
        default=env.get("COMFY_WORKER_NAME"),
        help="name of the GPU worker (env COMFY_WORKER_NAME; default <host>-gpu<N>)",
    )
    dev.add_argument(
        "--temporal-port",
        type=int,
        default=_env_int("COMFY_TEMPORAL_PORT", 7233),
        help="Temporal frontend port (env COMFY_TEMPORAL_PORT)",
    )
    dev.add_argument(
        "--ui-port",
        type=int,
        default=_env_int("COMFY_TEMPORAL_UI_PORT", 8233),
        help="Temporal Web UI port (env COMFY_TEMPORAL_UI_PORT)",
    )
    dev.add_argument(
        "--headless",
        action="store_true",
        default=_env_flag("COMFY_TEMPORAL_HEADLESS"),
        help="no Temporal Web UI (env COMFY_TEMPORAL_HEADLESS)",
    )
    dev.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(env.get("COMFY_SHUTDOWN_GRACE", "20")),
        help="seconds each process gets to stop before it is killed (env COMFY_SHUTDOWN_GRACE)",
    )
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
    api.add_argument(
        "--with-control-worker",
        action="store_true",
        default=_env_flag("COMFY_EMBEDDED_CONTROL_WORKER"),
        help="also run the control worker in this process (env COMFY_EMBEDDED_CONTROL_WORKER)",
    )
    api.set_defaults(func=run_api_command)


class AccessConfigError(Exception):
    """API keys or the bind address are configured in a way the API must not start with."""


def api_keys_from(args: argparse.Namespace) -> tuple[str, ...]:
    """Keys from env COMFY_API_KEYS and --api-keys-file; refuses an insecure bind address."""
    keys = parse_api_keys(os.environ.get("COMFY_API_KEYS"))
    if args.api_keys_file is not None:
        try:
            keys += read_api_keys_file(args.api_keys_file)
        except OSError as err:
            raise AccessConfigError(
                f"cannot read --api-keys-file {args.api_keys_file}: {err.strerror}"
            ) from err
    try:
        check_bind_access(args.host, keys, insecure_no_auth=args.insecure_no_auth)
    except InsecureBind as err:
        raise AccessConfigError(str(err)) from err
    return keys


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return Settings(
        data_dir=args.data_dir.resolve(),
        output_store=args.output_store,
        download_mode=args.download_mode,
        manifests_dir=args.manifests,
        workflows_dir=args.workflows,
        public_url=args.public_url,
        api_keys=api_keys_from(args),
        url_signing_key=os.environ.get("COMFY_URL_SIGNING_KEY") or None,
        download_url_ttl_seconds=args.download_url_ttl,
        max_body_bytes=args.max_body_bytes,
        **extra,
    )


def _check_access(args: argparse.Namespace) -> int | None:
    """Exit code 2 with the reason when the access or output store configuration is refused,
    else None."""
    try:
        api_keys_from(args)
    except AccessConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        open_output_store(args.output_store, args.data_dir.resolve())
    except (ValueError, OutputStoreError) as err:
        print(f"error: --output-store: {err}", file=sys.stderr)
        return 2
    return None


def _uvicorn_server(app: Any, args: argparse.Namespace) -> ApiServer:
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level, lifespan="on"
    )
    return ApiServer(config)


async def _serve_until_signal(
    server: ApiServer, before_stop: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM (or until uvicorn stops by itself, e.g. port taken).

    `before_stop` runs while the API still serves (the GPU worker finishes its job first).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
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
    configure_logging(args.log_level)
    refused = _check_access(args)
    if refused is not None:
        return _finish(refused)
    settings = _settings(args, embedded_control_worker=args.with_control_worker)

    async def main() -> int:
        from activities.workers.temporal_client import connect_temporal

        try:
            client = await connect_temporal(args.temporal_address, args.namespace)
        except Exception as err:  # the user's configuration to fix, not a traceback
            print(f"error: cannot reach Temporal: {err}", file=sys.stderr)
            return 1
        server = _uvicorn_server(create_app(settings, temporal_client=client), args)
        await _serve_until_signal(server)
        return 0 if server.started else 1

    return _finish(asyncio.run(main()))


# ---- dev ----


def gpu_worker_command(args: argparse.Namespace, data_dir: Path) -> list[str] | None:
    """`comfy-temporal gpu-worker ...` for the configured ComfyUI, or None when there is none."""
    if not args.comfyui and not args.comfyui_url:
        return None
    argv = [sys.executable, "-m", "api.cli.main", "gpu-worker", "--data-dir", str(data_dir)]
    if args.comfyui_url:
        argv += ["--comfyui-url", args.comfyui_url]
    else:
        argv += ["--comfyui", str(Path(args.comfyui).expanduser().resolve())]
        if args.comfyui_python:
            argv += ["--comfyui-python", args.comfyui_python]
        for extra in args.comfyui_arg:
            argv.append(f"--comfyui-arg={extra}")
        if args.gpu is not None:
            argv += ["--gpu", str(args.gpu)]
    if args.output_store:
        argv += ["--output-store", args.output_store]
    argv += ["--shutdown-grace", str(max(args.shutdown_grace - 5, 1))]
    if args.worker_name:
        argv += ["--name", args.worker_name]
    return argv


def _child_env(temporal_address: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The GPU worker gets its ComfyUI settings as flags; stale env values must not mix in.
    for name in ("COMFYUI_PATH", "COMFYUI_URL", "COMFYUI_PYTHON", "COMFYUI_ARGS", "GPU"):
        env.pop(name, None)
    env["TEMPORAL_ADDRESS"] = temporal_address
    env.pop("TEMPORAL_NAMESPACE", None)  # the dev server serves "default"
    env.update(extra or {})
    return env


def _banner(args: argparse.Namespace, server: TemporalDevServer, gpu: bool) -> str:
    api_url = f"http://{args.host}:{args.port}"
    lines = [
        "",
        "comfy-temporal is running",
        f"  API docs:         {api_url}/docs",
        f"  API:              {api_url}  (POST /generate, GET /tasks/<task_id>)",
        f"  Temporal Web UI:  {server.ui_url or '(headless)'}",
        f"  Temporal address: {server.address}   e.g. temporal workflow list"
        f" --address {server.address}",
        f"  Data:             {args.data_dir.resolve()}",
        f"  Outputs:          {args.output_store or args.data_dir.resolve() / 'outputs'}",
    ]
    if gpu:
        source = args.comfyui_url or args.comfyui
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


async def run_dev(args: argparse.Namespace) -> int:
    # Say so before anything starts, rather than after Temporal and ComfyUI came up.
    for what, port in (("API", args.port), ("Temporal", args.temporal_port)):
        if _port_taken(args.host if what == "API" else "127.0.0.1", port):
            print(f"error: the {what} port {port} is already in use", file=sys.stderr)
            return 1
    # A signal while things start cancels the startup; the `finally` below still stops every
    # child already started. Once serving, _serve_until_signal takes the signals over.
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "outputs").mkdir(exist_ok=True)
    server = TemporalDevServer(
        DevServerConfig(
            db_file=data_dir / "temporal.db",
            port=args.temporal_port,
            ui_port=None if args.headless else args.ui_port,
            log_file=data_dir / "logs" / "temporal.log",
        )
    )
    gpu_worker: ChildProcess | None = None
    waits: list[asyncio.Task[Any]] = []

    async def stop_gpu_worker() -> None:
        for task in waits:  # the exit we cause now is not worth a warning
            task.cancel()
        if gpu_worker is not None and gpu_worker.running:
            print("stopping the GPU worker (it finishes its current job)...", flush=True)
            await gpu_worker.stop(grace=args.shutdown_grace)

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

        client = await connect_temporal(server.address, "default")
        argv = gpu_worker_command(args, data_dir)
        if argv is not None:
            gpu_worker = ChildProcess("gpu-worker", argv, env=_child_env(server.address))
            await gpu_worker.start()
            # The GPU worker's exit is reported, not fatal: the API keeps serving, jobs wait.
            waits.append(asyncio.create_task(_report_exit(gpu_worker)))
        settings = _settings(args, embedded_control_worker=True, temporal_address=server.address)
        app = create_app(settings, temporal_client=client)
        uv = _uvicorn_server(app, args)
        waits.append(
            asyncio.create_task(_print_when_started(uv, _banner(args, server, bool(argv))))
        )
        await _serve_until_signal(uv, before_stop=before_api_stops)
        return 0 if uv.started else 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # nothing may interrupt the cleanup
            asyncio.get_running_loop().add_signal_handler(sig, lambda: None)
        await stop_gpu_worker()
        print("stopping the Temporal dev server...", flush=True)
        await server.stop(grace=args.shutdown_grace)
        print("stopped", flush=True)


async def _print_when_started(server: ApiServer, banner: str) -> None:
    while not server.started:
        await asyncio.sleep(0.05)
    print(banner, flush=True)


async def _report_exit(child: ChildProcess) -> None:
    code = await child.wait()
    print(
        f"warning: the {child.name} (pid {child.pid}) exited with code {code};"
        " jobs wait until a GPU worker runs again",
        file=sys.stderr,
        flush=True,
    )


def _finish(code: int) -> int:
    """Exit now: a finished Temporal client can abort the interpreter at shutdown
    (sdk-python#300, temporal-notes.md §2), which would turn a clean exit into exit 134."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def run_dev_command(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    refused = _check_access(args)  # before Temporal or ComfyUI start
    if refused is not None:
        return _finish(refused)
    try:
        code = asyncio.run(run_dev(args))
    except (KeyboardInterrupt, asyncio.CancelledError):  # stopped while starting up
        code = 130
    return _finish(code)
