"""Node classes of the ComfyUI emulator: a few stock image nodes executed for real with Pillow,
the stock model loaders (their choices are the files in the models folders, as in ComfyUI), plus
test-only nodes (a progress-reporting sampler, fake audio/video savers).

Input specs follow `/object_info` of ComfyUI 0.8.0 (comfyui-protocol.md §5); validation and
caching rules live in emulator_server.py. This is a test double, not ComfyUI code.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import random
import re
import string
import struct
import time
import wave
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps
from PIL.PngImagePlugin import PngInfo

IMAGE = "IMAGE"
MASK = "MASK"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
ANY = "*"

# Filled by the server at startup: "output" / "input" / "temp" roots for annotated file names,
# and "models", the folder the loaders list (<base directory>/models, comfyui-protocol.md §1.3).
DIRECTORIES: dict[str, Path] = {}

# ComfyUI's model folder names and the subfolders of models/ each reads, legacy names included
# (folder_paths.py, `folder_names_and_paths`), and the file extensions it lists
# (`supported_pt_extensions`).
MODEL_FOLDERS = {
    "checkpoints": ("checkpoints",),
    "loras": ("loras",),
    "vae": ("vae",),
    "diffusion_models": ("unet", "diffusion_models"),
    "text_encoders": ("text_encoders", "clip"),
    "controlnet": ("controlnet", "t2i_adapter"),
    "upscale_models": ("upscale_models",),
}
MODEL_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
# Filled at startup from --extra-model-paths-config: folder -> more directories it reads.
EXTRA_MODEL_PATHS: dict[str, list[Path]] = {}

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


class InterruptProcessing(Exception):
    """Raised at a check point when an interrupt is pending (comfyui-protocol.md §4.2)."""


class EmulatedFailure(Exception):
    """An injected execution error whose reported exception_type is chosen by the test."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


@dataclass
class NodeContext:
    """What a running node may use: directories, flags and the progress/preview hooks."""

    prompt_id: str
    node_id: str
    prompt: dict
    extra_data: dict
    output_dir: Path
    temp_dir: Path
    input_dir: Path
    disable_metadata: bool
    preview_method: str
    progress: Callable[[float, float, tuple[str, bytes] | None], Awaitable[None]]
    text: Callable[[str], Awaitable[None]]
    check_interrupt: Callable[[], None]
    node_state: dict = field(default_factory=dict)


@dataclass
class NodeResult:
    outputs: tuple
    ui: dict | None = None


class Node:
    """Base class: REQUIRED / OPTIONAL map input names to (type or combo list, options)."""

    REQUIRED: dict[str, tuple[Any, dict]] = {}
    OPTIONAL: dict[str, tuple[Any, dict]] = {}
    RETURN_TYPES: tuple[str, ...] = ()
    RETURN_NAMES: tuple[str, ...] | None = None
    OUTPUT_NODE = False
    CATEGORY = "image"
    DESCRIPTION = ""
    HEAVY = False  # run in a thread so a long Pillow call never blocks the server loop
    NOT_IDEMPOTENT = False
    # Inputs whose choices are the files of a model folder, listed on every call (input -> folder).
    MODEL_INPUTS: dict[str, str] = {}
    # A V3-schema node: its combos read ["COMBO", {"options": [...]}] (comfyui-protocol.md §2.8).
    V3_SCHEMA = False

    @classmethod
    def validate(cls, inputs: dict, input_dir: Path) -> list[tuple[str, str]]:
        """Custom validation: list of (input name, reason)."""
        return []

    @classmethod
    def fingerprint(cls, inputs: dict, input_dir: Path) -> Any:
        """Extra cache-key component (ComfyUI's IS_CHANGED)."""
        return None

    async def execute(self, ctx: NodeContext, **inputs: Any) -> NodeResult:
        raise NotImplementedError


