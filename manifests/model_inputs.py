"""Values of parameters bound to a model loader's file input (checkpoint, LoRA, VAE, ...): a file
already in the GPU worker's model folder, or one the GPU worker downloads (docs/models.md).

Accepted request values:
- `"model.safetensors"`: a file in ComfyUI's model folder for that loader;
- `"hf://org/repo/path/model.safetensors"` (or `hf://org/repo@revision/path`): a Hugging Face file;
- `{"url": "https://...", "sha256"?: "<64 hex>", "filename"?: "x.safetensors"}`; `url` may also
  be an `hf://` reference.

Pure, shared by manifest validation, rendering and the GPU worker: the download itself is
activities/models/.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

# (node class, input) -> ComfyUI's model folder name (folder_paths.py, `folder_names_and_paths`;
# the loaders' INPUT_TYPES in nodes.py and comfy_extras/nodes_upscale_model.py).
LOADER_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("VAELoader", "vae_name"): "vae",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
}

# Every directory ComfyUI reads for a folder under its models dir: two have a legacy second name
# (folder_paths.py: diffusion_models also reads unet/, text_encoders clip/, controlnet
# t2i_adapter/).
FOLDER_DIRECTORIES: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "diffusion_models": ("diffusion_models", "unet"),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "clip_vision": ("clip_vision",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "upscale_models": ("upscale_models",),
}

# ComfyUI lists only files with these extensions in a model folder (`supported_pt_extensions`).
MODEL_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")

HF_SCHEME = "hf://"
HF_BASE = "https://huggingface.co"
MAX_URL_LENGTH = 2048
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_HF_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HF_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_KEYS = ("url", "sha256", "filename")


class ModelValueError(ValueError):
    """Why a value is not an acceptable model reference; str() is the reason, `field` the key of
    the object value it is about (None: the value as a whole)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


@dataclass(frozen=True)
class ModelFromUrl:
    """A model file the GPU worker downloads: `url` is always http(s) (hf:// resolved)."""

    url: str
    sha256: str | None = None
    filename: str | None = None

    def file_name(self) -> str:
        """The name it gets in its model folder, the one the graph holds: the URL's file name
        with a digest of the URL, so two URLs with the same file name never share a file."""
        base = self.filename or url_file_name(self.url)
        stem, dot, extension = base.rpartition(".")
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:10]
        return f"{stem}-{digest}.{extension}" if dot else f"{base}-{digest}"


def is_model_reference(value: Any) -> bool:
    """A value the GPU worker downloads (an object or an hf:// string), not a file name."""
    return isinstance(value, dict) or (isinstance(value, str) and value.startswith(HF_SCHEME))


def resolve_hf(reference: str) -> str:
    """`hf://org/repo[@revision]/path` as the https URL of that file on the Hugging Face Hub."""
    rest = reference[len(HF_SCHEME) :]
    parts = rest.split("/")
    if len(parts) < 3 or any(not part for part in parts):
        raise ModelValueError(
            f"'{reference}' is not an hf:// reference (hf://<org>/<repo>[@<revision>]/<path>)"
        )
    org, repo, path = parts[0], parts[1], parts[2:]
    revision = "main"
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if _HF_REVISION.fullmatch(revision) is None:
            raise ModelValueError(f"'{reference}': revision '{revision}' is not a valid revision")
    for part in (org, repo, *path):
        if _HF_PART.fullmatch(part) is None or part in (".", ".."):
            raise ModelValueError(f"'{reference}': '{part}' is not a valid path segment")
    return f"{HF_BASE}/{org}/{repo}/resolve/{quote(revision)}/{'/'.join(path)}"


def url_file_name(url: str) -> str:
    """The last path segment of `url`, kept to the characters a model file name may use."""
    segment = urlsplit(url).path.rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", segment).lstrip("._-")[:100]
    return cleaned or "model"


def parse_model_source(value: Any) -> ModelFromUrl:
    """The typed form of a model reference; raises ModelValueError naming what is wrong (the
    first of model_value_problems)."""
    if isinstance(value, str):
        return _with_model_extension(ModelFromUrl(_checked_url(value)))
    if not isinstance(value, dict):
        raise ModelValueError('expected a file name, an hf:// reference or {"url": ...}')
    problems = _key_problems(value)
    if problems:
        raise problems[0]
    try:
        url = _checked_url(value["url"])
    except ModelValueError as err:
        raise ModelValueError(str(err), "url") from None
    sha256, filename = value.get("sha256"), value.get("filename")
    # A name without a model extension is the filename's, or else the URL's.
    field = "filename" if filename else "url"
    return _with_model_extension(ModelFromUrl(url, sha256, filename), field)


def _key_problems(value: dict[str, Any]) -> list[ModelValueError]:
    """What is wrong with each key of an object value, each checked on its own so that every
    refusal names its key."""
    problems = [
        ModelValueError(
            f"unknown key {key!r}; a model is a file name, an hf:// reference or"
            ' {"url": ..., "sha256"?: ..., "filename"?: ...}',
            str(key),
        )
        for key in sorted(set(value) - set(_KEYS), key=str)
    ]
    url = value.get("url")
    if not isinstance(url, str) or not url:
        problems.append(ModelValueError('"url" must be a non-empty string', "url"))
    sha256 = value.get("sha256")
    # Present means given: null is no way to leave it out (the schema says a string).
    if "sha256" in value and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
        problems.append(
            ModelValueError('"sha256" must be 64 lowercase hexadecimal digits', "sha256")
        )
    filename = value.get("filename")
    if "filename" in value and (
        not isinstance(filename, str) or _FILENAME.fullmatch(filename) is None
    ):
        problems.append(
            ModelValueError(
                '"filename" must be a plain file name of letters, digits, ".", "_" and "-"'
                " (at most 100 characters)",
                "filename",
            )
        )
    return problems


def model_value_problems(value: Any) -> list[ModelValueError]:
    """Every reason a reference cannot be downloaded as a model; empty when its shape is right."""
    if isinstance(value, dict):
        problems = _key_problems(value)
        if problems:
            return problems
    try:
        parse_model_source(value)
    except ModelValueError as err:
        return [err]
    return []


def _with_model_extension(source: ModelFromUrl, field: str | None = None) -> ModelFromUrl:
    # ComfyUI would not list a file with another extension, so the loader could never take it.
    name = source.filename or url_file_name(source.url)
    if not name.lower().endswith(MODEL_EXTENSIONS):
        raise ModelValueError(
            f"the file name '{name}' does not end in an extension ComfyUI lists as a model "
            f'({", ".join(MODEL_EXTENSIONS)}); give one with "filename"',
            field,
        )
    return source


def _checked_url(url: str) -> str:
    """http(s) with a host and no credentials (the address policy is checked at download)."""
    if url.startswith(HF_SCHEME):
        url = resolve_hf(url)
    if len(url) > MAX_URL_LENGTH:
        raise ModelValueError(f"the URL must be at most {MAX_URL_LENGTH} characters long")
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise ModelValueError(f"'{url}' is not a valid URL ({err})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelValueError(f"'{url}' must be an http(s) URL or an hf:// reference")
    if parts.username or parts.password:
        raise ModelValueError(
            "the URL must not contain credentials: the GPU worker's environment holds them"
        )
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ModelValueError("the URL must not contain spaces or control characters")
    return url
