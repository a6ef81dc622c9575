"""Values of `image` and `file` parameters (an image, mask, video or audio file): a file already in
ComfyUI's input directory, or one the request brings along.

Accepted request values (docs/image-inputs.md):
- `"photo.png"` (or `"sub/photo.png"`): a file already in the GPU worker's ComfyUI input directory;
- `{"url": "https://...", "filename"?: "x.png"}`: the GPU worker downloads it;
- `{"base64": "<base64 or a data: URI>", "filename"?: "x.png"}`: the API stores the decoded bytes
  in the shared store and replaces the value by `{"input_file": "<sha256>.<ext>"}`, so megabytes
  of image never travel through Temporal (temporal-notes.md §3k).

This module only checks shapes; the network policy and size limits are the API's and the GPU
worker's (api/image_inputs.py, activities/generation/image_uploads.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Names the API gives stored inputs: content-addressed, so a repeat of a request stores nothing new.
_INPUT_FILE = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,5}")
SOURCE_KEYS = ("url", "base64", "input_file")


@dataclass(frozen=True)
class ImageFromUrl:
    url: str
    filename: str | None = None


@dataclass(frozen=True)
class ImageFromBase64:
    data: str
    filename: str | None = None


@dataclass(frozen=True)
class ImageFromStore:
    """Bytes the API already stored (`<data-dir>/inputs/<input_file>`)."""

    input_file: str
    filename: str | None = None


ImageSource = ImageFromUrl | ImageFromBase64 | ImageFromStore


class ImageValueError(ValueError):
    """Why a value is not an acceptable image input; str() is the reason."""


def is_inline_image(value: Any) -> bool:
    """An object value (url/base64/input_file) rather than a file name."""
    return isinstance(value, dict)


def parse_image_source(value: dict[str, Any]) -> ImageSource:
    """The typed form of an object value; raises ImageValueError naming what is wrong."""
    present = [key for key in SOURCE_KEYS if key in value]
    unknown = sorted(set(value) - set(SOURCE_KEYS) - {"filename"})
    if unknown:
        raise ImageValueError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)}; an image is a file name,"
            ' {"url": ...} or {"base64": ...} (optionally with "filename")'
        )
    if len(present) != 1:
        raise ImageValueError(
            'an image object needs exactly one of "url" or "base64"'
            + (f" (got {', '.join(present)})" if present else "")
        )
    filename = value.get("filename")
    if filename is not None:
        if not isinstance(filename, str) or _FILENAME.fullmatch(filename) is None:
            raise ImageValueError(
                '"filename" must be a plain file name of letters, digits, ".", "_" and "-"'
                " (at most 100 characters)"
            )
    key = present[0]
    source = value[key]
    if not isinstance(source, str) or not source:
        raise ImageValueError(f'"{key}" must be a non-empty string')
    if key == "url":
        return ImageFromUrl(source, filename)
    if key == "base64":
        return ImageFromBase64(source, filename)
    if _INPUT_FILE.fullmatch(source) is None:
        raise ImageValueError('"input_file" must name an input stored by the API')
    return ImageFromStore(source, filename)


def image_value_problem(value: Any) -> str | None:
    """Why an object value cannot be an image input, or None when its shape is right."""
    try:
        parse_image_source(value)
    except ImageValueError as err:
        return str(err)
    return None


def upload_placeholder(param: str) -> str:
    """What a rendered graph holds where an image from the request goes, until the GPU worker
    uploads it to its ComfyUI and writes the uploaded name in its place."""
    return f"<input file '{param}', uploaded by the GPU worker>"