def _save_path(
    output_dir: Path, prefix: str, width: int, height: int
) -> tuple[Path, str, str, int]:
    """Mirror SaveImage naming (comfyui-protocol.md §4.6): subfolder from the prefix, counter
    = 1 + highest existing counter for that prefix."""
    now = time.localtime()
    for key, value in (
        ("%width%", str(width)),
        ("%height%", str(height)),
        ("%year%", str(now.tm_year)),
        ("%month%", f"{now.tm_mon:02d}"),
        ("%day%", f"{now.tm_mday:02d}"),
        ("%hour%", f"{now.tm_hour:02d}"),
        ("%minute%", f"{now.tm_min:02d}"),
        ("%second%", f"{now.tm_sec:02d}"),
    ):
        prefix = prefix.replace(key, value)
    subfolder = os.path.dirname(os.path.normpath(prefix))
    base = os.path.basename(os.path.normpath(prefix))
    full_folder = os.path.abspath(os.path.join(output_dir, subfolder))
    output_abs = os.path.abspath(output_dir)
    if os.path.commonpath((output_abs, full_folder)) != output_abs:
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {full_folder}"
            f"\n         output_dir: {output_abs}"
            f"\n         commonpath: {os.path.commonpath((output_abs, full_folder))}"
        )
    os.makedirs(full_folder, exist_ok=True)
    pattern = re.compile(re.escape(base) + r"_(\d+)_")
    counter = 0
    for name in os.listdir(full_folder):
        match = pattern.match(name)
        if match:
            counter = max(counter, int(match.group(1)))
    return Path(full_folder), base, subfolder, counter + 1


