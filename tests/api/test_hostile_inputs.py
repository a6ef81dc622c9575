"""Hostile values in every field of every route: refused with a 4xx naming the field and the reason,
never a 5xx, and a refused request starts nothing in Temporal.

The fields come from the live OpenAPI document: each request body (every workflow's `params`
included) walked down to its leaves, the query, path and header parameters, and the API key
headers of the security schemes; a field added to the API is swept without editing this file.
Each gets the same classes of values: lone UTF-16 surrogates, NUL and other control characters,
over-long text, and wrong JSON types (text for a number, a number for text, true for an integer,
1.5 and 1.0 for an integer, NaN, 1e400, 5000 digits, arrays, objects, null).

A value the field's schema refuses, or text no field can hold, must be refused; a value the schema
allows may be accepted (what it starts is counted) or refused by a runtime check, naming the field.
The API runs with API keys on, against the session's dev server in a namespace of its own, so
that "nothing started" is a count of everything in it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import jsonschema
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus

from activities.io.output_store import LocalOutputStore
from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.generations.start import MAX_PARAMS_BYTES
from api.settings import Settings
from api.tasks.reader import GENERATION_WORKFLOW
from tests.support.temporal_namespaces import fresh_namespace

API_KEY = "hostile-key-0123456789"
KEYED = {"X-API-Key": API_KEY}
# Requests in flight at once: enough to keep the sweep short, few enough for a 2-core machine.
CONCURRENCY = 6
OVER_LONG = 100_000
# Query, path and header values travel in the request head, which uvicorn caps at 16 KiB.
OVER_LONG_IN_HEAD = 4_000
# Text no field can hold, whatever its schema says (api/body_text.py).
UNHOLDABLE_TEXT = re.compile("[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Values a body field gets: (label, value). Raw(...) is written into the JSON text as is.


@dataclass(frozen=True)
class Raw:
    """A JSON token json.dumps cannot write (NaN) or would write differently (1e400)."""

    text: str


BODY_VALUES: list[tuple[str, Any]] = [
    ("lone high surrogate", "\ud800"),
    ("lone low surrogate inside text", "a\udfffb"),
    ("NUL", "a\x00b"),
    ("escape control character", "a\x1bb"),
    ("DEL", "\x7f"),
    ("over-long text", "x" * OVER_LONG),
    ("text for a number", "1"),
    ("number for text", 1),
    ("negative number", -1),
    ("float", 1.5),
    ("whole float", 1.0),
    ("huge integer", 10**30),
    ("bool", True),
    ("NaN", Raw("NaN")),
    ("Infinity", Raw("-Infinity")),
    ("float overflow", Raw("1e400")),
    ("5000 digits", Raw("9" * 5000)),
    ("array", ["x"]),
    ("empty array", []),
    ("object", {"a": 1}),
    ("null", None),
]

# Values a query or path parameter gets, already percent-encoded as they go on the wire.
URL_VALUES: list[tuple[str, str]] = [
    ("lone surrogate (CESU-8 bytes)", "a%ED%A0%80b"),
    ("invalid UTF-8", "%FF%FE"),
    ("NUL", "a%00b"),
    ("escape control character", "a%1Bb"),
    ("DEL", "%7F"),
    ("over-long text", "x" * OVER_LONG_IN_HEAD),
    ("quote", "a%27b%22"),
    ("float", "1.5"),
    ("negative number", "-1"),
    ("bool", "true"),
    ("superscript digit", "%C2%B2"),
    ("5000 digits", "9" * 5000),
    ("empty", ""),
]

# Values a header gets, as bytes (latin-1 on the wire). Control characters and edge spaces are
# refused by the HTTP layer on both sides (h11), before any application code.
HEADER_VALUES: list[tuple[str, bytes]] = [
    ("lone surrogate (CESU-8 bytes)", b"a\xed\xa0\x80b"),
    ("invalid UTF-8", b"\xff\xfe"),
    ("over-long text", b"x" * OVER_LONG_IN_HEAD),
    ("empty", b""),
    ("inner spaces", b"a  b"),
    ("float", b"1.5"),
    ("negative number", b"-1"),
    ("superscript digit", b"1.1.\xb2"),
    ("5000 digits", b"9" * 5000),
    ("5000-digit event id", b"1.1." + b"9" * 5000),
]

# What a path parameter holds when another field is swept: something that exists.
EXISTING = {"task_id": "<task>", "schedule_id": "<schedule>", "workflow_id": "smoke_image"}
MISSING_FILE = "missing.png"


# Times no run of the sweep's schedules comes due at (an accepted unpause lets them run).
RARE_SPEC = {"cron": ["0 3 1 1 *"], "intervals": [{"every": "365d"}], "time_zone": "UTC"}
BASE_SCHEDULE_BODY: dict[str, Any] = {
    "workflow_id": "smoke_image",
    "params": {"width": 64},
    "options": {},
    "spec": RARE_SPEC,
    "policy": {"overlap": "skip"},
    "paused": True,
}
# A valid body per operation that takes one; each swept value replaces one field of it.
BODY_BASES: dict[str, Any] = {
    "POST /generate": {"workflow_id": "smoke_image", "params": {}},
    "POST /batches": {"workflow_id": "smoke_image", "items": [{}], "params": {}, "options": {}},
    "POST /schedules": BASE_SCHEDULE_BODY,
    "PATCH /schedules/{schedule_id}": {
        "spec": RARE_SPEC,
        "policy": {"overlap": "skip"},
        "options": {},
        "params": {},
    },
    "POST /schedules/{schedule_id}/pause": {},
    "POST /schedules/{schedule_id}/unpause": {},
    "POST /schedules/{schedule_id}/trigger": {},
}


# ---- the field list, from the OpenAPI document


@dataclass(frozen=True)
class Target:
    """One field of one operation to spoil."""

    method: str
    path: str
    where: str  # body | query | path | header | auth
    name: tuple[str | int, ...]  # the field's path in the body, or (parameter name,)
    schema: dict[str, Any]
    base: Any = None  # the valid body it is spoiled in

    @property
    def operation(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def loc(self) -> list[str | int]:
        return [self.where, *self.name]

    def __str__(self) -> str:
        return f"{self.operation} {self.where}:{'.'.join(map(str, self.name))}"


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def _alternatives(schema: dict[str, Any], document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    schema = _resolve(schema, document)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        for branch in branches:
            yield from _alternatives(branch, document)
    else:
        yield schema


def _fields(
    schema: dict[str, Any], document: dict[str, Any], at: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every field under `schema` (containers too) with its schema, depth first."""
    if at:
        yield at, schema
    for alternative in _alternatives(schema, document):
        for name, sub in alternative.get("properties", {}).items():
            yield from _fields(sub, document, (*at, name))
        if alternative.get("type") == "array" and isinstance(alternative.get("items"), dict):
            yield from _fields(alternative["items"], document, (*at, 0))


