"""Environments that tests give the processes they start."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def python3_without_comfyui_requirements(tmp_path: Path) -> str:
    """A PATH whose `python3` lacks ComfyUI's requirements (this interpreter without its
    site-packages), as on a machine where COMFYUI_PYTHON was forgotten."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = bin_dir / "python3"
    python3.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    python3.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
