"""The `control-worker` and `gpu-worker` commands of `comfy-temporal`, and the flags `dev` shares
with them.

Every flag overrides an environment variable (named in its help) of the process's settings class
(activities/workers/settings.py). Temporal is reached through `temporalio.envconfig`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from activities.comfyui.errors import ComfyUIStartError
from activities.comfyui.process import ComfyUIProcess, resolve_python
from activities.workers.logs import LOG_FORMATS, configure_logging
from activities.workers.metrics_server import add_metrics_flags
from activities.workers.settings import (
    AdmissionSettings,
    ComfyUISettings,
    ControlWorkerSettings,
    GpuWorkerProcessSettings,
    LogSettings,
    MetricsSettings,
    OutputStoreSettings,
    RoutingSettings,
    SharedSettings,
    TemporalSettings,
    add_setting_flag,
    settings_from_args,
)
from activities.workers.temporal_client import exit_now
from activities.workers.tracing import add_tracing_flags, start_tracing

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from temporalio.runtime import Runtime

    from activities.io.output_store import OutputStore

logger = logging.getLogger("comfy_temporal.worker")

# `gpu-worker`'s exit code when the ComfyUI it was given cannot run at all (wrong path, wrong
# interpreter): `dev` then stops the whole stack instead of serving without a GPU worker.
EXIT_COMFYUI_UNUSABLE = 3


def add_temporal_flags(parser: argparse.ArgumentParser) -> None:
    add_setting_flag(
        parser, TemporalSettings, "temporal_address", "--temporal-address",
        metavar="HOST:PORT", help="Temporal frontend",
    )  # fmt: skip
    add_setting_flag(
        parser, TemporalSettings, "temporal_namespace", "--namespace",
        metavar="NAME", help="Temporal namespace",
    )  # fmt: skip


def add_manifest_dir_flags(
    parser: argparse.ArgumentParser,
    *,
    manifests_help: str = "directory of base.yaml and workflows.yaml",
    workflows_help: str = "directory of ComfyUI API-format graphs",
) -> None:
    """--manifests and --workflows (env MANIFESTS_DIR / WORKFLOWS_DIR)."""
    add_setting_flag(
        parser,
        SharedSettings,
        "manifests_dir",
        "--manifests",
        type=Path,
        metavar="DIR",
        help=manifests_help,
    )
    add_setting_flag(
        parser,
        SharedSettings,
        "workflows_dir",
        "--workflows",
        type=Path,
        metavar="DIR",
        help=workflows_help,
    )


def add_data_dir_flag(parser: argparse.ArgumentParser, help: str) -> None:
    add_setting_flag(
        parser, SharedSettings, "data_dir", "--data-dir", type=Path, metavar="DIR", help=help
    )


def add_admission_flags(parser: argparse.ArgumentParser) -> None:
    """--max-backlog and --max-backlog-pool: the API's and the control worker's, alike."""
    add_setting_flag(
        parser, AdmissionSettings, "max_backlog", "--max-backlog", type=int, metavar="N",
        help="most jobs a pool's GPU queue may hold: POST /generate answers 429 with "
        "Retry-After beyond it, and a schedule's run is skipped",
    )  # fmt: skip
    add_setting_flag(
        parser, AdmissionSettings, "max_backlog_pools", "--max-backlog-pool",
        action="append", metavar="POOL=N",
        help="the limit of one pool, over --max-backlog; repeatable",
    )  # fmt: skip


def add_routing_flags(parser: argparse.ArgumentParser) -> None:
    """--routing and --affinity-wait: the API's (a job's first try, routed at submit) and the
    control worker's (the others), alike."""
    add_setting_flag(
        parser, RoutingSettings, "routing", "--routing", choices=["affinity", "pool"],
        help="affinity: prefer the GPU worker holding a job's models; pool: any free GPU",
    )  # fmt: skip
    add_setting_flag(
        parser, RoutingSettings, "affinity_wait_seconds", "--affinity-wait",
        type=float, metavar="SECONDS",
        help="how long a job waits for the GPU worker holding its models while another GPU idles",
    )  # fmt: skip


def add_log_format_flag(parser: argparse.ArgumentParser) -> None:
    add_setting_flag(
        parser, LogSettings, "log_format", "--log-format", choices=LOG_FORMATS,
        help="log lines as text, or as one JSON object per line naming the job's task id, "
        "workflow, worker and attempt where known",
    )  # fmt: skip


