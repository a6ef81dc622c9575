"""Request inputs of POST /generate that reach outside the request: the webhook's callback URL and
images given by URL or inline (base64).

Checked before anything starts: URLs must be http(s) and, unless the settings allow it, must not
resolve to a private, loopback, link-local or otherwise non-public address
(activities/io/outbound_urls.py; the workers check again when they connect). Inline images are
decoded, size-checked and stored in the output store's inputs (a folder or the bucket's inputs/
prefix, docs/storage.md); the workflow gets a reference (`{"input_file": "<sha256>.<ext>"}`),
never the bytes (temporal-notes.md §3k).
"""

from __future__ import annotations

from typing import Any

from activities.generation.image_uploads import (
    ImageInputError,
    decode_base64_image,
    image_extension,
)
from activities.io.outbound_urls import UrlRefused, check_url
from activities.io.output_store import OutputStore, OutputStoreError, open_output_store
from api.errors import ApiError
from api.schemas import GenerateCreate
from api.settings import Settings
from manifests.definitions import WorkflowManifest
from manifests.image_inputs import (
    ImageFromBase64,
    ImageFromStore,
    ImageFromUrl,
    is_inline_image,
    parse_image_source,
)
from manifests.model_inputs import is_model_reference, parse_model_source


class RequestInputsInvalid(ApiError):
    """One or more inputs refused; one entry per field, in FastAPI's 422 shape."""

    status_code = 422
    error_type = "value_error"

    def __init__(self, problems: list[tuple[list[str | int], str, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg, _ in problems))
        self.problems = problems

    def detail(self) -> Any:
        return [{"loc": loc, "msg": msg, "type": kind} for loc, msg, kind in self.problems]


class InputStoreUnavailable(ApiError):
    status_code = 503
    error_type = "input_store_unavailable"


def inline_images_removed(params: dict[str, Any]) -> dict[str, Any]:
    """`params` without base64 image data, for the size limit of what reaches Temporal: inline
    images are stored apart and have their own limit."""
    return {
        name: (
            {k: v for k, v in value.items() if k != "base64"} if is_inline_image(value) else value
        )
        for name, value in params.items()
    }


async def checked_callback_url(body: GenerateCreate, settings: Settings) -> str | None:
    """The request's callback URL (top level or options), checked; None when there is none."""
    top = body.callback_url
    nested = body.options.callback_url if body.options is not None else None
    if top is not None and nested is not None and top != nested:
        raise RequestInputsInvalid(
            [
                (
                    ["body", "callback_url"],
                    "differs from options.callback_url; give it once",
                    "value_error",
                )
            ]
        )
    url = nested if nested is not None else top
    if url is None:
        return None
    loc: list[str | int] = (
        ["body", "options", "callback_url"] if nested is not None else ["body", "callback_url"]
    )
    try:
        await check_url(url, allow_private=settings.allow_private_callback_urls)
    except UrlRefused as err:
        raise RequestInputsInvalid([(loc, f"callback_url {err}", "invalid_url")]) from None
    return url


async def stage_image_inputs(
    manifest: WorkflowManifest,
    params: dict[str, Any],
    settings: Settings,
    store: OutputStore | None = None,
) -> dict[str, Any]:
    """`params` with every image input checked: URLs against the address policy, base64 decoded
    within the size limit and stored (replaced by its `input_file` reference).

    Raises RequestInputsInvalid naming each bad `params.<name>`.
    """
    staged = dict(params)
    problems: list[tuple[list[str | int], str, str]] = []
    if store is None:
        store = open_output_store(settings.output_store, settings.data_dir)
    for name, value in params.items():
        defn = manifest.parameters.get(name)
        if defn is None or not defn.takes_file or not is_inline_image(value):
            continue
        loc: list[str | int] = ["body", "params", name]
        source = parse_image_source(value)  # the manifest check already accepted the shape
        if isinstance(source, ImageFromStore):
            problems.append(
                (
                    [*loc, "input_file"],
                    '"input_file" is set by the service; send "url" or "base64"',
                    "value_error",
                )
            )
        elif isinstance(source, ImageFromUrl):
            try:
                await check_url(source.url, allow_private=settings.allow_private_image_urls)
            except UrlRefused as err:
                problems.append(([*loc, "url"], f"url {err}", "invalid_url"))
        elif isinstance(source, ImageFromBase64):
            try:
                data = decode_base64_image(source.data, settings.max_image_bytes)
            except ImageInputError as err:
                kind = "too_large" if err.type == "ImageInputTooLarge" else "invalid_base64"
                problems.append(([*loc, "base64"], f"base64 {err.message}", kind))
                continue
            try:
                stored = await store.write_input(data, image_extension(data, source.filename))
            except OutputStoreError as err:
                raise InputStoreUnavailable(
                    f"cannot store the image input '{name}': {err}"
                ) from err
            staged[name] = {"input_file": stored}
            if source.filename is not None:
                staged[name]["filename"] = source.filename
    if problems:
        raise RequestInputsInvalid(problems)
    return staged


async def check_model_urls(
    manifest: WorkflowManifest, params: dict[str, Any], settings: Settings
) -> None:
    """Model files given by URL pass the image inputs' address policy now, as the GPU worker
    checks again when it downloads (docs/models.md). Raises RequestInputsInvalid."""
    problems: list[tuple[list[str | int], str, str]] = []
    for name in manifest.model_folders():
        value = params.get(name)
        if not is_model_reference(value):
            continue
        source = parse_model_source(value)  # the manifest check already accepted the shape
        try:
            await check_url(source.url, allow_private=settings.allow_private_image_urls)
        except UrlRefused as err:
            # An object names its "url" key; an hf:// string is the value itself.
            loc: list[str | int] = [
                "body",
                "params",
                name,
                *(["url"] if isinstance(value, dict) else []),
            ]
            problems.append((loc, f"url {err}", "invalid_url"))
    if problems:
        raise RequestInputsInvalid(problems)
