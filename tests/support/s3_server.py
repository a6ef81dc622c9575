"""moto's standalone S3 server as a separate process on loopback: what the storage tests talk to
through boto3 and plain HTTP, as they would to MinIO or AWS S3. It keeps its objects in memory,
so a restart empties it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx

from activities.io.ports import free_port

READY_SECONDS = 30.0


class MotoServer:
    """One `python -m moto.server` process; `restart()` brings it back on the same port."""

    def __init__(self, log_file: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}")
            try:
                httpx.get(self.endpoint, timeout=1.0, trust_env=False)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto server not up on {self.endpoint}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self):  # noqa: ANN201 - boto3 clients are untyped
        """A boto3 client of this server, configured from the same AWS variables the service
        reads (the tests set them)."""
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)
