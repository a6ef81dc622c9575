"""The `comfy-temporal` command line: one argparse tree; each module registers its commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfy-temporal",
        description="Run ComfyUI workflows behind a typed REST API, orchestrated by Temporal.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each module adds its own subcommands and sets `func` (argparse.Namespace -> exit code).
    from activities.workers import cli as worker_cli
    from api.cli import schedules, serve, setup, tasks
    from manifests import cli as manifests_cli

    serve.register(commands)
    setup.register(commands)
    tasks.register(commands)
    schedules.register(commands)
    manifests_cli.register(commands)
    # control-worker and gpu-worker ship with the activities package.
    worker_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
