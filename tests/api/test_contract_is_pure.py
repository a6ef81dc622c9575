"""api.contract is what the workers import from the API's side: it must not bring the HTTP layer
or a Temporal client with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_MODULES = [
    "api.contract.signed_urls",
    "api.contract.task_schemas",
    "api.contract.task_view",
]
FORBIDDEN = ("fastapi", "starlette", "temporalio", "api.app", "api.deps", "api.routes")


def test_importing_the_contract_loads_no_framework() -> None:
    # A fresh interpreter: this test process has long imported FastAPI and temporalio.
    script = (
        "import importlib, json, sys\n"
        f"for name in {CONTRACT_MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    pulled_in = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert pulled_in == []
