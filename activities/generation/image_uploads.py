"""Image inputs on the GPU worker: get each image a request brought (download its URL, read it
from the output store, or decode it), upload it to this worker's ComfyUI, and put the uploaded
name into the graph's LoadImage inputs before the prompt is submitted.

Downloads follow the same policy as the API (activities/io/outbound_urls.py), checked again here
right before connecting, with a size limit and a timeout. Uploads go to
`comfy-temporal/<task id>/` in ComfyUI's input directory with overwrite, so a retried attempt
replaces its own file and two tasks never share one (comfyui-protocol.md §2.7).
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Sequence
from urllib.parse import urljoin

import httpx

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.errors import ComfyUIError
from activities.comfyui.protocol import Graph
from activities.io.outbound_urls import UrlRefused, check_url, pinned_request
from activities.io.output_store import OutputStore, OutputStoreError
from activities.workers.settings import ImageInputSettings
from manifests.image_inputs import ImageFromBase64, ImageFromStore, ImageFromUrl
from manifests.render import RenderedPrompt
from temporal_workflows.failures import ErrorType, activity_failure
from temporal_workflows.payloads import GenerationError, ImageInputRef

FETCH_TIMEOUT_SECONDS = 30.0
MAX_REDIRECTS = 3
UPLOAD_SUBFOLDER = "comfy-temporal"
# Images first; `file` parameters also take video and audio (any bytes reach ComfyUI the same way).
ACCEPT = "image/*, video/*, audio/*, */*;q=0.5"

# Magic numbers of the formats ComfyUI's loaders read (LoadImage, and for `file` parameters the
# video and audio loaders), to name a file that came without one.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"\x1aE\xdf\xa3", "webm"),
    (b"fLaC", "flac"),
    (b"OggS", "ogg"),
    (b"ID3", "mp3"),
)
_DATA_URI = re.compile(r"data:([A-Za-z0-9.+/-]*)(;[^,]*)?,", re.ASCII)


class ImageInputError(Exception):
    """An image input that cannot be used; `retryable` when another attempt may succeed."""

    def __init__(self, message: str, *, type: ErrorType, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.retryable = retryable


def image_extension(data: bytes, filename: str | None = None) -> str:
    """The file's own extension when it has one, else one guessed from the bytes (png default)."""
    if filename and "." in filename:
        extension = re.sub(r"[^a-z0-9]", "", filename.rsplit(".", 1)[1].lower())[:5]
        if extension:
            return extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[4:8] == b"ftyp":
        return "mp4"
    for magic, extension in _SIGNATURES:
        if data.startswith(magic):
            return extension
    return "png"


