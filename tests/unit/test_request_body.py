"""Request bodies are read as the contract says (UTF-8 JSON within limits) before pydantic sees
them; anything else is refused with a named rule, never an exception from a parser."""

import base64

import pytest

from qpay_common.http.request_body import (
    MAX_JSON_DEPTH,
    BodyRejected,
    UnsupportedMediaType,
    body_text,
    check_json_media_type,
    parse_json,
)

pytestmark = pytest.mark.unit

HOSTILE_TEXT = {
    "5,000-digit integer": ('{"amount": ' + "9" * 5000 + "}", "number_too_long"),
    "33-character float": ('{"x": 1.' + "1" * 31 + "}", "number_too_long"),
    "float overflowing to infinity": ('{"x": 1e999}', "number_out_of_range"),
    "NaN literal": ('{"x": NaN}', "json_invalid"),
    "Infinity literal": ('{"x": -Infinity}', "json_invalid"),
    "500 levels of objects": ('{"a":' * 500 + "1" + "}" * 500, "json_too_deep"),
    "100,000 levels of arrays": ("[" * 100_000 + "]" * 100_000, "json_too_deep"),
    "duplicate keys": ('{"amount": 1, "amount": 100}', "duplicate_key"),
    "lone surrogate in a value": ('{"description": "\\ud800"}', "body_encoding"),
    "lone surrogate in a key": ('{"\\udfff": 1}', "body_encoding"),
    "truncated": ('{"amount": 100', "json_invalid"),
    "byte order mark": ('\ufeff{"amount": 100}', "json_invalid"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TEXT))
def test_hostile_json_is_refused_with_its_rule(case):
    text, kind = HOSTILE_TEXT[case]

    with pytest.raises(BodyRejected) as refused:
        parse_json(text)

    assert refused.value.kind == kind
    # The message names the rule, never the input.
    assert text[:20] not in refused.value.message


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = '{"note": "' + "[{" * 1000 + '", "escaped": "\\"[[[["}'
    assert parse_json(text) == {"note": "[{" * 1000, "escaped": '"[[[['}


def test_json_at_the_depth_limit_parses():
    text = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(text) is not None


def test_ordinary_json_parses_unchanged():
    text = '{"amount": 15000, "metadata": {"price": -12.5, "ok": true, "none": null, "name": "Цай"}}'
    assert parse_json(text) == {
        "amount": 15000,
        "metadata": {"price": -12.5, "ok": True, "none": None, "name": "Цай"},
    }


@pytest.mark.parametrize(
    "raw", [b'{"description": "\xff"}', "Цай".encode("cp1251"), b"\xc3\x28", b"\xed\xa0\x80"]
)
def test_base64_bodies_must_be_utf8(raw):
    with pytest.raises(BodyRejected) as refused:
        body_text(base64.b64encode(raw).decode(), True)
    assert refused.value.kind == "body_encoding"


def test_a_body_flagged_base64_that_is_not_is_refused():
    with pytest.raises(BodyRejected):
        body_text("not base64!", True)


def test_utf8_bodies_decode_and_empty_bodies_are_none():
    assert body_text(base64.b64encode("Цай".encode()).decode(), True) == "Цай"
    assert body_text("Цай", False) == "Цай"
    assert body_text("", False) is None
    assert body_text(None, True) is None


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "Application/JSON",
        "application/json; charset=UTF-8",
        'application/json;charset="utf-8"',
        "application/merge-patch+json",
    ],
)
def test_json_media_types_are_accepted(content_type):
    check_json_media_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/xml",
        "application/json; charset=latin-1",
        "application/json, text/plain",
        "application/jsonp",
        "*/*",
    ],
)
def test_other_media_types_are_refused(content_type):
    with pytest.raises(UnsupportedMediaType):
        check_json_media_type(content_type)
