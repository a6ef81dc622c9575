"""The S3 server stops while a job runs: the attempt that cannot store its outputs fails as an
OutputStoreError, an infrastructure fault retried in place; once the server is back the job
succeeds, and the bucket holds that one attempt's files and nothing else."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from tests.support.graphs import SAMPLED_IMAGE_GRAPH
from tests.support.manifests import (
    SAMPLED_BASE_YAML,
    SAMPLED_WORKFLOWS_YAML,
    valid_registry,
    write_manifest_dirs,
)
from tests.support.outputs import comfyui_saves, new_prefix
from tests.support.s3_server import MotoServer
from tests.support.store_stack import stack_on_store
from tests.support.temporal import pending_execute_state, pending_progress
from tests.support.waiting import poll_task, wait_for


async def test_a_job_whose_store_went_away_is_retried_and_stores_its_outputs_once(
    temporal_client: Client, s3_server: MotoServer, bucket: str, tmp_path: Path
):
    pool = f"s3-restart-{uuid.uuid4().hex[:8]}"
    workflows = SAMPLED_WORKFLOWS_YAML.format(pool=pool)
    registry = valid_registry(
        *write_manifest_dirs(
            tmp_path, SAMPLED_BASE_YAML, workflows, {"sampled_image.json": SAMPLED_IMAGE_GRAPH}
        )
    )
    prefix = new_prefix()
    async with (
        stack_on_store(
            temporal_client, tmp_path, registry, pool=pool, output_store=f"s3://{bucket}/jobs"
        ) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=30, trust_env=False) as http,
    ):
        accepted = await http.post(
            "/generate",
            json={
                "workflow_id": "sampled_image",
                "params": {"steps": 20, "seconds_per_step": 0.1, "filename_prefix": prefix},
            },
        )
        task_id = accepted.json()["task_id"]
        handle = temporal_client.get_workflow_handle(task_id)

        async def running_in_comfyui() -> bool:
            progress = await pending_progress(handle)
            return progress is not None and progress.phase == "running"

        await wait_for(running_in_comfyui, "the job to run in ComfyUI")
        await asyncio.to_thread(s3_server.stop)

        async def first_attempt_failed() -> tuple[int, str | None, str | None] | None:
            state = await pending_execute_state(handle)
            return state if state[1] is not None else None

        attempt, failure_type, message = await wait_for(
            first_attempt_failed, "the first attempt to fail storing its outputs"
        )
        # Retried inside the same execute activity (Temporal's attempt 2), not as a new try.
        assert (attempt, failure_type) == (2, "OutputStoreError"), message
        # Back, empty (moto keeps objects in memory), as a store restored from nothing would be.
        await asyncio.to_thread(s3_server.start)
        s3_server.client().create_bucket(Bucket=bucket)

        task = await poll_task(
            http, task_id, lambda b: b["status"] in ("SUCCESS", "FAILURE"), timeout=60
        )
        assert task["status"] == "SUCCESS", task
        result = task["result"]
        # A store that went away is not the job's fault: its one try stands, and each attempt
        # that failed to store (any that started before the server was back too) is counted
        # as an infrastructure retry.
        assert result["attempts"] == 1, result
        assert result["infrastructure_retries"] >= 1, result
        # ComfyUI ran once per attempt; the bucket has one attempt's files and the manifest.
        runs = result["attempts"] + result["infrastructure_retries"]
        assert comfyui_saves([stack.comfyui_output_dir], prefix) == runs
        listing = s3_server.client().list_objects_v2(
            Bucket=bucket, Prefix=f"jobs/outputs/{task_id}/"
        )
        keys = sorted(item["Key"] for item in listing.get("Contents", []))
        files = [k for k in keys if not k.endswith("/manifest.json")]
        assert len(keys) == len(files) + 1
        assert sorted(k.rsplit("/", 1)[1] for k in files) == sorted(
            o["filename"] for o in result["outputs"]
        )
        assert len({k.rsplit("/", 2)[1] for k in files}) == 1  # one attempt's prefix
        uploads = s3_server.client().list_multipart_uploads(Bucket=bucket)
        assert not uploads.get("Uploads")
        async with httpx.AsyncClient(trust_env=False, timeout=30) as plain:
            fetched = await plain.get(result["download_url"])
        assert fetched.status_code == 200 and len(fetched.content) == result["outputs"][0]["size"]
