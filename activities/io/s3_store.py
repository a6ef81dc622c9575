"""The output store in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, Ceph, ...), through
boto3. Endpoint, region and credentials come from the standard AWS variables and files
(AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/config); never our own.

Keys under the configured prefix (docs/storage.md):
    outputs/<task_id>/<attempt_id>/<filename>   one attempt's uploaded files
    outputs/<task_id>/manifest.json             the commit: written last, only if absent
    inputs/<sha256>.<ext>                       image inputs the API staged
    previews/<task_id>                          a running task's latest preview

boto3 is blocking: every call runs in a worker thread, so the event loop (and the activity's
heartbeats) keep going during long uploads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from activities.io.media_types import content_type_for
from activities.io.output_store import (
    OutputStore,
    OutputStoreError,
    StoredFile,
    check_name,
    content_disposition,
    sha256_of,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

MANIFEST_NAME = "manifest.json"
# SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# Files above this go up in parts (S3's minimum part is 5 MiB); a video of a few GB then retries
# one 8 MiB part at a time, not the whole file.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
# Parallel part uploads per file: enough to fill a link, few enough for a GPU host's other work.
UPLOAD_CONCURRENCY = 4
_READ_CHUNK = 1 << 20


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _not_found(err: ClientError) -> bool:
    return _code(err) in {"NoSuchKey", "404", "NotFound"} or _status(err) == 404


def _precondition_failed(err: ClientError) -> bool:
    return _code(err) == "PreconditionFailed" or _status(err) == 412


class _CommitRace(Exception):
    """Another attempt changed the manifest between our read and our write."""


class S3OutputStore(OutputStore):
    """Outputs, inputs and previews as objects in `bucket` under `prefix`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        staging_root: Path,
        client: Any | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        super().__init__(staging_root)
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # One client per process: botocore clients are thread-safe, and creating one resolves
        # the credential chain (profile files, instance metadata) once.
        try:
            self._client = client if client is not None else _s3_client()
        except BotoCoreError as err:  # e.g. a profile that does not exist
            raise OutputStoreError(
                f"cannot set up the S3 client for {self.location}: {err}"
            ) from err
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(MULTIPART_CHUNK, 5 * 1024 * 1024),
            max_concurrency=UPLOAD_CONCURRENCY,
        )

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, store_key: str) -> str:
        """The object key of a store key (store keys are relative to the prefix)."""
        return self.prefix + store_key

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (BotoCoreError, ClientError) as err:
            raise OutputStoreError(f"{what} in {self.location}: {err}") from err

    # ---- commit

    async def commit(
        self, task_id: str, staged: list[Path], *, run_id: str = "", attempt: int = 1
    ) -> list[StoredFile]:
        check_name("task id", task_id)
        for path in staged:
            check_name("filename", path.name)
        return await self._call(
            f"cannot store the outputs of {task_id}",
            lambda: self._commit(task_id, staged, run_id, attempt),
        )

    def _commit(
        self, task_id: str, staged: list[Path], run_id: str, attempt: int
    ) -> list[StoredFile]:
        # Unique per attempt even if two workers ever ran the same attempt: a zombie worker (cut
        # off, presumed dead, then back) never writes into the prefix of the attempt that won.
        attempt_id = f"{run_id or 'run'}.{attempt}.{uuid.uuid4().hex[:8]}"
        attempt_prefix = f"outputs/{task_id}/{attempt_id}/"
        existing, _ = self._read_manifest(task_id)
        if existing is not None and existing.get("run_id") == run_id:
            return _stored_files(existing)  # an earlier attempt of this run committed: no upload
        files = [self._upload(path, attempt_prefix + path.name) for path in staged]
        manifest = {
            "task_id": task_id,
            "run_id": run_id,
            "attempt": attempt,
            "attempt_id": attempt_id,
            "committed_at": datetime.now(UTC).isoformat(),
            "files": [
                {
                    "filename": f.filename,
                    "key": f.store_key,
                    "size": f.size,
                    "sha256": f.sha256,
                    "content_type": f.content_type,
                }
                for f in files
            ],
        }
        committed = self._write_manifest(task_id, run_id, manifest)
        if committed["attempt_id"] != attempt_id:
            # An earlier attempt of this run committed first (its worker died before Temporal
            # heard of it, or was cut off and came back): its files are the task's.
            logger.info(
                "outputs of %s were committed by attempt %s; dropping attempt %s's",
                task_id,
                committed["attempt_id"],
                attempt_id,
            )
            self._delete_under(attempt_prefix)
            return _stored_files(committed)
        self._sweep(task_id, keep=attempt_prefix)
        return files

    def _upload(self, path: Path, store_key: str) -> StoredFile:
        digest = sha256_of(path)
        size = path.stat().st_size
        content_type = content_type_for(path.name)
        # upload_file streams from disk and goes up in parts above the threshold.
        self._client.upload_file(
            str(path),
            self.bucket,
            self.key(store_key),
            ExtraArgs={
                "ContentType": content_type,
                "ContentDisposition": content_disposition(path.name),
                "Metadata": {"sha256": digest},
            },
            Config=self._transfer,
        )
        return StoredFile(path.name, size, digest, content_type, store_key=store_key)

    def _write_manifest(
        self, task_id: str, run_id: str, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        """Write the manifest unless one of this run exists; returns the manifest in force."""
        key = self.key(f"outputs/{task_id}/{MANIFEST_NAME}")
        body = json.dumps(manifest, indent=1).encode()
        for _ in range(3):
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
                return manifest
            except ClientError as err:
                if not _precondition_failed(err):
                    raise
            existing, etag = self._read_manifest(task_id)
            if existing is None:
                continue  # deleted in between: try again
            if existing.get("run_id") == run_id:
                return existing
            # A manifest left by an earlier run of the same task id: replace it, unless someone
            # else replaces it first.
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    IfMatch=etag,
                )
                return manifest
            except ClientError as err:
                if not _precondition_failed(err):
                    raise
        raise OutputStoreError(f"the outputs of {task_id} changed under three commits in a row")

    def _read_manifest(self, task_id: str) -> tuple[dict[str, Any] | None, str]:
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self.key(f"outputs/{task_id}/{MANIFEST_NAME}")
            )
        except ClientError as err:
            if _not_found(err):
                return None, ""
            raise
        with response["Body"] as body:
            data = body.read()
        return json.loads(data), str(response.get("ETag", ""))

    def _sweep(self, task_id: str, *, keep: str) -> None:
        """Remove what other attempts of the task left (files of a worker that died before its
        commit, an earlier run's outputs, unfinished multipart uploads). Best effort: the commit
        stands either way."""
        task_prefix = f"outputs/{task_id}/"
        manifest = task_prefix + MANIFEST_NAME
        try:
            self._delete_under(task_prefix, keep=lambda k: k == manifest or k.startswith(keep))
            uploads = self._client.list_multipart_uploads(
                Bucket=self.bucket, Prefix=self.key(task_prefix)
            )
            for upload in uploads.get("Uploads", []):
                if not upload["Key"].startswith(self.key(keep)):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
        except (BotoCoreError, ClientError) as err:
            logger.warning("could not remove other attempts' files of %s: %s", task_id, err)

    def _delete_under(
        self, store_prefix: str, keep: Callable[[str], bool] = lambda _: False
    ) -> None:
        paginator = self._client.get_paginator("list_objects_v2")
        doomed: list[dict[str, str]] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(store_prefix)):
            for item in page.get("Contents", []):
                if not keep(item["Key"][len(self.prefix) :]):
                    doomed.append({"Key": item["Key"]})
        for start in range(0, len(doomed), 1000):  # DeleteObjects takes 1000 keys at most
            self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )

    # ---- downloads

    async def committed(self, task_id: str) -> list[StoredFile]:
        """The task's outputs as its manifest names them (nothing before the commit)."""
        check_name("task id", task_id)
        manifest, _ = await self._call(
            f"cannot read the outputs of {task_id}", lambda: self._read_manifest(task_id)
        )
        return _stored_files(manifest) if manifest is not None else []

    async def output_names(self, task_id: str) -> list[str]:
        return sorted(f.filename for f in await self.committed(task_id))

    async def find_output(self, task_id: str, filename: str) -> StoredFile | None:
        check_name("filename", filename)
        return next((f for f in await self.committed(task_id) if f.filename == filename), None)

    def presigned_url(self, store_key: str, expires_in: int) -> str:
        # Computed locally from the credentials: no request to the store.
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(store_key)},
            ExpiresIn=max(1, min(int(expires_in), MAX_PRESIGN_SECONDS)),
        )
        return url

    async def stream(self, stored: StoredFile) -> AsyncIterator[bytes]:
        assert stored.store_key is not None
        key = self.key(stored.store_key)
        response = await self._call(
            f"cannot read {stored.filename}",
            lambda: self._client.get_object(Bucket=self.bucket, Key=key),
        )
        body = response["Body"]
        try:
            while chunk := await self._call(
                f"cannot read {stored.filename}", lambda: body.read(_READ_CHUNK)
            ):
                yield chunk
        finally:
            body.close()

    # ---- image inputs

    async def write_input(self, data: bytes, extension: str) -> str:
        name = check_name("input file", f"{hashlib.sha256(data).hexdigest()}.{extension}")

        def put() -> None:
            try:
                # Content-addressed: the same bytes may already be there from an earlier request.
                self._client.put_object(
                    Bucket=self.bucket, Key=self.key(f"inputs/{name}"), Body=data, IfNoneMatch="*"
                )
            except ClientError as err:
                if not _precondition_failed(err):
                    raise

        await self._call(f"cannot store the input {name}", put)
        return name

    async def read_input(self, input_file: str) -> bytes:
        key = self.key(f"inputs/{check_name('input file', input_file)}")

        def get() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            with response["Body"] as body:
                data: bytes = body.read()
            return data

        return await self._call(f"cannot read the input {input_file}", get)

    # ---- previews

    def _preview_key(self, task_id: str) -> str:
        return self.key(f"previews/{check_name('task id', task_id)}")

    async def write_preview(self, task_id: str, data: bytes) -> None:
        key = self._preview_key(task_id)
        await self._call(
            f"cannot store the preview of {task_id}",
            lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data),
        )

    async def read_preview(self, task_id: str) -> bytes | None:
        key = self._preview_key(task_id)

        def get() -> bytes | None:
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as err:
                if _not_found(err):
                    return None
                raise
            with response["Body"] as body:
                data: bytes = body.read()
            return data

        return await self._call(f"cannot read the preview of {task_id}", get)

    async def discard_preview(self, task_id: str) -> None:
        try:
            key = self._preview_key(task_id)
            await self._call(
                f"cannot remove the preview of {task_id}",
                lambda: self._client.delete_object(Bucket=self.bucket, Key=key),
            )
        except OutputStoreError as err:
            logger.warning("%s", err)


def _stored_files(manifest: dict[str, Any]) -> list[StoredFile]:
    return [
        StoredFile(
            filename=f["filename"],
            size=int(f["size"]),
            sha256=f.get("sha256"),
            content_type=f.get("content_type") or content_type_for(f["filename"]),
            store_key=f["key"],
        )
        for f in manifest.get("files", [])
    ]


def _s3_client() -> Any:
    """An S3 client configured the standard way. botocore reads the region from AWS_DEFAULT_REGION
    and the config file but not from AWS_REGION, the name the other AWS SDKs and most S3-compatible
    stores' guides use; honour that one too, below the others."""
    session = boto3.session.Session()
    region = session.region_name or os.environ.get("AWS_REGION") or None
    return session.client("s3", region_name=region)