def add_comfyui_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the GPU worker's ComfyUI and name: one definition for `gpu-worker` and `dev`
    (which passes them on to the GPU worker it starts, see `comfyui_flags`)."""
    source = parser.add_mutually_exclusive_group()
    add_setting_flag(
        source, ComfyUISettings, "comfyui_path", "--comfyui",
        type=Path, metavar="PATH", help="ComfyUI install directory to launch",
    )  # fmt: skip
    add_setting_flag(
        source, ComfyUISettings, "comfyui_url", "--comfyui-url",
        metavar="URL", help="attach to an already running ComfyUI instead",
    )  # fmt: skip
    add_setting_flag(
        parser, ComfyUISettings, "comfyui_python", "--comfyui-python",
        metavar="PY", help="ComfyUI's own interpreter (default: its venv, else python3)",
    )  # fmt: skip
    add_setting_flag(
        parser, ComfyUISettings, "comfyui_args", "--comfyui-arg",
        action="append", metavar="ARG",
        help="extra ComfyUI argument, repeatable, e.g. --comfyui-arg=--cpu; flags given replace "
        "the variable, which is split like a shell would",
    )  # fmt: skip
    add_setting_flag(
        parser, ComfyUISettings, "gpu", "--gpu",
        type=int, metavar="N", help="CUDA device for the worker's ComfyUI",
    )  # fmt: skip
    add_setting_flag(
        parser, ComfyUISettings, "pool", "--pool", help="pool whose queue the GPU worker polls"
    )
    # `--name` was gpu-worker's spelling; it stays valid.
    add_setting_flag(
        parser, ComfyUISettings, "worker_name", "--worker-name", "--name", metavar="NAME",
        help="GPU worker name, unique in the pool; names its own queue (default <host>-gpu<N>)",
    )  # fmt: skip


def comfyui_flags(settings: ComfyUISettings) -> list[str]:
    """The `gpu-worker` flags that give it exactly these ComfyUI settings (for `dev`)."""
    flags: list[str] = []
    if settings.comfyui_url:
        flags += ["--comfyui-url", settings.comfyui_url]
    elif settings.comfyui_path is not None:
        flags += ["--comfyui", str(settings.comfyui_path.expanduser().resolve())]
    if settings.comfyui_python:
        flags += ["--comfyui-python", settings.comfyui_python]
    flags += [f"--comfyui-arg={arg}" for arg in settings.comfyui_args]
    if settings.gpu is not None:
        flags += ["--gpu", str(settings.gpu)]
    flags += ["--pool", settings.pool]
    if settings.worker_name:
        flags += ["--worker-name", settings.worker_name]
    return flags


def comfyui_problem(settings: ComfyUISettings) -> str | None:
    """What is wrong with the ComfyUI to launch, found before anything starts; None when the
    install looks usable (whether its interpreter can run it shows at its first start)."""
    path = settings.comfyui_path
    if path is None or settings.comfyui_url:
        return None
    named = f"COMFYUI_PATH / --comfyui {path}"
    if not path.expanduser().is_dir():
        return f"{named}: no such directory. Set it to your ComfyUI checkout (holding main.py)."
    if not (path.expanduser() / "main.py").is_file():
        return (
            f"{named}: no main.py there, so it is not a ComfyUI install. Set it to the "
            "directory of your ComfyUI checkout (the one holding main.py)."
        )
    return None


def comfyui_start_failure(settings: ComfyUISettings, error: ComfyUIStartError) -> str:
    """One message for a ComfyUI that did not come up on its first start: what ran, the last line
    it printed (its whole output is in the log above), and what to set."""
    assert settings.comfyui_path is not None
    path = settings.comfyui_path.expanduser().resolve()
    python = resolve_python(path, settings.comfyui_python)
    if settings.comfyui_python:
        chosen = "COMFYUI_PYTHON / --comfyui-python"
    elif Path(python).is_relative_to(path):
        chosen = "the install's venv"
    else:
        chosen = "python3 on PATH: COMFYUI_PYTHON is not set and the install has no venv"
    last = next((line.strip() for line in reversed(error.last_lines) if line.strip()), "")
    what = str(error).split("\n", 1)[0]
    return (
        f"ComfyUI at {path} could not start ({what}), run by {python} ({chosen})."
        + (f" Its last line: {last}" if last else "")
        + "\nSet COMFYUI_PYTHON (or --comfyui-python) to the Python that has ComfyUI's "
        "requirements installed, or COMFYUI_PATH (--comfyui) to a working ComfyUI install."
    )


def add_output_store_flags(parser: argparse.ArgumentParser, *, download_mode: bool) -> None:
    """--output-store (and --download-mode where download URLs are made); docs/storage.md."""
    add_setting_flag(
        parser, OutputStoreSettings, "output_store", "--output-store", metavar="PATH|URL",
        help="where outputs, image inputs and previews live: a directory (or file://PATH), or "
        "s3://bucket/prefix for an S3-compatible store, with endpoint and credentials from the "
        "standard AWS variables and files (default <data-dir>)",
    )  # fmt: skip
    if download_mode:
        add_setting_flag(
            parser, OutputStoreSettings, "download_mode", "--download-mode",
            choices=["presigned", "proxy"],
            help="object store only: download URLs are the store's presigned URLs, or the API's, "
            "which streams files from the store (proxy: for stores clients cannot reach)",
        )  # fmt: skip


def open_configured_store(settings: OutputStoreSettings, data_dir: Path) -> OutputStore:
    """The configured store, opened at start: a bad location ends the command (exit 2) there
    rather than failing every job."""
    from activities.io.output_store import OutputStoreError, open_output_store

    try:
        return open_output_store(settings.output_store, data_dir)
    except (ValueError, OutputStoreError) as err:
        print(f"error: --output-store: {err}", file=sys.stderr)
        exit_now(2)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    control = subparsers.add_parser(
        "control-worker",
        help="run GenerationWorkflow and its local activities (the comfy-control queue)",
        description="Serve GenerationWorkflow on the comfy-control task queue.",
    )
    add_manifest_dir_flags(
        control,
        manifests_help="manifests directory (default: the bundled manifests/)",
        workflows_help="ComfyUI workflow JSON directory (default: the bundled workflows/)",
    )
    add_data_dir_flag(
        control,
        "the API's data dir: without env COMFY_URL_SIGNING_KEY, download URLs in webhooks "
        "are signed with its url-signing.key, so the API accepts them",
    )
    add_setting_flag(
        control, ControlWorkerSettings, "download_url_ttl_seconds", "--download-url-ttl",
        type=int, metavar="SECONDS",
        help="how long download URLs in webhooks stay valid; give the API's value",
    )  # fmt: skip
    add_routing_flags(control)
    add_output_store_flags(control, download_mode=True)
    add_admission_flags(control)
    add_temporal_flags(control)
    add_log_format_flag(control)
    add_metrics_flags(control)
    add_tracing_flags(control)
    control.set_defaults(func=control_worker_command)

    gpu = subparsers.add_parser(
        "gpu-worker",
        help="run one GPU worker: a ComfyUI process and the execute_prompt activity",
        description=(
            "Start (or attach to) one ComfyUI and run its generations. Polls Temporal only "
            "while ComfyUI is healthy. SIGTERM: stop polling, finish running jobs, stop ComfyUI."
        ),
    )
    add_comfyui_flags(gpu)
    add_data_dir_flag(
        gpu,
        "outputs go to <data-dir>/outputs/<task_id>/ unless --output-store says otherwise; "
        "staging folders stay here",
    )
    add_output_store_flags(gpu, download_mode=False)
    unused = "accepted for symmetry with the other commands; the GPU worker renders nothing"
    add_manifest_dir_flags(gpu, manifests_help=unused, workflows_help=unused)
    add_setting_flag(
        gpu, GpuWorkerProcessSettings, "shutdown_grace", "--shutdown-grace",
        type=float, metavar="SECONDS", help="on SIGTERM, how long running jobs may take to finish",
    )  # fmt: skip
    add_setting_flag(
        gpu, GpuWorkerProcessSettings, "models_dir", "--models-dir",
        type=Path, metavar="DIR",
        help="model files given by URL are downloaded to DIR/<folder>/ (default "
        "<data-dir>/models/<worker name>, given to the ComfyUI it launches as an extra model "
        "path; with --comfyui-url, a directory that ComfyUI reads, else URLs are refused)",
    )  # fmt: skip
    add_setting_flag(
        gpu, GpuWorkerProcessSettings, "model_cache_gb", "--model-cache-gb",
        type=float, metavar="GB",
        help="disk the downloaded models may take; the least recently used are deleted first",
    )  # fmt: skip
    add_setting_flag(
        gpu, GpuWorkerProcessSettings, "max_model_gb", "--max-model-gb",
        type=float, metavar="GB", help="largest model file a request may have downloaded",
    )  # fmt: skip
    add_setting_flag(
        gpu, GpuWorkerProcessSettings, "prefetch", "--no-prefetch",
        action="store_const", const=False,
        help="take a job only when idle; with prefetch on, a busy worker queues one more job in "
        "its ComfyUI (up to three when jobs are short)",
    )  # fmt: skip
    recycle = gpu.add_argument_group(
        "recycling",
        "restart ComfyUI between jobs, after finishing the jobs the worker holds, before its "
        "memory grows too far (all off by default)",
    )
    add_setting_flag(
        recycle, GpuWorkerProcessSettings, "recycle_rss_mb", "--recycle-rss-mb",
        type=float, metavar="MIB",
        help="once the resident memory of ComfyUI's process tree passes this",
    )  # fmt: skip
    add_setting_flag(
        recycle, GpuWorkerProcessSettings, "recycle_vram_mb", "--recycle-vram-mb",
        type=float, metavar="MIB", help="once the VRAM ComfyUI holds while idle passes this",
    )  # fmt: skip
    add_setting_flag(
        recycle, GpuWorkerProcessSettings, "recycle_after_jobs", "--recycle-after-jobs",
        type=int, metavar="N", help="after this many jobs",
    )  # fmt: skip
    add_temporal_flags(gpu)
    add_log_format_flag(gpu)
    add_metrics_flags(gpu)
    add_tracing_flags(gpu)
    gpu.set_defaults(func=gpu_worker_command)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def _serve_process_metrics(
    settings: MetricsSettings, process: str, registry: CollectorRegistry
) -> Runtime | None:
    """With a metrics port: serve `registry` plus the Temporal SDK's metrics, and return the
    runtime the process's client must use for the latter; None without one."""
    if settings.metrics_port is None:
        return None
    from activities.workers.metrics_server import TemporalSdkMetrics, serve_metrics

    sdk = TemporalSdkMetrics(process)
    registry.register(sdk)
    try:
        serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    except OSError as err:
        raise SystemExit(f"error: cannot serve metrics on {settings.metrics_port}: {err}") from None
    return sdk.runtime


