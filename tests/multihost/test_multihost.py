"""The service across hosts with nothing shared on disk: Temporal, the API with its control
worker, two GPU workers and the S3 server each on a network namespace of its own, talking over
host addresses only. A job runs on a worker host and downloads from the S3 host; a worker host cut
off from the network mid-job loses the job to the other and takes work again once it is back."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.multihost import S3_PORT, MultiHostService
from tests.support.outputs import new_prefix
from tests.support.temporal import pending_progress
from tests.support.waiting import poll_task, wait_for

# The job cut off mid-run: long enough to be caught running, short beside the 10 s heartbeat
# timeout that declares its worker lost.
LONG_JOB = {"steps": 20, "seconds_per_step": 0.25}
ENDED = ("SUCCESS", "FAILURE", "CANCELLED")


async def submit(http: httpx.AsyncClient, params: dict[str, Any], worker: str | None = None) -> str:
    body: dict[str, Any] = {"workflow_id": "sampled_image", "params": params}
    if worker is not None:
        body["options"] = {"worker": worker}
    accepted = await http.post("/generate", json=body)
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["task_id"])


async def succeeded(
    http: httpx.AsyncClient, service: MultiHostService, task_id: str, timeout: float = 60
) -> dict[str, Any]:
    task = await poll_task(http, task_id, lambda b: b["status"] in ENDED, timeout)
    assert task["status"] == "SUCCESS", (task, service.logs())
    result: dict[str, Any] = task["result"]
    return result


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as plain:
        return await plain.get(url)


def assert_one_attempt_stored(service: MultiHostService, task_id: str, result: dict) -> None:
    """The bucket holds the task's manifest and one attempt's files: those its result names."""
    keys = service.stored_keys(task_id)
    files = [k for k in keys if not k.endswith("/manifest.json")]
    assert len(keys) == len(files) + 1, keys
    assert sorted(k.rsplit("/", 1)[1] for k in files) == sorted(
        o["filename"] for o in result["outputs"]
    ), keys
    assert len({k.rsplit("/", 2)[1] for k in files}) == 1, keys  # one attempt's prefix
    uploads = service.s3.list_multipart_uploads(Bucket=service.bucket)
    assert not uploads.get("Uploads"), uploads


async def test_a_job_sent_to_the_api_host_runs_on_a_gpu_host_and_downloads_from_the_s3_host(
    service: MultiHostService,
):
    async with service.http() as http:
        task_id = await submit(http, {"filename_prefix": new_prefix()})
        result = await succeeded(http, service, task_id)
    assert result["worker"] in service.gpus
    s3_host = service.network.hosts["s3"]
    assert result["download_url"].startswith(f"http://{s3_host.address}:{S3_PORT}/")
    download = await fetch(result["download_url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert len(download.content) == result["outputs"][0]["size"]
    assert_one_attempt_stored(service, task_id, result)


async def test_a_gpu_host_cut_off_mid_job_loses_it_to_the_other_and_takes_work_once_back(
    service: MultiHostService,
):
    """The lost worker's job is retried on the other host as a fault of the infrastructure: it
    ends SUCCESS with `attempts` 1 (the job's own retries are not spent) and
    `infrastructure_retries` at least 1."""
    network = service.network
    async with service.http() as http:
        task_id = await submit(http, {"filename_prefix": new_prefix(), **LONG_JOB})
        handle = service.temporal.get_workflow_handle(task_id)

        async def running_on() -> str | None:
            progress = await pending_progress(handle)
            running = progress is not None and progress.phase == "running"
            return progress.worker if running and progress is not None else None

        cut_off = await wait_for(running_on, "the job to run on a GPU host")
        network.cut(network.hosts[cut_off])
        try:
            result = await succeeded(http, service, task_id, timeout=90)
        finally:
            network.restore(network.hosts[cut_off])
        (other,) = set(service.gpus) - {cut_off}
        assert result["worker"] == other
        assert result["attempts"] == 1
        assert result["infrastructure_retries"] >= 1
        download = await fetch(result["download_url"])
        assert download.status_code == 200
        assert len(download.content) == result["outputs"][0]["size"]

        # Back on the network, the host polls again: a job only it may run (pinned) ends there.
        pinned_id = await submit(http, {"filename_prefix": new_prefix()}, worker=cut_off)
        pinned = await succeeded(http, service, pinned_id, timeout=90)
        assert pinned["worker"] == cut_off

    # Once the host holds no attempt, its lost one has ended too (failed or refused), whatever
    # it stored on the way is in the bucket.
    async def idle() -> bool:
        return await service.gpus[cut_off].jobs_in_progress() == 0

    await wait_for(idle, f"{cut_off} to hold no job")
    assert_one_attempt_stored(service, pinned_id, pinned)
    assert_one_attempt_stored(service, task_id, result)
