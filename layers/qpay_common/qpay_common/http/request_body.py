"""Request bodies as the contract accepts them: UTF-8 JSON, within limits that every part after
the parser (pydantic, DynamoDB, EventBridge, QPay) can hold.

Checked before pydantic sees the body, so hostile input is a 400 or 415 and never a crash deep in
a parser: the standard library raises ValueError on integers over 4300 digits, RecursionError
on deep nesting, UnicodeDecodeError on bytes that are not UTF-8, and gladly returns lone
surrogates, NaN and duplicate keys that break whatever encodes them next.
"""

import base64
import binascii
import json
import math
import re
from typing import Any

MAX_JSON_DEPTH = 32
# Longer literals carry no meaning for this API (amounts are at most 9 digits) and only cost CPU.
MAX_NUMBER_CHARS = 32

_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class UnsupportedMediaType(Exception):
    """The body is not declared as UTF-8 JSON."""


class BodyRejected(Exception):
    """The body is not JSON this API can accept. `kind` names the rule; neither it nor the
    message echoes the input."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def check_json_media_type(content_type: str | None) -> None:
    """Accept `application/json` (or `+json`), case-insensitively, with at most a UTF-8 charset.
    A missing Content-Type is read as JSON, as API Gateway clients often omit it."""
    if content_type is None or not content_type.strip():
        return
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    media_type = media_type.lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType(media_type)
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(media_type)


def body_text(body: str | None, is_base64_encoded: bool) -> str | None:
    """The body as text: base64 undone, strictly UTF-8."""
    if not body:
        return None
    if not is_base64_encoded:
        # API Gateway hands over text bodies as JSON strings, which may still hold lone surrogates.
        _check_encodable(body)
        return body
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BodyRejected("body_encoding", "request body is not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRejected("body_encoding", "request body is not valid UTF-8") from None


def parse_json(text: str) -> Any:
    """`text` as JSON, or BodyRejected."""
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise BodyRejected("json_too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        document = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError:
        raise BodyRejected("json_invalid", "request body is not valid JSON") from None
    _check_strings(document)
    return document


def _nesting_depth(text: str) -> int:
    # Strings are removed first so brackets inside them do not count; an unterminated string
    # can only over-count, which rejects a document that is invalid anyway.
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING_LITERAL.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise BodyRejected("number_too_long", f"a JSON number is longer than {MAX_NUMBER_CHARS} characters")
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise BodyRejected("number_too_long", f"a JSON number is longer than {MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise BodyRejected("number_out_of_range", "a JSON number is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise BodyRejected("json_invalid", "request body is not valid JSON (NaN and Infinity are not JSON)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise BodyRejected("duplicate_key", "a JSON object has the same key twice")
    return document


def _check_strings(value: Any) -> None:
    # Depth is bounded by MAX_JSON_DEPTH, so recursion is too.
    if isinstance(value, str):
        _check_encodable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def _check_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyRejected("body_encoding", "request body holds a lone UTF-16 surrogate") from None
