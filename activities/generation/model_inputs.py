"""Model files a request gives by URL, on the GPU worker: each is made present in this worker's
ComfyUI model folder (activities/models/store.py) before the prompt is submitted, with the
download's progress in the heartbeat (`downloading_model`) and a failure that names the parameter
and the URL."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence

from activities.comfyui.protocol import Graph
from activities.models.download import ModelDownloadError
from activities.models.store import ModelStore
from temporal_workflows.failures import ErrorType, activity_failure, generation_error
from temporal_workflows.payloads import ModelDownloadProgress, ModelInputRef, Progress


async def fetch_model_inputs(
    store: ModelStore | None,
    inputs: Sequence[ModelInputRef],
    graph: Graph,
    *,
    progress: Progress,
    heartbeat: Callable[[], None],
    acquired: list[ModelInputRef],
    tick_seconds: float = 0.5,
) -> Graph:
    """A copy of `graph` whose loader inputs name the files, once every one is on disk. Each file
    is appended to `acquired` (pinned in the cache): the caller releases them when the job ends.

    Raises ApplicationError(GenerationError naming the parameter and the URL).
    """
    graph = copy.deepcopy(graph)
    for item in inputs:
        if store is None:
            raise activity_failure(
                generation_error(
                    ErrorType.MODEL_STORE,
                    param=item.param,
                    url=item.url,
                    reason="this GPU worker has no models directory to download into "
                    "(--models-dir / COMFY_MODELS_DIR)",
                )
            )
        fetch = asyncio.create_task(store.acquire(item))
        try:
            while True:
                done, _ = await asyncio.wait({fetch}, timeout=tick_seconds)
                shared = store.progress(item)
                if shared is not None or not done:
                    progress.phase = "downloading_model"
                    progress.download = ModelDownloadProgress(
                        param=item.param,
                        url=item.url,
                        bytes_done=shared.bytes_done if shared else 0,
                        bytes_total=shared.bytes_total if shared else None,
                    )
                    heartbeat()
                if done:
                    break
            fetch.result()
        except ModelDownloadError as err:
            raise activity_failure(
                generation_error(
                    err.type,
                    # Only ever narrows the type's rule: a 404 is final, a cut connection is not.
                    retryable=None if err.retryable else False,
                    param=item.param,
                    url=item.url,
                    reason=err.reason,
                )
            ) from None
        finally:
            if not fetch.done():
                fetch.cancel()
                # Should it finish before the cancel lands, its pin is still ours to drop.
                fetch.add_done_callback(_release_if_acquired(store, item))
        acquired.append(item)
        for target in item.targets:
            node_id, input_name = target.rsplit(".", 1)
            if node_id in graph:
                graph[node_id]["inputs"][input_name] = item.name
    if progress.phase == "downloading_model":
        progress.phase = "queued"
        progress.download = None
        heartbeat()
    return graph


def _release_if_acquired(
    store: ModelStore, item: ModelInputRef
) -> Callable[[asyncio.Task[object]], None]:
    def release(task: asyncio.Task[object]) -> None:
        if not task.cancelled() and task.exception() is None:
            store.release(item)

    return release