def control_worker_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(ControlWorkerSettings, args)
    from prometheus_client import CollectorRegistry

    configure_logging(log_format=settings.log_format)
    from activities.generation.admission import PoolAdmission
    from activities.generation.webhooks import WebhookActivities
    from activities.workers.control import load_url_signer, run_control_worker
    from activities.workers.metrics import ControlWorkerMetrics
    from activities.workers.temporal_client import connect_process_client
    from manifests.registry import ManifestRegistry

    data_dir = settings.data_dir.resolve()
    store = open_configured_store(settings, data_dir)
    try:
        url_signer = load_url_signer(
            settings, store_links=store if settings.download_mode == "presigned" else None
        )
    except (OSError, ValueError) as err:  # e.g. an unwritable data dir, an empty key file
        print(f"error: URL signing key: {err}", file=sys.stderr)
        exit_now(2)

    async def main() -> int:
        registry = ManifestRegistry(
            settings.manifests_dir,
            settings.workflows_dir,
            experimental=settings.experimental_workflows,
        )
        snapshot = registry.snapshot()
        for error in snapshot.errors:
            logger.warning("manifest problem: %s", error)
        metrics = ControlWorkerMetrics(CollectorRegistry())
        runtime = _serve_process_metrics(settings, "control-worker", metrics.registry)
        tracing = start_tracing(settings, "control-worker")
        try:
            client = await connect_process_client(settings, runtime=runtime, tracing=tracing)
        except Exception as err:  # connection problems are the user's to fix, not a traceback
            print(f"error: cannot reach Temporal: {err}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        _stop_on_signals(stop)
        webhooks = WebhookActivities(
            settings.webhook_secret,
            allow_private=settings.allow_private_callback_urls,
            url_signer=url_signer,
        )
        try:
            await run_control_worker(
                client,
                registry,
                stop=stop,
                webhooks=webhooks,
                metrics=metrics,
                admission=PoolAdmission.from_settings(client, settings),
                routing=settings,
            )
        finally:
            if tracing is not None:  # the process ends with os._exit: send the last spans now
                await asyncio.to_thread(tracing.shutdown)
        return 0

    exit_now(asyncio.run(main()))


def gpu_worker_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(GpuWorkerProcessSettings, args)
    from prometheus_client import CollectorRegistry

    configure_logging(log_format=settings.log_format)
    from activities.comfyui.process import ComfyUIAttached
    from activities.models.download import ModelCredentials
    from activities.workers.gpu import GpuWorker, GpuWorkerSettings, default_worker_name
    from activities.workers.metrics import GpuWorkerMetrics
    from activities.workers.recycling import RecyclePolicy
    from activities.workers.temporal_client import connect_process_client

    if not settings.configured:
        print(
            "error: gpu-worker needs ComfyUI: --comfyui PATH (env COMFYUI_PATH) to launch one, "
            "or --comfyui-url URL (env COMFYUI_URL) to attach",
            file=sys.stderr,
        )
        exit_now(2)
    problem = comfyui_problem(settings)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        exit_now(2)
    name = settings.worker_name or default_worker_name(settings.gpu)
    data_dir = settings.data_dir.resolve()
    open_configured_store(settings, data_dir)
    models_dir = settings.models_dir
    if models_dir is None and not settings.comfyui_url:
        models_dir = data_dir / "models" / name
    worker_settings = GpuWorkerSettings(
        name=name,
        pool=settings.pool,
        data_dir=data_dir,
        output_store=settings.output_store,
        prefetch=settings.prefetch,
        shutdown_grace=timedelta(seconds=settings.shutdown_grace),
        models_dir=models_dir.expanduser().resolve() if models_dir is not None else None,
        comfyui_models_dir=(
            settings.comfyui_path.expanduser().resolve() / "models"
            if settings.comfyui_path is not None and not settings.comfyui_url
            else None
        ),
        model_cache_bytes=settings.model_cache_bytes,
        max_model_bytes=settings.max_model_bytes,
        allow_private_urls=settings.allow_private_image_urls,
        model_credentials=ModelCredentials.parse(settings.hf_token, settings.model_tokens),
        recycle=RecyclePolicy(
            rss_mb=settings.recycle_rss_mb,
            vram_mb=settings.recycle_vram_mb,
            after_jobs=settings.recycle_after_jobs,
        ),
    )

    async def main() -> int:
        # Served before ComfyUI starts, so a taken port ends the command with nothing to stop.
        metrics = GpuWorkerMetrics(name, settings.pool, CollectorRegistry())
        runtime = _serve_process_metrics(settings, f"gpu-worker:{name}", metrics.registry)
        tracing = start_tracing(settings, f"gpu-worker:{name}")
        comfyui: ComfyUIProcess | ComfyUIAttached
        if settings.comfyui_url:
            comfyui = ComfyUIAttached(settings.comfyui_url, name=f"comfyui:{name}")
            if worker_settings.recycle.enabled:
                logger.warning(
                    "gpu worker %s: the ComfyUI at %s is not ours to restart; the recycling "
                    "limits are ignored",
                    name,
                    settings.comfyui_url,
                )
        else:
            assert settings.comfyui_path is not None
            comfyui = ComfyUIProcess(
                settings.comfyui_path.expanduser(),
                work_dir=data_dir / "comfyui" / name,
                python=settings.comfyui_python,
                cuda_device=settings.gpu,
                extra_args=settings.comfyui_args,
                name=f"comfyui:{name}",
                models_dir=worker_settings.models_dir,
            )
            # The first start shows whether this ComfyUI can run at all (a wrong interpreter
            # fails here): say so once and exit, rather than restart it in a loop.
            try:
                await comfyui.start()
            except ComfyUIStartError as err:
                await comfyui.stop()
                print(f"error: {comfyui_start_failure(settings, err)}", file=sys.stderr)
                return EXIT_COMFYUI_UNUSABLE
        try:
            client = await connect_process_client(
                settings, runtime=runtime, tracing=tracing, identity=name
            )
        except Exception as err:
            await comfyui.stop()
            print(f"error: cannot reach Temporal: {err}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        _stop_on_signals(stop)
        logger.info(
            "gpu worker %s: pool queue %s, own queue %s",
            name,
            worker_settings.pool_queue,
            worker_settings.own_queue,
        )
        worker = GpuWorker(
            client,
            comfyui,
            worker_settings,
            metrics=metrics,
            tracer=tracing.tracer if tracing else None,
        )
        try:
            await worker.run(stop)
        except Exception as err:  # e.g. Temporal refused the Workers: say why, exit non-zero
            logger.error("gpu worker %s failed: %s", name, err)
            return 1
        finally:
            if tracing is not None:  # the process ends with os._exit: send the last spans now
                await asyncio.to_thread(tracing.shutdown)
        logger.info("gpu worker %s stopped", name)
        return 0

    exit_now(asyncio.run(main()))
