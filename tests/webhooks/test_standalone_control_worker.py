"""`comfy-temporal control-worker` as its own process, given the API's data dir: the download URLs
in the webhooks it sends carry the API's signature, so they work without an API key."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from manifests.registry import ManifestRegistry
from tests.support.manifests import append_workflows, write_manifests_with_emulator_sampler
from tests.support.stack import generation_stack, unique
from tests.support.webhooks import ReceivedWebhook, WebhookReceiver
from tests.support.worker_processes import COMFY_TEMPORAL, clean_environment

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
    append_workflows(
        manifests_dir,
        f"\n{WORKFLOW_ID}:\n  workflow_file: smoke_image.json\n  parameters: [width]\n"
        f"  pool: {pool}\n"
        "  overrides:\n    width: {default: 16, targets: [{node: Empty Image, input: width}]}\n",
    )
    data_dir = tmp_path / "data"
    env = clean_environment()
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
    try:
        async with (
            # The API without a control worker: the one above serves the generations.
            generation_stack(
                temporal_client,
                tmp_path,
                ManifestRegistry(manifests_dir, workflows_dir),
                control_worker=None,
                pool=pool,
                gpu_workers=[unique("standalone-gpu")],
                api_keys=(API_KEY,),
                allow_private_callback_urls=True,
            ) as stack,
            httpx.AsyncClient(base_url=stack.url, timeout=30) as http,
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

    assert download.status_code == 200, download.text
    assert download.content.startswith(b"\x89PNG")
