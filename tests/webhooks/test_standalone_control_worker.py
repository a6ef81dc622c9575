"""`comfy-temporal control-worker` as its own process, given the API's data dir: the download URLs
in the webhooks it sends carry the API's signature, so they work without an API key."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from activities.workers.gpu import GpuWorker, GpuWorkerSettings
from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.settings import Settings
from manifests.registry import ManifestRegistry
from tests.api.emulator_workflow import write_manifests_with_emulator_sampler
from tests.support.emulator import emulator_process
from tests.webhooks.conftest import ReceivedWebhook, WebhookReceiver

COMFY_TEMPORAL = str(Path(sys.executable).parent / "comfy-temporal")
API_KEY = "standalone-control-worker-key"
WORKFLOW_ID = "smoke_standalone"


async def _first_webhook(
    receiver: WebhookReceiver, control: asyncio.subprocess.Process, log_path: Path
) -> ReceivedWebhook:
    """The first webhook received; fails at once, with its log, if the control worker exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not receiver.received:
        if control.returncode is not None or loop.time() > deadline:
            raise AssertionError(
                f"no webhook (control worker exit code {control.returncode}); its log:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        await asyncio.sleep(0.05)
    return receiver.received[0]


async def test_webhook_urls_from_a_standalone_control_worker_download_without_a_key(
    temporal_client: Client, temporal_address: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    pool = f"standalone-{uuid.uuid4().hex[:8]}"
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(tmp_path)
    with (manifests_dir / "workflows.yaml").open("a") as f:
        f.write(
            f"\n{WORKFLOW_ID}:\n  workflow_file: smoke_image.json\n  parameters: [width]\n"
            f"  pool: {pool}\n"
            "  overrides:\n    width: {default: 16, targets: [{node: Empty Image, input: width}]}\n"
        )
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFY", "TEMPORAL_"))}
    env["COMFY_ALLOW_PRIVATE_CALLBACK_URLS"] = "1"  # the receiver is on loopback
    log_path = tmp_path / "control-worker.log"
    with log_path.open("wb") as log:
        control = await asyncio.create_subprocess_exec(
            COMFY_TEMPORAL, "control-worker",
            "--data-dir", str(data_dir),
            "--manifests", str(manifests_dir),
            "--workflows", str(workflows_dir),
            "--temporal-address", temporal_address,
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    gpu = GpuWorker(
        temporal_client,
        emulator_process(tmp_path / "comfyui", name="emulator:standalone"),
        GpuWorkerSettings(
            name=f"standalone-gpu-{uuid.uuid4().hex[:6]}", pool=pool, data_dir=data_dir
        ),
    )
    stop_gpu = asyncio.Event()
    gpu_run = asyncio.create_task(gpu.run(stop_gpu))
    app = create_app(
        Settings(
            data_dir=data_dir,
            api_keys=(API_KEY,),
            allow_private_callback_urls=True,
            embedded_control_worker=False,
        ),
        temporal_client=temporal_client,
        registry=ManifestRegistry(manifests_dir, workflows_dir),
    )
    try:
        async with (
            serve_in_background(app) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            accepted = await http.post(
                "/generate",
                json={"workflow_id": WORKFLOW_ID, "options": {"callback_url": receiver.url}},
                headers={"X-API-Key": API_KEY},
            )
            assert accepted.status_code == 202, accepted.text
            hook = await _first_webhook(receiver, control, log_path)
            download_url = hook.json()["result"]["download_url"]
            download = await http.get(download_url)  # no API key
    finally:
        if control.returncode is None:
            control.send_signal(signal.SIGTERM)
        await asyncio.wait_for(control.wait(), 30)
        stop_gpu.set()
        await gpu_run

    assert download.status_code == 200, download.text
    assert download.content.startswith(b"\x89PNG")
