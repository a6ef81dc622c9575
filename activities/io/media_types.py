"""The Content-Type of an output file, from its name: one answer for the result's
`outputs[].content_type`, the download route and the upload to ComfyUI."""

from __future__ import annotations

import mimetypes
import os

# What ComfyUI's save nodes write (images, video, audio, 3D). The stdlib table depends on the
# machine's /etc/mime.types and lacks several of these, so they are fixed here.
_KNOWN = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".avif": "image/avif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".json": "application/json",
    ".txt": "text/plain",
    ".safetensors": "application/octet-stream",
}


def content_type_for(filename: str) -> str:
    """The media type of `filename` by its extension; application/octet-stream when unknown."""
    extension = os.path.splitext(filename)[1].lower()
    return _KNOWN.get(extension) or mimetypes.guess_type(filename)[0] or "application/octet-stream"
