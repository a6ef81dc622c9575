"""Entry point of the ComfyUI emulator: `python tests/emulator/main.py [ComfyUI flags]`.

It makes tests/emulator/ look like a ComfyUI install directory, so ComfyUIProcess starts it
exactly like ComfyUI: it accepts ComfyUI 0.8.0's command-line flags (comfyui-protocol.md §1),
rejects unknown ones with exit status 2 like argparse does, and binds its port only once it is
ready (§1.5). Test-only extras:
  --emulator-fault KEY=VALUE          a fault (see emulator_server.post_faults)
  --leak-mb-per-prompt N              every prompt it runs allocates N MiB that it never frees, so
                                      its resident memory really grows and /system_stats reports
                                      that much more VRAM in use, like a ComfyUI whose memory
                                      grows run after run (for the GPU worker's recycling)
  --emulator-load-seconds-per-gb S    a loader's first use of a model file sleeps S seconds per GB
                                      of the file's size (0, the default: loads are free)
  --emulator-max-loaded-models N      at most N model files stay loaded, least recently used
                                      dropped first, as ComfyUI does under memory pressure
                                      (0, the default: no limit); GET /emulator/models tells
                                      which are loaded and how many loads there were
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from emulator_server import Directories

# emulator_server (aiohttp, Pillow) is imported only after the flags parsed, so a bad flag
# fails fast, like ComfyUI's argparse does before its heavy imports.


log = logging.getLogger("comfyui-emulator")


def is_valid_directory(path: str) -> str:
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is not a valid directory.")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py")
    parser.add_argument("--listen", type=str, default="127.0.0.1", nargs="?", const="0.0.0.0,::")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--tls-keyfile", type=str)
    parser.add_argument("--tls-certfile", type=str)
    parser.add_argument("--enable-cors-header", type=str, default=None, nargs="?", const="*")
    parser.add_argument("--max-upload-size", type=float, default=None)
    parser.add_argument("--base-directory", type=str, default=None)
    parser.add_argument(
        "--extra-model-paths-config", type=str, default=None, nargs="+", action="append"
    )
    parser.add_argument("--output-directory", type=str, default=None)
    parser.add_argument("--temp-directory", type=str, default=None)
    parser.add_argument("--input-directory", type=str, default=None)
    parser.add_argument("--user-directory", type=is_valid_directory, default=None)
    parser.add_argument("--auto-launch", action="store_true")
    parser.add_argument("--disable-auto-launch", action="store_true")
    parser.add_argument("--cuda-device", type=int, default=None)
    parser.add_argument("--default-device", type=int, default=None)
    malloc = parser.add_mutually_exclusive_group()
    malloc.add_argument("--cuda-malloc", action="store_true")
    malloc.add_argument("--disable-cuda-malloc", action="store_true")
    parser.add_argument("--force-fp32", action="store_true")
    parser.add_argument("--force-fp16", action="store_true")
    parser.add_argument(
        "--preview-method",
        type=str,
        default="none",
        choices=["none", "auto", "latent2rgb", "taesd"],
    )
    parser.add_argument("--preview-size", type=int, default=512)
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache-classic", action="store_true")
    cache.add_argument("--cache-lru", type=int, default=0)
    cache.add_argument("--cache-none", action="store_true")
    cache.add_argument("--cache-ram", nargs="?", const=4.0, type=float, default=0)
    vram = parser.add_mutually_exclusive_group()
    vram.add_argument("--gpu-only", action="store_true")
    vram.add_argument("--highvram", action="store_true")
    vram.add_argument("--normalvram", action="store_true")
    vram.add_argument("--lowvram", action="store_true")
    vram.add_argument("--novram", action="store_true")
    vram.add_argument("--cpu", action="store_true")
    parser.add_argument("--reserve-vram", type=float, default=None)
    parser.add_argument("--async-offload", nargs="?", const=2, type=int, default=None)
    parser.add_argument("--disable-async-offload", action="store_true")
    parser.add_argument("--disable-pinned-memory", action="store_true")
    parser.add_argument("--disable-smart-memory", action="store_true")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--fast", nargs="*", type=str, default=None)
    parser.add_argument("--dont-print-server", action="store_true")
    parser.add_argument("--quick-test-for-ci", action="store_true")
    parser.add_argument("--windows-standalone-build", action="store_true")
    parser.add_argument("--disable-metadata", action="store_true")
    parser.add_argument("--disable-all-custom-nodes", action="store_true")
    parser.add_argument("--whitelist-custom-nodes", type=str, nargs="+", default=[])
    parser.add_argument("--disable-api-nodes", action="store_true")
    parser.add_argument("--multi-user", action="store_true")
    parser.add_argument(
        "--verbose",
        default="INFO",
        const="DEBUG",
        nargs="?",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    )
    parser.add_argument("--log-stdout", action="store_true")
    parser.add_argument("--front-end-version", type=str, default="comfyanonymous/ComfyUI@latest")
    parser.add_argument("--front-end-root", type=is_valid_directory, default=None)
    parser.add_argument("--enable-compress-response-body", action="store_true")
    parser.add_argument("--database-url", type=str, default=None)
    parser.add_argument("--enable-manager", action="store_true")
    parser.add_argument("--disable-manager-ui", action="store_true")
    parser.add_argument(
        "--emulator-fault",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="test-only fault, e.g. crash_on_node=EmulatorSampler or refuse_connections=true",
    )
    parser.add_argument(
        "--leak-mb-per-prompt",
        type=float,
        default=0.0,
        metavar="N",
        help="test-only: hold N MiB more memory after every prompt run (RSS and VRAM used grow)",
    )
    parser.add_argument("--emulator-load-seconds-per-gb", type=float, default=0.0)
    parser.add_argument("--emulator-max-loaded-models", type=int, default=0)
    return parser


def parse_fault(text: str) -> tuple[str, object]:
    key, _, raw = text.partition("=")
    value: object = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return key.strip(), value


def directories(args: argparse.Namespace) -> Directories:
    from emulator_server import Directories

    base = Path(args.base_directory).resolve() if args.base_directory else ROOT
    output = Path(args.output_directory).resolve() if args.output_directory else base / "output"
    input_dir = Path(args.input_directory).resolve() if args.input_directory else base / "input"
    # --temp-directory D makes the temp dir D/temp (comfyui-protocol.md §1.3).
    temp = (Path(args.temp_directory).resolve() / "temp") if args.temp_directory else base / "temp"
    user = Path(args.user_directory).resolve() if args.user_directory else base / "user"
    output.mkdir(parents=True, exist_ok=True)
    if not args.input_directory:
        input_dir.mkdir(parents=True, exist_ok=True)
    # Loaders list <base>/models/<folder> (comfyui-protocol.md §1.3); not created, as in ComfyUI
    # with a custom base directory [inferred].
    extra = extra_model_paths(args.extra_model_paths_config or [])
    return Directories(
        output=output, input=input_dir, temp=temp, user=user, models=base / "models",
        extra_models=extra,
    )  # fmt: skip


def extra_model_paths(configs: list[list[str]]) -> dict[str, list[Path]]:
    """What each --extra-model-paths-config YAML adds, read as utils/extra_config.py does:
    `base_path` (relative to the file) joined with each listed path, one per line; the legacy
    names unet and clip mean diffusion_models and text_encoders (`map_legacy`)."""
    legacy = {"unet": "diffusion_models", "clip": "text_encoders"}
    folders: dict[str, list[Path]] = {}
    for config_path in itertools.chain(*configs):
        config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
        here = os.path.dirname(os.path.abspath(config_path))
        for conf in config.values():
            if not conf:
                continue
            conf = dict(conf)
            base_path = conf.pop("base_path", None)
            conf.pop("is_default", None)
            if base_path is not None:
                base_path = os.path.expandvars(os.path.expanduser(base_path))
                base_path = os.path.join(here, base_path)  # an absolute one stays as it is
            for folder, paths in conf.items():
                for line in str(paths).split("\n"):
                    if line:
                        full = os.path.join(base_path or here, line)
                        folders.setdefault(legacy.get(folder, folder), []).append(
                            Path(os.path.normpath(full))
                        )
    return folders


def cleanup_temp(temp: Path) -> None:
    shutil.rmtree(temp, ignore_errors=True)


async def serve(args: argparse.Namespace, dirs: Directories, faults: dict) -> None:
    from emulator_server import EmulatorServer

    delay = float(faults.get("startup_delay_seconds", 0) or 0)
    if delay:
        await asyncio.sleep(delay)  # emulates a slow import phase before the port is bound
    server = EmulatorServer(args, dirs, faults)
    host = args.listen.split(",")[0]
    if host == "0.0.0.0":
        host = "127.0.0.1"  # the emulator never binds beyond loopback
    await server.start(host, args.port)
    if not args.dont_print_server:
        log.info("Starting server\n")
        log.info("To see the GUI go to: http://%s:%s", host, args.port)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stream = sys.stdout if args.log_stdout else sys.stderr
    logging.basicConfig(level=getattr(logging, args.verbose), format="%(message)s", stream=stream)
    if args.cuda_device is not None:
        # ComfyUI pins the process to one device before importing torch (§1.2).
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.cuda_device)
        log.info("Set cuda device to: %s", args.cuda_device)
    faults = dict(parse_fault(text) for text in args.emulator_fault)
    dirs = directories(args)
    cleanup_temp(dirs.temp)
    dirs.temp.mkdir(parents=True, exist_ok=True)
    if args.quick_test_for_ci:
        return 0
    try:
        asyncio.run(serve(args, dirs, faults))
    except KeyboardInterrupt:
        log.info("\nStopped server")
    finally:
        cleanup_temp(dirs.temp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