def _example(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A valid value for a required parameter: its default, else the simplest of its type."""
    schema = _resolve(schema, document)
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return "a red cube"


def _generate_bases(document: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(valid body, schema) per variant of POST /generate: one per workflow, and GenerateCreate,
    whose fields (callback_url) the per-workflow variants do not list."""
    operation = document["paths"]["/generate"]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    variants = []
    for ref in body_schema.get("oneOf", [body_schema]):
        variant = _resolve(ref, document)
        workflow = variant["properties"]["workflow_id"]["const"]
        params_schema = _resolve(variant["properties"]["params"], document)
        params = {
            name: _example(params_schema["properties"][name], document)
            for name in params_schema.get("required", [])
        }
        variants.append(({"workflow_id": workflow, "params": params}, ref))
    plain = {"$ref": "#/components/schemas/GenerateCreate"}
    variants.append(({"workflow_id": "smoke_image", "params": {}}, plain))
    return variants


def targets(document: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    schemes = document["components"].get("securitySchemes", {})
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            method = method.upper()
            for parameter in operation.get("parameters", []):
                found.append(
                    Target(method, path, parameter["in"], (parameter["name"],), parameter["schema"])
                )
            for requirement in operation.get("security", []):
                for scheme_name in requirement:
                    scheme = schemes[scheme_name]
                    header = scheme.get("name", "Authorization")
                    found.append(Target(method, path, "auth", (header,), {"type": "string"}))
            body = operation.get("requestBody")
            if body is None:
                continue
            schema = body["content"]["application/json"]["schema"]
            label = f"{method} {path}"
            if label == "POST /generate":
                variants = _generate_bases(document)
            else:
                assert label in BODY_BASES, f"{label} takes a body: give it one in BODY_BASES"
                variants = [(BODY_BASES[label], schema)]
            for base, variant_schema in variants:
                for name, sub in _fields(variant_schema, document):
                    found.append(Target(method, path, "body", name, sub, base))
    return found


# ---- what must be refused


def _validator(schema: dict[str, Any], document: dict[str, Any]) -> jsonschema.Validator:
    # House rule (as for manifest parameters): 1.0 is not an integer, though JSON Schema says so.
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)
    return cls({**schema, "components": document["components"]})  # type: ignore[no-any-return]


def _holds_unholdable(value: Any) -> bool:
    if isinstance(value, Raw):
        return True
    if isinstance(value, str):
        return bool(UNHOLDABLE_TEXT.search(value))
    if isinstance(value, dict):
        return any(_holds_unholdable(k) or _holds_unholdable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_unholdable(v) for v in value)
    return False


def must_refuse(target: Target, value: Any, document: dict[str, Any]) -> bool:
    """The value breaks the field's schema, or is text / a number that no field can take."""
    if target.where == "auth":
        return True  # only the configured key is a key
    if target.where == "body":
        if _holds_unholdable(value):
            return True
        return not _validator(target.schema, document).is_valid(value)
    if target.where == "path":
        return True  # no task, schedule, workflow or file has such a name
    if target.where == "header":
        return False  # free text by schema; runtime checks decide
    text = unquote(value, errors="replace")
    if not text:
        return False  # an empty query value counts as absent
    schema_types = {alt.get("type") for alt in _alternatives(target.schema, document)}
    if "integer" in schema_types and re.fullmatch(r"-?[0-9]+", text):
        candidate: Any = int(text) if len(text) < 4000 else text
    else:
        candidate = text
    return not _validator(target.schema, document).is_valid(candidate)


# ---- sending


def _spoiled(base: Any, name: tuple[str | int, ...], value: Any) -> Any:
    """`base` with the field at `name` set to `value` (containers on the way made if missing)."""
    body = copy.deepcopy(base)
    node = body
    for step, following in zip(name, name[1:], strict=False):
        fresh: Any = {} if isinstance(following, str) else []
        if isinstance(step, int):  # a list: the sweep always aims at its first item
            if not node:
                node.append(fresh)
            node = node[0]
        else:
            if not isinstance(node.get(step), dict | list):
                node[step] = fresh
            node = node[step]
    if isinstance(name[-1], int):
        node[:] = [value]
    else:
        node[name[-1]] = value
    return body


def _json_text(body: Any) -> bytes:
    raws: list[str] = []

    def placeholder(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"__raw_{len(raws) - 1}__"
        if isinstance(value, dict):
            return {k: placeholder(v) for k, v in value.items()}
        if isinstance(value, list):
            return [placeholder(v) for v in value]
        return value

    text = json.dumps(placeholder(body), ensure_ascii=True)
    for index, raw in enumerate(raws):
        text = text.replace(f'"__raw_{index}__"', raw)
    return text.encode()


@dataclass
class Outcome:
    target: Target
    label: str
    status: int
    answer: Any
    refuse: bool

    def __str__(self) -> str:
        shown = json.dumps(self.answer)[:300]
        return f"{self.target} <- {self.label}: {self.status} {shown}"


@dataclass
class Sweep:
    outcomes: list[Outcome] = field(default_factory=list)
    started_tasks: set[str] = field(default_factory=set)
    created_schedules: set[str] = field(default_factory=set)
    started_batches: set[str] = field(default_factory=set)
    triggers: int = 0
    targets: list[Target] = field(default_factory=list)


async def _send(
    http: httpx.AsyncClient,
    target: Target,
    ids: dict[str, str],
    value: Any,
) -> httpx.Response:
    path_values = {**ids, "workflow_id": "smoke_image", "filename": MISSING_FILE}
    headers: list[tuple[bytes, bytes]] = [(b"X-API-Key", API_KEY.encode())]
    if target.path.endswith("/outputs/{filename}") and target.where == "query":
        headers = []  # the signature is checked only without a key
    query = ""
    body: bytes | None = None
    if target.where == "path":
        path_values[str(target.name[0])] = value
    elif target.where == "query":
        query = f"?{target.name[0]}={value}"
    elif target.where == "header":
        headers.append((str(target.name[0]).encode(), value))
    elif target.where == "auth":
        header = str(target.name[0])
        prefix = b"Bearer " if header.lower() == "authorization" else b""
        headers = [(header.encode(), (prefix + value).strip())]  # h11 sends no edge spaces
    if target.where == "body":
        body = _json_text(_spoiled(target.base, target.name, value))
    elif target.operation in BODY_BASES:
        body = _json_text(BODY_BASES[target.operation])
    if body is not None:
        headers.append((b"Content-Type", b"application/json"))
    url = target.path.format(**path_values) + query
    if target.path.endswith("/events"):
        # A finished task's stream ends after its final event: read it whole.
        async with http.stream(target.method, url, headers=headers) as response:
            await response.aread()
            return response
    return await http.request(target.method, url, headers=headers, content=body)


def _values_for(target: Target) -> list[tuple[str, Any]]:
    if target.where == "body":
        return BODY_VALUES
    if target.where in ("query", "path"):
        values = URL_VALUES
        if target.where == "path":  # an empty path segment is another route
            values = [(label, v) for label, v in values if v]
        return values
    return HEADER_VALUES


async def run_sweep(
    http: httpx.AsyncClient, document: dict[str, Any], ids: dict[str, str]
) -> Sweep:
    sweep = Sweep(targets=targets(document))
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(target: Target, label: str, value: Any) -> None:
        async with limit:
            response = await _send(http, target, ids, value)
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = response.text
        refuse = must_refuse(target, value, document)
        sweep.outcomes.append(Outcome(target, label, response.status_code, answer, refuse))
        if response.status_code == 202 and target.path == "/generate":
            sweep.started_tasks.add(answer["task_id"])
        if response.status_code == 202 and target.path == "/batches":
            sweep.started_batches.add(answer["batch_id"])
        if response.status_code == 201 and target.path == "/schedules":
            sweep.created_schedules.add(answer["schedule_id"])
        if response.status_code == 202 and target.path.endswith("/trigger"):
            sweep.triggers += 1

    await asyncio.gather(
        *(
            one(target, label, value)
            for target in sweep.targets
            for label, value in _values_for(target)
        )
    )
    return sweep


# ---- fixtures


@dataclass
class Stage:
    http: httpx.AsyncClient
    client: Client
    document: dict[str, Any]
    ids: dict[str, str]
    base_tasks: set[str]
    sweep: Sweep


@pytest_asyncio.fixture(scope="module")
async def stage(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stage]:
    client = await fresh_namespace(temporal_client, "hostile")
    data_dir: Path = tmp_path_factory.mktemp("hostile-data")
    app = create_app(Settings(data_dir=data_dir, api_keys=(API_KEY,)), temporal_client=client)
    try:
        async with (
            serve_in_background(app) as url,
            httpx.AsyncClient(base_url=url, timeout=60, headers=KEYED) as http,
        ):
            # A finished task (no workers here: terminated) and a paused schedule to aim at.
            started = await http.post("/generate", json={"workflow_id": "smoke_image"})
            task_id = started.json()["task_id"]
            await client.get_workflow_handle(task_id).terminate(reason="hostile input sweep")
            # One saved output, as a GPU worker leaves it, so that a file name is what is wrong.
            output = LocalOutputStore(data_dir).path_for(task_id, "image.png")
            output.parent.mkdir(parents=True)
            output.write_bytes(b"\x89PNG\r\n\x1a\n")
            created = await http.post("/schedules", json=BASE_SCHEDULE_BODY)
            assert created.status_code == 201, created.text
            batch = await http.post(
                "/batches", json={"workflow_id": "smoke_image", "items": [{"width": 16}]}
            )
            assert batch.status_code == 202, batch.text
            ids = {
                "task_id": task_id,
                "schedule_id": created.json()["schedule_id"],
                "batch_id": batch.json()["batch_id"],
            }
            document = (await http.get("/openapi.json")).json()
            # Without default headers: each swept request carries exactly the ones it names.
            async with httpx.AsyncClient(base_url=url, timeout=60) as bare:
                sweep = await run_sweep(bare, document, ids)
            yield Stage(http, client, document, ids, {task_id}, sweep)
    finally:
        async for listed in await client.list_schedules():
            await client.get_schedule_handle(listed.id).delete()
        async for execution in client.list_workflows():
            if execution.status == WorkflowExecutionStatus.RUNNING:
                await client.get_workflow_handle(execution.id).terminate(reason="test finished")


# ---- the sweep's findings


def _names_the_field(outcome: Outcome) -> bool:
    """The refusal names the swept field (or, for a value its schema allows, some field) and
    says why."""
    target = outcome.target
    detail = outcome.answer.get("detail") if isinstance(outcome.answer, dict) else None
    if outcome.status == 401:
        # The 401 of api.deps is one sentence naming both key headers.
        return isinstance(detail, str) and "X-API-Key" in detail and "Authorization" in detail
    if not isinstance(detail, list) or not detail:
        return False
    want = [str(part).lower() for part in target.loc] if outcome.refuse else []
    for entry in detail:
        loc = [str(part).lower() for part in entry.get("loc", [])]
        if loc and loc[: len(want)] == want and isinstance(entry.get("msg"), str) and entry["msg"]:
            return True
    return False


def test_the_sweep_reaches_every_operation_and_field(stage: Stage) -> None:
    swept = {target.operation for target in stage.sweep.targets}
    every = {
        f"{method.upper()} {path}"
        for path, operations in stage.document["paths"].items()
        for method, operation in operations.items()
        if operation.get("parameters") or operation.get("requestBody")
    }
    assert every <= swept
    names = {str(target) for target in stage.sweep.targets}
    for expected in (
        "POST /generate body:workflow_id",
        "POST /generate body:options.worker",
        "POST /generate body:options.priority",
        "POST /generate body:callback_url",
        "POST /generate body:params.prompt",
        "POST /generate header:idempotency-key",
        "POST /generate auth:Authorization",
        "POST /generate auth:X-API-Key",
        "GET /tasks query:page_size",
        "POST /tasks/{task_id}/cancel query:reason",
        "GET /tasks/{task_id}/outputs/{filename} path:filename",
        "GET /tasks/{task_id}/events header:last-event-id",
        "GET /workflows/{workflow_id} path:workflow_id",
        "POST /schedules body:spec.intervals.0.every",
        "PATCH /schedules/{schedule_id} body:policy.catchup_window",
        "POST /schedules/{schedule_id}/trigger body:note",
    ):
        assert expected in names


def test_no_hostile_value_gets_a_5xx(stage: Stage) -> None:
    failures = [str(o) for o in stage.sweep.outcomes if o.status >= 500]
    assert not failures, "\n".join(failures)


def test_values_no_field_can_take_are_refused(stage: Stage) -> None:
    failures = [str(o) for o in stage.sweep.outcomes if o.refuse and not 400 <= o.status < 500]
    assert not failures, "\n".join(failures)


def test_every_refusal_names_the_field_and_the_reason(stage: Stage) -> None:
    failures = [
        str(o) for o in stage.sweep.outcomes if 400 <= o.status < 500 and not _names_the_field(o)
    ]
    assert not failures, "\n".join(failures)


async def test_refused_requests_start_no_workflow_and_no_schedule(stage: Stage) -> None:
    client = stage.client
    schedules = {stage.ids["schedule_id"], *stage.sweep.created_schedules}
    # Each accepted trigger starts a run or is skipped by the overlap policy, a moment later.
    base = client.get_schedule_handle(stage.ids["schedule_id"])
    async with asyncio.timeout(30):
        while True:
            info = (await base.describe()).info
            if info.num_actions + info.num_actions_skipped_overlap >= stage.sweep.triggers:
                break
            await asyncio.sleep(0.2)
    runs: set[str] = set()
    for schedule_id in schedules:
        info = (await client.get_schedule_handle(schedule_id).describe()).info
        assert info.num_actions <= len(info.recent_actions)
        runs |= {
            action.action.workflow_id  # type: ignore[attr-defined]
            for action in info.recent_actions
        }
    expected_tasks = stage.base_tasks | stage.sweep.started_tasks | runs
    # An accepted batch starts its items as tasks "<batch_id>-<index>".
    batches = {stage.ids["batch_id"], *stage.sweep.started_batches}

    def outside_batches(task_ids: set[str]) -> set[str]:
        return {t for t in task_ids if not any(t.startswith(f"{b}-") for b in batches)}

    query = f"WorkflowType = '{GENERATION_WORKFLOW}'"
    # Visibility is written after the start: wait until every accepted task shows, then compare.
    async with asyncio.timeout(30):
        while True:
            listed = {execution.id async for execution in client.list_workflows(query)}
            listed_schedules = {s.id async for s in await client.list_schedules()}
            if expected_tasks <= listed and schedules <= listed_schedules:
                break
            await asyncio.sleep(0.2)
    assert outside_batches(listed) == expected_tasks
    assert listed_schedules == schedules


# ---- the holes the first sweep found, and Temporal's own limits


async def test_lone_surrogate_in_workflow_id_is_a_422_and_the_connection_stays(
    stage: Stage,
) -> None:
    body = b'{"workflow_id": "\\ud800", "params": {}}'
    response = await stage.http.post(
        "/generate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "workflow_id"]
    assert "surrogate" in entry["msg"]
    assert (await stage.http.get("/health")).status_code == 200


async def test_surrogate_bytes_and_invalid_utf8_are_refused_as_not_utf8(stage: Stage) -> None:
    for raw in (b"\xed\xa0\x80", b"\xff"):
        body = b'{"workflow_id": "smoke' + raw + b'", "params": {}}'
        response = await stage.http.post(
            "/generate", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        (entry,) = response.json()["detail"]
        assert entry["loc"] == ["body"] and entry["type"] == "body_not_utf8"


async def test_json_nested_too_deeply_is_a_422(stage: Stage) -> None:
    body = b'{"workflow_id": "smoke_image", "params": {"width": ' + b"[" * 100_000 + b"}"
    response = await stage.http.post(
        "/generate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_too_deep"


async def test_worker_name_beyond_temporal_task_queue_limit_is_a_422(stage: Stage) -> None:
    body = {"workflow_id": "smoke_image", "options": {"worker": "w" * 100_000}}
    response = await stage.http.post("/generate", json=body)
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "options", "worker"]
    assert len(entry["input"]) < 300  # named and measured, not echoed whole


async def test_longest_allowed_worker_name_is_a_queue_temporal_takes(stage: Stage) -> None:
    body = {"workflow_id": "smoke_image", "options": {"worker": "w" * 200}}
    response = await stage.http.post("/generate", json=body)
    assert response.status_code == 422  # Temporal answered: nobody polls that queue
    assert response.json()["detail"][0]["type"] == "unknown_worker"


@pytest.mark.parametrize("priority", ["1", True, 1.0])
async def test_priority_is_a_json_integer(stage: Stage, priority: Any) -> None:
    body = {"workflow_id": "smoke_image", "options": {"priority": priority}}
    response = await stage.http.post("/generate", json=body)
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "options", "priority"]


async def test_longest_schedule_id_and_worker_make_ids_temporal_takes(stage: Stage) -> None:
    """Temporal refuses workflow ids and task queue names over 1000 bytes; a schedule's runs are
    named "<schedule id>-<time>", and its internal workflow "temporal-sys-scheduler:<id>"."""
    schedule_id = "s" * 200
    body = {
        **BASE_SCHEDULE_BODY,
        "schedule_id": schedule_id,
        "options": {"worker": "w" * 200},
    }
    response = await stage.http.post("/schedules", json=body)
    assert response.status_code == 201, response.text
    await stage.http.delete(f"/schedules/{schedule_id}")
    too_long = await stage.http.post("/schedules", json={**body, "schedule_id": "s" * 201})
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["body", "schedule_id"]


@pytest.mark.parametrize("method, path", [("POST", "/schedules"), ("PATCH", "/schedules/{id}")])
async def test_schedule_params_have_the_size_limit_of_a_generation(
    stage: Stage, method: str, path: str
) -> None:
    """A schedule carries its params in its action and in each run's input and memo, which
    Temporal caps (2 MiB a blob); the limit of POST /generate keeps them well below."""
    params = {"pad": "x" * (MAX_PARAMS_BYTES + 1)}
    body = {**BASE_SCHEDULE_BODY, "params": params} if method == "POST" else {"params": params}
    url = path.format(id=stage.ids["schedule_id"])
    response = await stage.http.request(method, url, json=body)
    assert response.status_code == 413
    assert response.json()["detail"][0]["loc"] == ["body", "params"]


async def test_times_are_text_not_unix_numbers(stage: Stage) -> None:
    body = {**BASE_SCHEDULE_BODY, "spec": {"cron": ["0 3 * * *"], "start_at": 1_700_000_000}}
    response = await stage.http.post("/schedules", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "spec", "start_at"]


@pytest.mark.parametrize("last_event_id", [b"1.1." + b"9" * 5000, b"1.1.\xb2"])
async def test_last_event_id_that_is_no_id_of_ours_restarts_the_stream(
    stage: Stage, last_event_id: bytes
) -> None:
    url = f"/tasks/{stage.ids['task_id']}/events"
    headers = [(b"X-API-Key", API_KEY.encode()), (b"Last-Event-ID", last_event_id)]
    async with stage.http.stream("GET", url, headers=headers) as response:
        text = (await response.aread()).decode()
    assert response.status_code == 200
    assert "event: status" in text and '"status":"FAILURE"' in text
