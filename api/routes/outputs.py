"""GET (and HEAD) /tasks/{id}/outputs/{filename}: a task's output file, by API key or signed
URL; /results/{id}/{filename}, the original service's path, serves the same file the same way.

From a local store the API sends the file. From an object store it redirects to a fresh presigned
URL (`--download-mode presigned`, the default), or streams the object itself (`proxy`, for stores
clients cannot reach).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from starlette.responses import Response

from activities.io.output_store import OutputStoreError, content_disposition
from api.deps import OutputStoreDep, SettingsDep, require_download_access
from api.errors import OutputStoreUnavailable
from api.responses import error_responses
from api.tasks.output_files import resolve_output

router = APIRouter(tags=["tasks"])

_OUTPUT_PATH = "/tasks/{task_id}/outputs/{filename:path}"
# The original service's download path. Its links were not signed; here the signed query of a
# download URL, or an API key, opens it as it opens _OUTPUT_PATH.
_RESULTS_PATH = "/results/{task_id}/{filename:path}"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file, with its content type.", "content": {"*/*": {}}},
    307: {"description": "Object store, presigned mode: the file's presigned store URL."},
    **error_responses(
        400,
        401,
        403,
        404,
        503,
        descriptions={
            400: "The name would leave the task's folder.",
            401: "No valid API key and no signature (API keys are on).",
            403: "The signature is wrong or has expired.",
            404: "No such output file.",
            503: "The object store did not answer.",
        },
    ),
}


@router.get(
    _OUTPUT_PATH,
    response_class=FileResponse,
    dependencies=[Depends(require_download_access)],
    responses=_RESPONSES,
    summary="Download one output file (signed URL from the task result, or an API key)",
)
async def get_output(
    task_id: str, filename: str, request: Request, settings: SettingsDep, store: OutputStoreDep
) -> Response:
    try:
        stored = await resolve_output(store, task_id, filename)
    except OutputStoreError as err:
        raise OutputStoreUnavailable(str(err)) from err
    if stored.path is not None:
        return FileResponse(stored.path, media_type=stored.content_type, filename=stored.filename)
    assert stored.store_key is not None
    if settings.download_mode == "presigned":
        url = store.presigned_url(stored.store_key, settings.download_url_ttl_seconds)
        if url is not None:
            return RedirectResponse(url, status_code=307)
    headers = {
        "Content-Length": str(stored.size),
        "Content-Disposition": content_disposition(stored.filename),
    }
    if request.method == "HEAD":  # the size and type, without reading the object
        return Response(media_type=stored.content_type, headers=headers)
    return StreamingResponse(store.stream(stored), media_type=stored.content_type, headers=headers)


# HEAD answers as GET without the body (RFC 9110 §9.3.2): clients and proxies ask it for the size
# and type before a download. FastAPI routes only the methods they name; HEAD is implied by GET,
# so it stays out of the OpenAPI document.
router.add_api_route(
    _OUTPUT_PATH,
    get_output,
    methods=["HEAD"],
    response_class=FileResponse,
    dependencies=[Depends(require_download_access)],
    include_in_schema=False,
)
router.add_api_route(
    _RESULTS_PATH,
    get_output,
    methods=["GET"],
    response_class=FileResponse,
    dependencies=[Depends(require_download_access)],
    responses=_RESPONSES,
    summary="Download one output file at the original service's path (same access rules)",
    operation_id="get_result_file",
)
router.add_api_route(
    _RESULTS_PATH,
    get_output,
    methods=["HEAD"],
    response_class=FileResponse,
    dependencies=[Depends(require_download_access)],
    include_in_schema=False,
)
