"""GET (and HEAD) /tasks/{id}/outputs/{filename}: a task's output file, by API key or signed
URL; /results/{id}/{filename}, the original service's path, serves the same file the same way."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from activities.io.media_types import content_type_for
from api.deps import SettingsDep, require_download_access
from api.responses import error_responses
from api.tasks.output_files import resolve_output

router = APIRouter(tags=["tasks"])

_OUTPUT_PATH = "/tasks/{task_id}/outputs/{filename:path}"
# The original service's download path. Its links were not signed; here the signed query of a
# download URL, or an API key, opens it as it opens _OUTPUT_PATH.
_RESULTS_PATH = "/results/{task_id}/{filename:path}"

_RESPONSES = {
    200: {"description": "The file, with its content type.", "content": {"*/*": {}}},
    **error_responses(
        400,
        401,
        403,
        404,
        descriptions={
            400: "The name would leave the task's folder.",
            401: "No valid API key and no signature (API keys are on).",
            403: "The signature is wrong or has expired.",
            404: "No such output file.",
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
async def get_output(task_id: str, filename: str, settings: SettingsDep) -> FileResponse:
    path = await asyncio.to_thread(resolve_output, settings.data_dir, task_id, filename)
    return FileResponse(path, media_type=content_type_for(path.name), filename=path.name)


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