def decode_base64_image(text: str, limit: int) -> bytes:
    """Plain base64 or a `data:<type>;base64,<data>` URI; strict alphabet, size-limited.

    Raises ImageInputError (never retryable): undecodable input or more than `limit` bytes.
    """
    payload = text
    match = _DATA_URI.match(text)
    if match is not None:
        if ";base64" not in (match.group(2) or ""):
            raise ImageInputError(
                "a data: URI must be base64-encoded (data:image/png;base64,...)",
                type=ErrorType.INVALID_IMAGE_INPUT,
            )
        payload = text[match.end() :]
    payload = "".join(payload.split())  # line breaks are common in pasted base64
    # 4 characters carry 3 bytes: refuse before decoding megabytes past the limit.
    if len(payload) // 4 * 3 > limit + 3:
        raise ImageInputError(
            f"the decoded image would exceed the limit of {limit} bytes",
            type=ErrorType.IMAGE_INPUT_TOO_LARGE,
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageInputError(
            f"is not valid base64 ({err})", type=ErrorType.INVALID_IMAGE_INPUT
        ) from None
    if not data:
        raise ImageInputError("decodes to no bytes", type=ErrorType.INVALID_IMAGE_INPUT)
    if len(data) > limit:
        raise ImageInputError(
            f"the decoded image has {len(data)} bytes; the limit is {limit}",
            type=ErrorType.IMAGE_INPUT_TOO_LARGE,
        )
    return data


async def fetch_image(url: str, *, allow_private: bool, limit: int) -> bytes:
    """Download an image: policy re-checked at each hop (redirects included), the connection
    pinned to the checked address, at most `limit` bytes, within FETCH_TIMEOUT_SECONDS."""
    async with httpx.AsyncClient(
        timeout=FETCH_TIMEOUT_SECONDS, trust_env=False, follow_redirects=False
    ) as http:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                target = await check_url(current, allow_private=allow_private)
            except UrlRefused as err:
                raise ImageInputError(f"url {err}", type=ErrorType.IMAGE_INPUT_REFUSED) from None
            request = pinned_request(http, "GET", target, headers={"Accept": ACCEPT})
            try:
                response = await http.send(request, stream=True)
                try:
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise ImageInputError(
                            f"url answered {response.status_code}",
                            type=ErrorType.IMAGE_INPUT_UNAVAILABLE,
                            retryable=response.status_code >= 500
                            or response.status_code in (408, 429),
                        )
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise ImageInputError(
                            f"url serves {declared} bytes; the limit is {limit}",
                            type=ErrorType.IMAGE_INPUT_TOO_LARGE,
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise ImageInputError(
                                f"url serves more than the limit of {limit} bytes",
                                type=ErrorType.IMAGE_INPUT_TOO_LARGE,
                            )
                        chunks.append(chunk)
                    return b"".join(chunks)
                finally:
                    await response.aclose()
            except httpx.HTTPError as err:
                reason = str(err) or type(err).__name__
                raise ImageInputError(
                    f"could not download {current}: {reason}",
                    type=ErrorType.IMAGE_INPUT_UNAVAILABLE,
                    retryable=True,
                ) from None
        raise ImageInputError(
            f"url redirects more than {MAX_REDIRECTS} times", type=ErrorType.IMAGE_INPUT_UNAVAILABLE
        )


def image_input_refs(rendered: RenderedPrompt) -> list[ImageInputRef]:
    """The rendered graph's image inputs as the payload the GPU worker gets."""
    refs = []
    for item in rendered.image_inputs:
        source = item.source
        ref = ImageInputRef(param=item.param, targets=item.targets, filename=source.filename)
        if isinstance(source, ImageFromUrl):
            ref.url = source.url
        elif isinstance(source, ImageFromStore):
            ref.input_file = source.input_file
        elif isinstance(source, ImageFromBase64):
            ref.base64 = source.data
        refs.append(ref)
    return refs


async def upload_image_inputs(
    comfy: ComfyUIClient,
    store: OutputStore,
    task_id: str,
    graph: Graph,
    inputs: Sequence[ImageInputRef],
    *,
    allow_private: bool | None = None,
    limit: int | None = None,
) -> Graph:
    """A copy of `graph` whose image inputs name files uploaded to this ComfyUI.

    Raises ApplicationError(GenerationError naming the parameter): retryable when a download
    failed for a reason that may pass (5xx, network), otherwise not.
    """
    # What the caller leaves open: COMFY_ALLOW_PRIVATE_IMAGE_URLS and COMFY_MAX_IMAGE_BYTES.
    configured = ImageInputSettings()
    allow = configured.allow_private_image_urls if allow_private is None else allow_private
    limit = limit or configured.max_image_bytes
    graph = copy.deepcopy(graph)
    for item in inputs:
        try:
            data = await _image_bytes(store, item, allow_private=allow, limit=limit)
            name = f"{item.param}.{image_extension(data, item.filename)}"
            subfolder = f"{UPLOAD_SUBFOLDER}/{_folder_name(task_id)}"
            try:
                uploaded = await comfy.upload_image(data, name, subfolder=subfolder, overwrite=True)
            except ComfyUIError as err:
                raise ImageInputError(
                    f"upload to ComfyUI failed: {err}",
                    type=ErrorType.COMFYUI_UNAVAILABLE,
                    retryable=True,
                ) from None
        except ImageInputError as err:
            error = GenerationError(
                type=str(err.type),
                message=f"image parameter '{item.param}': {err.message}",
                param=item.param,
                retryable=err.retryable,
            )
            raise activity_failure(error) from None
        folder = uploaded.get("subfolder") or ""
        reference = f"{folder}/{uploaded['name']}" if folder else uploaded["name"]
        for target in item.targets:
            node_id, input_name = target.rsplit(".", 1)
            if node_id in graph:
                graph[node_id]["inputs"][input_name] = reference
    return graph


async def _image_bytes(
    store: OutputStore, item: ImageInputRef, *, allow_private: bool, limit: int
) -> bytes:
    if item.url is not None:
        return await fetch_image(item.url, allow_private=allow_private, limit=limit)
    if item.input_file is not None:
        try:
            return await store.read_input(item.input_file)
        except (OSError, OutputStoreError) as err:
            raise ImageInputError(
                f"the stored input {item.input_file} cannot be read: {err}",
                type=ErrorType.IMAGE_INPUT_UNAVAILABLE,
                retryable=True,
            ) from None
    if item.base64 is not None:
        return decode_base64_image(item.base64, limit)
    raise ImageInputError("has no source", type=ErrorType.INVALID_IMAGE_INPUT)


def _folder_name(task_id: str) -> str:
    # One path component ComfyUI accepts as a subfolder (comfyui-protocol.md §2.7: no traversal).
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", task_id).strip(".") or "task"
    return cleaned[:120]
