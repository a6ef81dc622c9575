"""Idempotent POST /generate: an `Idempotency-Key` maps to one deterministic task id.

The task id is "idem-<32 hex>", a SHA-256 of the key and the caller's scope (its API key), so
different keys (or the same key from different API key holders) never share a task, and a key
used with a different workflow still meets its first task and gets a 409 rather than a second
generation. The body's canonical JSON hash is kept in the workflow memo and compared on a repeat.
"""

from __future__ import annotations

import hashlib
import json

from api.errors import ApiError
from api.schemas import GenerateCreate, GenerateCreateOptions

IDEMPOTENT_TASK_PREFIX = "idem-"
MAX_KEY_LENGTH = 255


class InvalidIdempotencyKey(ApiError):
    status_code = 422
    error_type = "invalid_idempotency_key"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, loc=["header", "Idempotency-Key"])


class IdempotencyConflict(ApiError):
    status_code = 409
    error_type = "idempotency_conflict"

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"this Idempotency-Key was already used for task '{task_id}' with a different body "
            "(workflow_id, params or options); use a new key for a different request",
            loc=["header", "Idempotency-Key"],
        )
        self.task_id = task_id


def check_idempotency_key(key: str) -> None:
    if not key.strip():
        raise InvalidIdempotencyKey("must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"must be at most {MAX_KEY_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) > 126 for ch in key):
        raise InvalidIdempotencyKey("must be printable ASCII (e.g. a UUID)")


def idempotent_task_id(key: str, *, scope: str = "") -> str:
    digest = hashlib.sha256(f"{len(scope)}:{scope}\n{key}".encode()).hexdigest()
    return IDEMPOTENT_TASK_PREFIX + digest[:32]


def body_fingerprint(body: GenerateCreate) -> str:
    """SHA-256 of the request's canonical JSON: sorted keys, no spaces, options with defaults
    (no options and `{}` are the same request)."""
    options = (body.options or GenerateCreateOptions()).model_dump(mode="json")
    # The top-level callback_url (the original API's spelling) is the same option.
    options["callback_url"] = options.get("callback_url") or body.callback_url
    canonical = {"workflow_id": body.workflow_id, "params": body.params, "options": options}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()
