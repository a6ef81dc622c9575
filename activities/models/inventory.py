"""Which model files are on a GPU worker's disk, per ComfyUI model folder, as ComfyUI would list
them (recursively, relative names, model extensions only: folder_paths.py `get_filename_list`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from manifests.model_inputs import FOLDER_DIRECTORIES, MODEL_EXTENSIONS


def model_files(roots: Iterable[Path]) -> dict[str, list[str]]:
    """Per loader folder (checkpoints, loras, ...), the sorted file names found under each root's
    directories for it (`unet/` counts as diffusion_models, as in ComfyUI). `roots` are models
    directories: ComfyUI's own `<install>/models` and the worker's download directory."""
    found: dict[str, set[str]] = {folder: set() for folder in FOLDER_DIRECTORIES}
    for root in roots:
        for folder, directories in FOLDER_DIRECTORIES.items():
            for directory in directories:
                base = root / directory
                if not base.is_dir():
                    continue
                for dirpath, _subdirs, filenames in os.walk(base, followlinks=True):
                    for filename in filenames:
                        if filename.lower().endswith(MODEL_EXTENSIONS):
                            relative = Path(dirpath, filename).relative_to(base)
                            found[folder].add(relative.as_posix())
    return {folder: sorted(names) for folder, names in found.items()}
