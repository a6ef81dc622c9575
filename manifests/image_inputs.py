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
    """Why a value is not an acceptable image input; str() is the reason, `field` the key of the
    object value it is about (None: the value as a whole)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


def is_inline_image(value: Any) -> bool:
    """An object value (url/base64/input_file) rather than a file name."""
    return isinstance(value, dict)


def parse_image_source(value: dict[str, Any]) -> ImageSource:
    """The typed form of an object value; raises ImageValueError naming what is wrong (the first
    of image_value_problems)."""
    problems = image_value_problems(value)
    if problems:
        raise problems[0]
    filename = value.get("filename")
    key = next(key for key in SOURCE_KEYS if key in value)
    if key == "url":
        return ImageFromUrl(value[key], filename)
    if key == "base64":
        return ImageFromBase64(value[key], filename)
    return ImageFromStore(value[key], filename)


def image_value_problems(value: dict[str, Any]) -> list[ImageValueError]:
    """Every reason an object value cannot be an image input, each key checked on its own so
    that every refusal names its key; empty when its shape is right."""
    problems = [
        ImageValueError(
            f"unknown key {key!r}; an image is a file name,"
            ' {"url": ...} or {"base64": ...} (optionally with "filename")',
            str(key),
        )
        for key in sorted(set(value) - set(SOURCE_KEYS) - {"filename"}, key=str)
    ]
    present = [key for key in SOURCE_KEYS if key in value]
    if len(present) != 1:
        problems.append(
            ImageValueError(
                'an image object needs exactly one of "url" or "base64"'
                + (f" (got {', '.join(present)})" if present else "")
            )
        )
    filename = value.get("filename")
    # Present means given: null is no way to leave it out (the schema says a string).
    if "filename" in value and (
        not isinstance(filename, str) or _FILENAME.fullmatch(filename) is None
    ):
        problems.append(
            ImageValueError(
                '"filename" must be a plain file name of letters, digits, ".", "_" and "-"'
                " (at most 100 characters)",
                "filename",
            )
        )
    for key in present:
        source = value[key]
        if not isinstance(source, str) or not source:
            problems.append(ImageValueError(f'"{key}" must be a non-empty string', key))
        elif key == "input_file" and _INPUT_FILE.fullmatch(source) is None:
            problems.append(
                ImageValueError('"input_file" must name an input stored by the API', key)
            )
    return problems


def upload_placeholder(param: str) -> str:
    """What a rendered graph holds where an image from the request goes, until the GPU worker
    uploads it to its ComfyUI and writes the uploaded name in its place."""
    return f"<input file '{param}', uploaded by the GPU worker>"
