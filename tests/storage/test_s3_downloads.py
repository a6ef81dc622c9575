"""A generation on an object store through the API: the base64 image input is staged in the
bucket (not on the API's disk, not in Temporal), the GPU worker reads it from there, and the
result's download URL is the store's presigned URL (default) or the API's, which streams the file
from the store (proxy mode)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from manifests.registry import ManifestRegistry
from tests.support.images import first_pixel, solid_png
from tests.support.manifests import INVERT_WORKFLOWS_YAML, write_image_manifests
from tests.support.s3_server import MotoServer
from tests.support.store_stack import StoreStack, stack_on_store
from tests.support.waiting import poll_task

DEADLINE = 60.0


async def _invert(stack: StoreStack, png: bytes) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, trust_env=False) as http:
        accepted = await http.post(
            "/generate",
            json={
                "workflow_id": "invert_image",
                "params": {"image": {"base64": base64.b64encode(png).decode()}},
            },
        )
        assert accepted.status_code in (200, 201, 202), accepted.text
        task_id = accepted.json()["task_id"]
        return await poll_task(
            http, task_id, lambda b: b["status"] in ("SUCCESS", "FAILURE"), DEADLINE
        )


def _object(server: MotoServer, bucket: str, key: str) -> bytes:
    data: bytes = server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def _registry(tmp_path: Path, pool: str) -> ManifestRegistry:
    return write_image_manifests(
        tmp_path, workflows_yaml=INVERT_WORKFLOWS_YAML + f"  pool: {pool}\n"
    )


async def test_outputs_and_inputs_go_through_the_bucket_and_download_from_presigned_urls(
    temporal_client: Client, s3_server: MotoServer, bucket: str, tmp_path: Path
):
    pool = f"s3-{uuid.uuid4().hex[:8]}"
    async with stack_on_store(
        temporal_client,
        tmp_path,
        _registry(tmp_path, pool),
        pool=pool,
        output_store=f"s3://{bucket}/svc",
    ) as stack:
        png = solid_png((10, 200, 30))
        task = await _invert(stack, png)
        assert task["status"] == "SUCCESS", task

        # The image input was staged in the bucket under its sha256.
        staged = f"svc/inputs/{hashlib.sha256(png).hexdigest()}.png"
        assert _object(s3_server, bucket, staged) == png
        # The download URL is the store's: fetched without the API, it serves the output.
        (output,) = task["result"]["outputs"]
        url = task["result"]["download_url"]
        assert url == output["url"] and url.startswith(f"{s3_server.endpoint}/{bucket}/svc/")
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            fetched = await http.get(url)
            assert fetched.status_code == 200
            assert first_pixel(fetched.content) == (245, 55, 225)  # the inverted input
            assert fetched.headers["content-type"] == "image/png"
            # The API's own route sends a presigned URL too (for links made before, or keys).
            via_api = await http.get(
                f"{stack.url}/tasks/{task['task_id']}/outputs/{output['filename']}",
                follow_redirects=True,
            )
            # The original service's path redirects to the store the same way.
            via_results = await http.get(
                f"{stack.url}/results/{task['task_id']}/{output['filename']}"
            )
        assert via_api.status_code == 200 and via_api.content == fetched.content
        assert via_results.status_code == 307
        assert via_results.headers["location"].startswith(f"{s3_server.endpoint}/{bucket}/svc/")
        assert len(fetched.content) == output["size"]
        # Nothing on the API host's disk.
        assert not (stack.api_data_dir / "outputs").exists()
        assert not (stack.api_data_dir / "inputs").exists()


async def test_proxy_mode_download_urls_are_the_apis_and_it_streams_from_the_bucket(
    temporal_client: Client, s3_server: MotoServer, bucket: str, tmp_path: Path
):
    pool = f"s3-{uuid.uuid4().hex[:8]}"
    async with stack_on_store(
        temporal_client,
        tmp_path,
        _registry(tmp_path, pool),
        pool=pool,
        output_store=f"s3://{bucket}",
        download_mode="proxy",
    ) as stack:
        task = await _invert(stack, solid_png((0, 0, 0)))
        assert task["status"] == "SUCCESS", task
        (output,) = task["result"]["outputs"]
        assert output["url"].startswith(f"{stack.url}/tasks/")
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            fetched = await http.get(output["url"])
            head = await http.head(output["url"])
            # The original service's path, opened by the same signed query, streams it too.
            results_url = httpx.URL(output["url"]).copy_with(
                path=f"/results/{task['task_id']}/{output['filename']}"
            )
            via_results = await http.get(results_url)
            results_head = await http.head(results_url)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(output["size"])
        assert (results_head.status_code, results_head.content) == (200, b"")
        assert results_head.headers["content-length"] == str(output["size"])
        assert fetched.status_code == 200
        assert via_results.status_code == 200 and via_results.content == fetched.content
        assert fetched.headers["content-type"] == "image/png"
        listing = s3_server.client().list_objects_v2(
            Bucket=bucket, Prefix=f"outputs/{task['task_id']}/"
        )
        (key,) = [o["Key"] for o in listing["Contents"] if not o["Key"].endswith("manifest.json")]
        assert fetched.content == _object(s3_server, bucket, key)
        assert first_pixel(fetched.content) == (255, 255, 255)
        assert not (stack.api_data_dir / "outputs").exists()
