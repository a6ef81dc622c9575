"""Refuses JSON request bodies with text or numbers that no field can take, before routes read them.

That is: bytes that are not UTF-8; NaN, Infinity, numbers beyond a float's range and integers too
long to read; strings (values or keys) with a lone UTF-16 surrogate or a control character other
than tab and newlines. Temporal cannot carry them (payloads and ids are UTF-8 protobuf strings,
numbers finite JSON), and an error answer that echoes them would break, so they are refused here,
once for every route, with a 422 naming the field.
"""

from __future__ import annotations

import email.message
import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Loc = list[str | int]

# Control characters come from "\u0000"-style escapes (raw ones are already invalid JSON); tab,
# line feed and carriage return are ordinary text. Lone surrogates come from "\ud800" escapes.
CONTROL_CHARACTERS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
# The rule as a JSON Schema pattern, which OpenAPI shows on each free-text field (api.openapi);
# JSON Schema cannot name lone surrogates, which no JSON generator writes anyway.
TEXT_PATTERN = f"^[^{CONTROL_CHARACTERS}]*$"
_BAD_CHARACTER = re.compile(f"[\ud800-\udfff{CONTROL_CHARACTERS}]")


class BodyTextInvalid(Exception):
    def __init__(self, loc: Loc, message: str, error_type: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.error_type = error_type
        self.status_code = status_code


class BodyTextCheck:
    """ASGI middleware: checks the text of JSON bodies (the body arrives whole: BodySizeLimit
    runs first and caps it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            check_json_text(body)
        except BodyTextInvalid as err:
            await _refuse(send, err)
            return
        await self.app(scope, _replay(messages, receive), send)


def check_json_text(body: bytes) -> None:
    """Raises BodyTextInvalid for the first field whose text or number no field can take; a body
    that is not JSON at all is left to the route (FastAPI's 422 json_invalid)."""
    if not body:
        return
    # The same encoding detection as json.loads(bytes), but without its 'surrogatepass', which
    # would let CESU-8 bytes through as lone surrogates.
    encoding = json.detect_encoding(body)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as err:
        raise BodyTextInvalid(
            ["body"],
            f"the body is not valid {encoding.upper()} text (byte {err.start}): JSON is UTF-8",
            "body_not_utf8",
            status_code=400,  # as FastAPI answers a body it cannot decode
        ) from err
    try:
        document = json.loads(text, parse_constant=_BadNumber, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError:
        return
    except RecursionError as err:
        raise BodyTextInvalid(
            ["body"], "the JSON is nested too deeply to read", "json_too_deep"
        ) from err
    _check_strings(document, ["body"])


class _BadNumber:
    """Stands in for a number that cannot be read, so the walk can name its field."""

    def __init__(self, text: str) -> None:
        self.text = text

    def message(self) -> str:
        shown = (
            self.text if len(self.text) <= 40 else f"{self.text[:20]}… ({len(self.text)} digits)"
        )
        if self.text in ("NaN", "Infinity", "-Infinity"):
            return f"{shown} is not a number JSON allows"
        return f"{shown} is beyond the numbers this API takes (a 64-bit float or 4300 digits)"


def _float(text: str) -> float | _BadNumber:
    value = float(text)
    return value if math.isfinite(value) else _BadNumber(text)


def _int(text: str) -> int | _BadNumber:
    try:
        return int(text)
    except ValueError:  # more digits than int() reads (sys.get_int_max_str_digits)
        return _BadNumber(text)


def _check_strings(node: Any, loc: Loc) -> None:
    stack: list[tuple[Any, Loc]] = [(node, loc)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, _BadNumber):
            raise BodyTextInvalid(where, value.message(), "json_number")
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, where, is_key=True)
                stack.append((item, [*where, key]))
        elif isinstance(value, list):
            stack.extend((item, [*where, index]) for index, item in enumerate(value))


def _check_text(text: str, loc: Loc, *, is_key: bool = False) -> None:
    bad = _BAD_CHARACTER.search(text)
    if bad is None:
        return
    char = bad.group()
    what = "the key" if is_key else "the text"
    where = [*loc, _printable(text)] if is_key else loc
    if "\ud800" <= char <= "\udfff":
        raise BodyTextInvalid(
            where,
            f"{what} has a lone UTF-16 surrogate (\\u{ord(char):04x}) at character {bad.start()}:"
            " text must be valid Unicode (a surrogate escape needs its pair)",
            "string_unicode",
        )
    raise BodyTextInvalid(
        where,
        f"{what} has the control character U+{ord(char):04X} at character {bad.start()}:"
        " only tab, line feed and carriage return are allowed",
        "string_control_character",
    )


def _printable(text: str) -> str:
    """A key as it can be shown in an answer: escapes for what UTF-8 cannot carry."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_json(scope: Scope) -> bool:
    """The bodies FastAPI parses as JSON: an application/json or application/*+json type."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            message = email.message.Message()
            message["content-type"] = value.decode("latin-1")
            subtype = message.get_content_subtype()
            return message.get_content_maintype() == "application" and (
                subtype == "json" or subtype.endswith("+json")
            )
    return False


async def _refuse(send: Send, err: BodyTextInvalid) -> None:
    content = json.dumps(
        {"detail": [{"loc": err.loc, "msg": err.message, "type": err.error_type}]},
        ensure_ascii=True,
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
