"""The `control-worker` and `gpu-worker` commands of `comfy-temporal`.

Every flag can also come from an environment variable (named in its help). Temporal is reached
through `temporalio.envconfig` (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import sys
from datetime import timedelta
from pathlib import Path

from activities.workers.logs import configure_logging
from manifests.definitions import DEFAULT_POOL

logger = logging.getLogger("comfy_temporal.worker")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name}={value!r}: must be a whole number") from None


def _seconds_at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_temporal_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temporal-address",
        default=None,
        help="Temporal frontend host:port (env TEMPORAL_ADDRESS; default localhost:7233)",
    )
    parser.add_argument(
        "--namespace", default=None, help="Temporal namespace (env TEMPORAL_NAMESPACE)"
    )


def add_manifest_dir_flags(
    parser: argparse.ArgumentParser,
    *,
    manifests_help: str = "directory of base.yaml and workflows.yaml (env MANIFESTS_DIR)",
    workflows_help: str = "directory of ComfyUI API-format graphs (env WORKFLOWS_DIR)",
) -> None:
    """--manifests and --workflows, defaulting to env MANIFESTS_DIR / WORKFLOWS_DIR."""
    parser.add_argument(
        "--manifests",
        type=Path,
        default=os.environ.get("MANIFESTS_DIR") or None,
        help=manifests_help,
    )
    parser.add_argument(
        "--workflows",
        type=Path,
        default=os.environ.get("WORKFLOWS_DIR") or None,
        help=workflows_help,
    )


def add_output_store_flags(parser: argparse.ArgumentParser, *, download_mode: bool) -> None:
    """--output-store (and --download-mode where download URLs are made), from env
    COMFY_OUTPUT_STORE / COMFY_DOWNLOAD_MODE; docs/storage.md."""
    parser.add_argument(
        "--output-store",
        default=os.environ.get("COMFY_OUTPUT_STORE") or None,
        metavar="PATH|URL",
        help="where outputs, image inputs and previews live: a directory (or file://PATH), or "
        "s3://bucket/prefix for an S3-compatible store, with endpoint and credentials from the "
        "standard AWS variables and files (env COMFY_OUTPUT_STORE; default <data-dir>)",
    )
    if download_mode:
        parser.add_argument(
            "--download-mode",
            choices=["presigned", "proxy"],
            default=os.environ.get("COMFY_DOWNLOAD_MODE") or "presigned",
            help="object store only: download URLs are the store's presigned URLs (presigned), "
            "or the API's, which streams files from the store (proxy: for stores clients cannot "
            "reach) (env COMFY_DOWNLOAD_MODE; default presigned)",
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    control = subparsers.add_parser(
        "control-worker",
        help="run GenerationWorkflow and its local activities (the comfy-control queue)",
        description="Serve GenerationWorkflow on the comfy-control task queue.",
    )
    add_manifest_dir_flags(
        control,
        manifests_help="manifests directory (env MANIFESTS_DIR; default: the bundled manifests/)",
        workflows_help="ComfyUI workflow JSON directory (env WORKFLOWS_DIR; default: the bundled "
        "workflows/)",
    )
    control.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR") or "data"),
        help="the API's data dir: without env COMFY_URL_SIGNING_KEY, download URLs in webhooks "
        "are signed with its url-signing.key, so the API accepts them (env DATA_DIR; "
        "default ./data)",
    )
    control.add_argument(
        "--download-url-ttl",
        type=_seconds_at_least_one,
        # A string default goes through `type` too, so a bad env value is a usage error.
        default=os.environ.get("COMFY_DOWNLOAD_URL_TTL") or "86400",
        metavar="SECONDS",
        help="how long download URLs in webhooks stay valid; give the API's value "
        "(env COMFY_DOWNLOAD_URL_TTL; default 86400)",
    )
    add_output_store_flags(control, download_mode=True)
    add_temporal_flags(control)
    control.set_defaults(func=control_worker_command)

    gpu = subparsers.add_parser(
        "gpu-worker",
        help="run one GPU worker: a ComfyUI process and the execute_prompt activity",
        description=(
            "Start (or attach to) one ComfyUI and run its generations. Polls Temporal only "
            "while ComfyUI is healthy. SIGTERM: stop polling, finish running jobs, stop ComfyUI."
        ),
    )
    source = gpu.add_mutually_exclusive_group()
    source.add_argument(
        "--comfyui",
        type=Path,
        default=os.environ.get("COMFYUI_PATH") or None,
        metavar="PATH",
        help="ComfyUI install directory to launch (env COMFYUI_PATH)",
    )
    source.add_argument(
        "--comfyui-url",
        default=os.environ.get("COMFYUI_URL") or None,
        metavar="URL",
        help="attach to an already running ComfyUI instead (env COMFYUI_URL)",
    )
    gpu.add_argument(
        "--comfyui-python",
        default=os.environ.get("COMFYUI_PYTHON") or None,
        metavar="PY",
        help="ComfyUI's own interpreter (env COMFYUI_PYTHON; default: its venv, else python3)",
    )
    gpu.add_argument(
        "--comfyui-arg",
        action="append",
        default=None,
        metavar="ARG",
        dest="comfyui_args",
        help="extra ComfyUI argument, repeatable, e.g. --comfyui-arg=--cpu "
        "(env COMFYUI_ARGS, shell-split)",
    )
    gpu.add_argument(
        "--gpu",
        type=int,
        default=_env_int("GPU"),
        metavar="N",
        help="CUDA device for this worker's ComfyUI (env GPU)",
    )
    gpu.add_argument(
        "--pool",
        default=os.environ.get("COMFY_POOL") or DEFAULT_POOL,
        help=f"pool whose queue this worker polls (env COMFY_POOL; default {DEFAULT_POOL!r})",
    )
    gpu.add_argument(
        "--name",
        default=os.environ.get("COMFY_WORKER_NAME") or None,
        help="worker name, unique in the pool; names its own queue (env COMFY_WORKER_NAME; "
        "default <host>-gpu<N>)",
    )
    gpu.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR") or "data"),
        help="outputs go to <data-dir>/outputs/<task_id>/ unless --output-store says otherwise;"
        " staging folders stay here (env DATA_DIR; default ./data)",
    )
    add_output_store_flags(gpu, download_mode=False)
    unused = "accepted for symmetry with the other commands; the GPU worker renders nothing"
    add_manifest_dir_flags(gpu, manifests_help=unused, workflows_help=unused)
    gpu.add_argument(
        "--shutdown-grace",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running jobs may take to finish (default 300)",
    )
    gpu.add_argument(
        "--no-prefetch",
        action="store_true",
        help="take a job only when idle (default: queue one more in ComfyUI while busy)",
    )
    add_temporal_flags(gpu)
    gpu.set_defaults(func=gpu_worker_command)


def _comfyui_args(args: argparse.Namespace) -> list[str]:
    if args.comfyui_args is not None:
        return list(args.comfyui_args)
    return shlex.split(os.environ.get("COMFYUI_ARGS", ""))


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def _finish(code: int) -> int:
    """Exit now: a finished Temporal client can abort the interpreter at shutdown
    (sdk-python#300, temporal-notes §2), which would turn a clean exit into exit 134."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def control_worker_command(args: argparse.Namespace) -> int:
    configure_logging()
    from activities.generation.webhooks import WebhookActivities
    from activities.io.output_store import OutputStoreError, open_output_store
    from activities.workers.control import load_url_signer, run_control_worker
    from activities.workers.temporal_client import connect_temporal
    from manifests.registry import ManifestRegistry

    try:
        store = open_output_store(args.output_store, args.data_dir.resolve())
    except (ValueError, OutputStoreError) as err:
        print(f"error: --output-store: {err}", file=sys.stderr)
        return 2
    try:
        url_signer = load_url_signer(
            args.data_dir.resolve(),
            args.download_url_ttl,
            store_links=store if args.download_mode == "presigned" else None,
        )
    except (OSError, ValueError) as err:  # e.g. an unwritable data dir, an empty key file
        print(f"error: URL signing key: {err}", file=sys.stderr)
        return 2

    async def main() -> int:
        registry = ManifestRegistry(args.manifests, args.workflows)
        snapshot = registry.snapshot()
        for error in snapshot.errors:
            logger.warning("manifest problem: %s", error)
        try:
            client = await connect_temporal(args.temporal_address, args.namespace)
        except Exception as err:  # connection problems are the user's to fix, not a traceback
            print(f"error: cannot reach Temporal: {err}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        _stop_on_signals(stop)
        webhooks = WebhookActivities(url_signer=url_signer)
        await run_control_worker(client, registry, stop=stop, webhooks=webhooks)
        return 0

    return _finish(asyncio.run(main()))


def gpu_worker_command(args: argparse.Namespace) -> int:
    configure_logging()
    from activities.comfyui.process import ComfyUIAttached, ComfyUIProcess
    from activities.workers.gpu import GpuWorker, GpuWorkerSettings, default_worker_name
    from activities.workers.temporal_client import connect_temporal

    if args.comfyui is None and args.comfyui_url is None:
        print(
            "error: gpu-worker needs ComfyUI: --comfyui PATH (env COMFYUI_PATH) to launch one, "
            "or --comfyui-url URL (env COMFYUI_URL) to attach",
            file=sys.stderr,
        )
        return 2
    if args.comfyui is not None and not (args.comfyui / "main.py").is_file():
        print(f"error: --comfyui {args.comfyui}: no main.py there", file=sys.stderr)
        return 2
    name = args.name or default_worker_name(args.gpu)
    data_dir = args.data_dir.resolve()
    from activities.io.output_store import OutputStoreError, open_output_store

    try:
        open_output_store(args.output_store, data_dir)  # a bad location stops here, not per job
    except (ValueError, OutputStoreError) as err:
        print(f"error: --output-store: {err}", file=sys.stderr)
        return 2
    settings = GpuWorkerSettings(
        name=name,
        pool=args.pool,
        data_dir=data_dir,
        output_store=args.output_store,
        prefetch=not args.no_prefetch,
        shutdown_grace=timedelta(seconds=args.shutdown_grace),
    )

    async def main() -> int:
        comfyui: ComfyUIProcess | ComfyUIAttached
        if args.comfyui_url:
            comfyui = ComfyUIAttached(args.comfyui_url, name=f"comfyui:{name}")
        else:
            comfyui = ComfyUIProcess(
                args.comfyui,
                work_dir=data_dir / "comfyui" / name,
                python=args.comfyui_python,
                cuda_device=args.gpu,
                extra_args=_comfyui_args(args),
                name=f"comfyui:{name}",
            )
        try:
            client = await connect_temporal(args.temporal_address, args.namespace, identity=name)
        except Exception as err:
            print(f"error: cannot reach Temporal: {err}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        _stop_on_signals(stop)
        logger.info(
            "gpu worker %s: pool queue %s, own queue %s",
            name,
            settings.pool_queue,
            settings.own_queue,
        )
        try:
            await GpuWorker(client, comfyui, settings).run(stop)
        except Exception as err:  # e.g. Temporal refused the Workers: say why, exit non-zero
            logger.error("gpu worker %s failed: %s", name, err)
            return 1
        logger.info("gpu worker %s stopped", name)
        return 0

    return _finish(asyncio.run(main()))