class EmptyImage(Node):
    REQUIRED = {
        "width": (INT, {"default": 512, "min": 1, "max": 16384, "step": 1}),
        "height": (INT, {"default": 512, "min": 1, "max": 16384, "step": 1}),
        "batch_size": (INT, {"default": 1, "min": 1, "max": 4096}),
        "color": (INT, {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
    }
    RETURN_TYPES = (IMAGE,)

    async def execute(self, ctx, width, height, batch_size, color):
        rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
        image = Image.new("RGB", (width, height), rgb)
        return NodeResult(([image.copy() for _ in range(batch_size)],))


class ImageInvert(Node):
    REQUIRED = {"image": (IMAGE, {})}
    RETURN_TYPES = (IMAGE,)

    async def execute(self, ctx, image):
        return NodeResult(([ImageOps.invert(im.convert("RGB")) for im in image],))


class ImageBlur(Node):
    REQUIRED = {
        "image": (IMAGE, {}),
        "blur_radius": (INT, {"default": 1, "min": 1, "max": 31, "step": 1}),
        "sigma": (FLOAT, {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
    }
    RETURN_TYPES = (IMAGE,)
    CATEGORY = "image/postprocessing"
    HEAVY = True

    async def execute(self, ctx, image, blur_radius, sigma):
        def blur() -> list[Image.Image]:
            return [
                im.filter(ImageFilter.GaussianBlur(radius=sigma * blur_radius / 2)) for im in image
            ]

        return NodeResult((await asyncio.to_thread(blur),))


class ImageScale(Node):
    REQUIRED = {
        "image": (IMAGE, {}),
        "upscale_method": (UPSCALE_METHODS, {}),
        "width": (INT, {"default": 512, "min": 0, "max": 16384, "step": 1}),
        "height": (INT, {"default": 512, "min": 0, "max": 16384, "step": 1}),
        "crop": (["disabled", "center"], {}),
    }
    RETURN_TYPES = (IMAGE,)
    CATEGORY = "image/upscaling"
    HEAVY = True

    async def execute(self, ctx, image, upscale_method, width, height, crop):
        resample = {
            "nearest-exact": Image.Resampling.NEAREST,
            "bilinear": Image.Resampling.BILINEAR,
            "area": Image.Resampling.BOX,
            "bicubic": Image.Resampling.BICUBIC,
            "lanczos": Image.Resampling.LANCZOS,
        }[upscale_method]

        def scale() -> list[Image.Image]:
            out = []
            for im in image:
                w = width or max(1, round(im.width * height / im.height))
                h = height or max(1, round(im.height * width / im.width))
                out.append(im.resize((w, h), resample))
            return out

        return NodeResult((await asyncio.to_thread(scale),))


class LoadImage(Node):
    REQUIRED = {"image": (STRING, {"image_upload": True})}
    RETURN_TYPES = (IMAGE, MASK)

    @classmethod
    def _path(cls, name: str, input_dir: Path) -> Path:
        # Annotated names pick another root (comfyui-protocol.md §2.7).
        for kind in ("output", "temp", "input"):
            suffix = f" [{kind}]"
            if name.endswith(suffix):
                return DIRECTORIES.get(kind, input_dir) / name[: -len(suffix)]
        return input_dir / name

    @classmethod
    def validate(cls, inputs, input_dir):
        name = inputs.get("image")
        if isinstance(name, str) and not cls._path(name, input_dir).is_file():
            return [("image", f"Invalid image file: {name}")]
        return []

    @classmethod
    def fingerprint(cls, inputs, input_dir):
        # LoadImage's IS_CHANGED hashes the file (comfyui-protocol.md §4.8).
        path = cls._path(str(inputs.get("image")), input_dir)
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None

    async def execute(self, ctx, image):
        path = self._path(image, ctx.input_dir)
        with Image.open(path) as opened:
            opened.load()
            rgb = opened.convert("RGB")
            mask = (
                opened.getchannel("A")
                if "A" in opened.getbands()
                else Image.new("L", opened.size, 0)
            )
        return NodeResult(([rgb], [mask]))


def _png_info(ctx: NodeContext) -> PngInfo | None:
    if ctx.disable_metadata:
        return None
    info = PngInfo()
    info.add_text("prompt", json.dumps(ctx.prompt))
    for key, value in (ctx.extra_data.get("extra_pnginfo") or {}).items():
        info.add_text(key, json.dumps(value))
    return info


class SaveImage(Node):
    REQUIRED = {
        "images": (IMAGE, {}),
        "filename_prefix": (STRING, {"default": "ComfyUI"}),
    }
    OUTPUT_NODE = True

    async def execute(self, ctx, images, filename_prefix):
        first = images[0]
        folder, base, subfolder, counter = _save_path(
            ctx.output_dir, filename_prefix, first.width, first.height
        )
        results = []
        info = _png_info(ctx)
        for batch_number, im in enumerate(images):
            name = f"{base.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            im.save(folder / name, pnginfo=info, compress_level=1)
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            counter += 1
        return NodeResult((), {"images": results})


class PreviewImage(Node):
    REQUIRED = {"images": (IMAGE, {})}
    OUTPUT_NODE = True

    async def execute(self, ctx, images):
        # The random suffix is chosen once per node instance (comfyui-protocol.md §4.5).
        suffix = ctx.node_state.setdefault(
            "suffix", "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        )
        first = images[0]
        folder, base, subfolder, counter = _save_path(
            ctx.temp_dir, "ComfyUI_temp_" + suffix, first.width, first.height
        )
        results = []
        for im in images:
            name = f"{base}_{counter:05}_.png"
            im.save(folder / name, compress_level=1)
            results.append({"filename": name, "subfolder": subfolder, "type": "temp"})
            counter += 1
        return NodeResult((), {"images": results})


class SaveAnimatedWEBP(Node):
    REQUIRED = {
        "images": (IMAGE, {}),
        "filename_prefix": (STRING, {"default": "ComfyUI"}),
        "fps": (FLOAT, {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
        "lossless": (BOOLEAN, {"default": True}),
        "quality": (INT, {"default": 80, "min": 0, "max": 100}),
        "method": (["default", "fastest", "slowest"], {}),
    }
    OUTPUT_NODE = True
    CATEGORY = "image/animation"
    HEAVY = True

    async def execute(self, ctx, images, filename_prefix, fps, lossless, quality, method):
        first = images[0]
        folder, base, subfolder, counter = _save_path(
            ctx.output_dir, filename_prefix, first.width, first.height
        )
        name = f"{base}_{counter:05}_.webp"

        def save() -> None:
            first.save(
                folder / name,
                save_all=True,
                append_images=images[1:],
                duration=int(1000.0 / fps),
                lossless=lossless,
                quality=quality,
                method={"default": 4, "fastest": 0, "slowest": 6}[method],
            )

        await asyncio.to_thread(save)
        return NodeResult(
            (),
            {
                "images": [{"filename": name, "subfolder": subfolder, "type": "output"}],
                "animated": [True],
            },
        )


class GetImageSize(Node):
    REQUIRED = {"image": (IMAGE, {})}
    RETURN_TYPES = (INT, INT, INT)
    RETURN_NAMES = ("width", "height", "batch_size")
    CATEGORY = "image"

    async def execute(self, ctx, image):
        width, height = image[0].size
        # A type-3 TEXT frame, broadcast to every socket (comfyui-protocol.md §3.3).
        await ctx.text(f"width: {width}, height: {height}\n batch size: {len(image)}")
        return NodeResult((width, height, len(image)))


class PreviewAny(Node):
    REQUIRED = {"source": (ANY, {})}
    OUTPUT_NODE = True
    CATEGORY = "utils"

    async def execute(self, ctx, source):
        text = source if isinstance(source, str) else json.dumps(source)
        return NodeResult((), {"text": [text]})


class SaveImageWebsocket(Node):
    REQUIRED = {"images": (IMAGE, {})}
    OUTPUT_NODE = True
    CATEGORY = "api node/image"
    NOT_IDEMPOTENT = True

    @classmethod
    def fingerprint(cls, inputs, input_dir):
        return time.time()  # never cached (comfyui-protocol.md §5)

    async def execute(self, ctx, images):
        # 0-based progress with one PNG per image (comfyui-protocol.md §3.3).
        for index, im in enumerate(images):
            buffer = io.BytesIO()
            im.save(buffer, format="PNG", compress_level=1)
            await ctx.progress(index, len(images), ("PNG", buffer.getvalue()))
        return NodeResult(())


def _latent_preview(step: int, steps: int) -> bytes:
    shade = int(255 * step / max(steps, 1))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 128, 255 - shade)).save(buffer, format="JPEG", quality=60)
    return buffer.getvalue()


class EmulatorSampler(Node):
    """Test-only sampler stand-in: one `progress` per step, interrupt honoured at every step,
    latent-style JPEG previews when a preview method is set (comfyui-protocol.md §3.3, §4.2)."""

    REQUIRED = {
        "images": (IMAGE, {}),
        "steps": (INT, {"default": 20, "min": 1, "max": 10000}),
        "seconds_per_step": (FLOAT, {"default": 0.0, "min": 0.0, "max": 60.0, "step": 0.001}),
    }
    # A loader's MODEL may feed it, so graphs with model loaders run on the emulator.
    OPTIONAL = {"model": ("MODEL", {})}
    RETURN_TYPES = (IMAGE,)
    CATEGORY = "sampling"

    async def execute(self, ctx, images, steps, seconds_per_step, model=None):
        for step in range(1, steps + 1):
            if seconds_per_step > 0:
                await asyncio.sleep(seconds_per_step)
            ctx.check_interrupt()
            preview = None
            if ctx.preview_method not in ("none", ""):
                preview = ("JPEG", _latent_preview(step, steps))
            await ctx.progress(step, steps, preview)
        shade = steps % 256
        return NodeResult(
            (
                [
                    Image.blend(im.convert("RGB"), Image.new("RGB", im.size, (shade,) * 3), 0.1)
                    for im in images
                ],
            )
        )


class EmulatorSaveAudio(Node):
    """Test-only audio saver: writes a short silent WAV; UI key `audio` like SaveAudio."""

    REQUIRED = {
        "filename_prefix": (STRING, {"default": "audio/ComfyUI"}),
        "seconds": (FLOAT, {"default": 0.1, "min": 0.0, "max": 600.0}),
    }
    OPTIONAL = {"images": (IMAGE, {})}
    OUTPUT_NODE = True
    CATEGORY = "audio"

    async def execute(self, ctx, filename_prefix, seconds, images=None):
        folder, base, subfolder, counter = _save_path(ctx.output_dir, filename_prefix, 0, 0)
        name = f"{base}_{counter:05}_.wav"
        with wave.open(str(folder / name), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\x00\x00" * int(8000 * seconds))
        return NodeResult(
            (), {"audio": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
        )


class EmulatorSaveVideo(Node):
    """Test-only video saver: writes an MP4-looking file of `size_bytes`; UI key `gifs` as
    VideoHelperSuite reports it (comfyui-protocol.md §2.5)."""

    REQUIRED = {
        "images": (IMAGE, {}),
        "filename_prefix": (STRING, {"default": "video/ComfyUI"}),
        "size_bytes": (INT, {"default": 4096, "min": 16, "max": 2**34}),
    }
    OUTPUT_NODE = True
    CATEGORY = "video"
    HEAVY = True

    async def execute(self, ctx, images, filename_prefix, size_bytes):
        folder, base, subfolder, counter = _save_path(ctx.output_dir, filename_prefix, 0, 0)
        name = f"{base}_{counter:05}.mp4"

        def write() -> None:
            chunk = hashlib.sha256(name.encode()).digest() * 32768  # 1 MiB of patterned bytes
            with open(folder / name, "wb") as out:
                header = struct.pack(">I", 24) + b"ftypisom" + b"\x00" * 12
                out.write(header)
                remaining = size_bytes - len(header)
                while remaining > 0:
                    part = chunk[: min(len(chunk), remaining)]
                    out.write(part)
                    remaining -= len(part)

        await asyncio.to_thread(write)
        return NodeResult(
            (),
            {
                "gifs": [
                    {
                        "filename": name,
                        "subfolder": subfolder,
                        "type": "output",
                        "format": "video/h264-mp4",
                        "frame_rate": 8.0,
                    }
                ]
            },
        )


def model_directories(folder: str) -> list[Path]:
    """Where ComfyUI looks for a folder's files, in order: models/<name> for each of its names,
    then what --extra-model-paths-config added (folder_paths.py, `folder_names_and_paths`)."""
    root = DIRECTORIES.get("models")
    own = [root / sub for sub in MODEL_FOLDERS[folder]] if root is not None else []
    return own + EXTRA_MODEL_PATHS.get(folder, [])


def model_files(folder: str) -> list[str]:
    """ComfyUI's `get_filename_list(folder)`: every file with a model extension under the
    folder's directories, recursively, as relative paths with "/", sorted, each once.
    Read on every call, so a file copied in shows in the next /object_info."""
    found: set[str] = set()
    for base in model_directories(folder):
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS:
                found.add(path.relative_to(base).as_posix())
    return sorted(found)


def input_specs(cls: type[Node]) -> tuple[dict[str, tuple[Any, dict]], dict[str, tuple[Any, dict]]]:
    """REQUIRED and OPTIONAL with each model input's choices listed now."""

    def resolve(items: dict[str, tuple[Any, dict]]) -> dict[str, tuple[Any, dict]]:
        return {
            name: (model_files(cls.MODEL_INPUTS[name]), opts)
            if name in cls.MODEL_INPUTS
            else (kind, opts)
            for name, (kind, opts) in items.items()
        }

    return resolve(cls.REQUIRED), resolve(cls.OPTIONAL)


class ModelMemory:
    """The emulated GPU's loaded models: a loader's first use of a file sleeps in proportion to
    the file's size (--emulator-load-seconds-per-gb), and at most --emulator-max-loaded-models
    files stay loaded, least recently used dropped first, as ComfyUI frees models under memory
    pressure (comfyui-protocol.md §4.12). /free and an out-of-memory error drop them all."""

    def __init__(self) -> None:
        self.seconds_per_gb = 0.0
        self.max_loaded = 0  # 0: no limit
        self.loaded: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.loads = 0  # files read from disk so far

    async def use(self, folder: str, name: str, check_interrupt: Callable[[], None]) -> None:
        key = (folder, name)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return
        self.loads += 1
        seconds = self.seconds_per_gb * _model_size(folder, name) / 1e9
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:  # interruptible, like a long comfy op
            check_interrupt()
            await asyncio.sleep(min(left, 0.1))
        self.loaded[key] = None
        while self.max_loaded and len(self.loaded) > self.max_loaded:
            self.loaded.popitem(last=False)

    def clear(self) -> None:
        self.loaded.clear()

    def describe(self) -> dict:
        return {
            "loaded": [{"folder": f, "name": n} for f, n in self.loaded],
            "loads": self.loads,
        }


def _model_size(folder: str, name: str) -> int:
    for base in model_directories(folder):
        path = base / name
        if path.is_file():
            return path.stat().st_size
    return 0


MODEL_MEMORY = ModelMemory()


@dataclass(frozen=True)
class LoadedModel:
    """What a loader hands downstream: the emulator loads no weights, it names the files."""

    kind: str
    files: tuple[str, ...]


class CheckpointLoaderSimple(Node):
    REQUIRED = {
        "ckpt_name": ([], {"tooltip": "The name of the checkpoint (model) to load."}),
    }
    MODEL_INPUTS = {"ckpt_name": "checkpoints"}
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    CATEGORY = "loaders"
    DESCRIPTION = (
        "Loads a diffusion model checkpoint, diffusion models are used to denoise latents."
    )

    async def execute(self, ctx, ckpt_name):
        files = (ckpt_name,)
        return NodeResult(tuple(LoadedModel(kind, files) for kind in self.RETURN_TYPES))


_STRENGTH = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}
_STRENGTH_TIP = "How strongly to modify the {} model. This value can be negative."


class LoraLoader(Node):
    REQUIRED = {
        "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
        "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
        "lora_name": ([], {"tooltip": "The name of the LoRA."}),
        "strength_model": (
            FLOAT,
            {**_STRENGTH, "tooltip": _STRENGTH_TIP.format("diffusion")},
        ),
        "strength_clip": (
            FLOAT,
            {**_STRENGTH, "tooltip": _STRENGTH_TIP.format("CLIP")},
        ),
    }
    MODEL_INPUTS = {"lora_name": "loras"}
    RETURN_TYPES = ("MODEL", "CLIP")
    CATEGORY = "loaders"

    async def execute(self, ctx, model, clip, lora_name, strength_model, strength_clip):
        return NodeResult(
            (
                LoadedModel("MODEL", (*model.files, lora_name)),
                LoadedModel("CLIP", (*clip.files, lora_name)),
            )
        )


class LoraLoaderModelOnly(Node):
    REQUIRED = {
        "model": ("MODEL", {}),
        "lora_name": ([], {}),
        "strength_model": (FLOAT, dict(_STRENGTH)),
    }
    MODEL_INPUTS = {"lora_name": "loras"}
    RETURN_TYPES = ("MODEL",)
    CATEGORY = "loaders"

    async def execute(self, ctx, model, lora_name, strength_model):
        return NodeResult((LoadedModel("MODEL", (*model.files, lora_name)),))


class VAELoader(Node):
    REQUIRED = {"vae_name": ([], {})}
    MODEL_INPUTS = {"vae_name": "vae"}
    RETURN_TYPES = ("VAE",)
    CATEGORY = "loaders"

    async def execute(self, ctx, vae_name):
        return NodeResult((LoadedModel("VAE", (vae_name,)),))


class UNETLoader(Node):
    REQUIRED = {
        "unet_name": ([], {}),
        "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"], {}),
    }
    MODEL_INPUTS = {"unet_name": "diffusion_models"}
    RETURN_TYPES = ("MODEL",)
    CATEGORY = "advanced/loaders"

    async def execute(self, ctx, unet_name, weight_dtype):
        return NodeResult((LoadedModel("MODEL", (unet_name,)),))


class ControlNetLoader(Node):
    REQUIRED = {"control_net_name": ([], {})}
    MODEL_INPUTS = {"control_net_name": "controlnet"}
    RETURN_TYPES = ("CONTROL_NET",)
    CATEGORY = "loaders"

    async def execute(self, ctx, control_net_name):
        return NodeResult((LoadedModel("CONTROL_NET", (control_net_name,)),))


class UpscaleModelLoader(Node):
    """A V3-schema loader, so the emulator also serves the ["COMBO", {"options"}] form [inferred:
    comfy_extras/nodes_upscale_model.py uses comfy_api.latest's io.Combo]."""

    REQUIRED = {"model_name": ([], {})}
    MODEL_INPUTS = {"model_name": "upscale_models"}
    V3_SCHEMA = True
    RETURN_TYPES = ("UPSCALE_MODEL",)
    CATEGORY = "loaders"

    async def execute(self, ctx, model_name):
        return NodeResult((LoadedModel("UPSCALE_MODEL", (model_name,)),))


NODE_CLASSES: dict[str, type[Node]] = {
    cls.__name__: cls
    for cls in (
        EmptyImage,
        ImageInvert,
        ImageBlur,
        ImageScale,
        LoadImage,
        SaveImage,
        PreviewImage,
        SaveAnimatedWEBP,
        GetImageSize,
        PreviewAny,
        SaveImageWebsocket,
        EmulatorSampler,
        EmulatorSaveAudio,
        EmulatorSaveVideo,
        CheckpointLoaderSimple,
        LoraLoader,
        LoraLoaderModelOnly,
        VAELoader,
        UNETLoader,
        ControlNetLoader,
        UpscaleModelLoader,
    )
}


def object_info(cls: type[Node], input_dir: Path) -> dict:
    """The `/object_info` entry of one class (comfyui-protocol.md §2.8)."""

    def spec(items: dict[str, tuple[Any, dict]]) -> dict:
        out = {}
        for name, (kind, opts) in items.items():
            if cls.V3_SCHEMA and isinstance(kind, list):
                out[name] = ["COMBO", {**opts, "options": kind}]
            elif cls is LoadImage and name == "image":
                files = (
                    sorted(p.name for p in input_dir.iterdir() if p.is_file())
                    if input_dir.is_dir()
                    else []
                )
                out[name] = [files, opts]
            else:
                out[name] = [kind, opts] if opts else [kind]
        return out

    required, optional = input_specs(cls)
    info: dict[str, Any] = {
        "input": {"required": spec(required)},
        "input_order": {"required": list(cls.REQUIRED)},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": [False] * len(cls.RETURN_TYPES),
        "output_name": list(cls.RETURN_NAMES or cls.RETURN_TYPES),
        "name": cls.__name__,
        "display_name": cls.__name__,
        "description": cls.DESCRIPTION,
        "python_module": "nodes",
        "category": cls.CATEGORY,
        "output_node": cls.OUTPUT_NODE,
    }
    if optional:
        info["input"]["optional"] = spec(optional)
        info["input_order"]["optional"] = list(optional)
    if cls.V3_SCHEMA:
        info.update(
            output_tooltips=[None] * len(cls.RETURN_TYPES),
            output_matchtypes=None,
            deprecated=False,
            experimental=False,
            api_node=False,
        )
    return info
