"""The API's JSON reader (learning_engine.parsers.loads): orjson first, the strict json path as judge.

orjson reads most bodies; whatever it takes must read as the strict ``json`` path reads it, and
whatever the strict path refuses must still be refused with the same error (issue 16, part 3).
"""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from learning_engine import parsers
from learning_engine.parsers import MAX_JSON_INTEGER, InvalidNumber, SafeJSONParser, loads


def strict(text: str | bytes):
    """The reader as it was before orjson: json with the number hooks, UTF-8 only, and no escaped
    NUL character (refused before either reader runs: PostgreSQL cannot store it)."""
    parsers.refuse_nul(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(
        text,
        parse_constant=parsers._refuse_constant,
        parse_float=parsers._finite_float,
        parse_int=parsers._bounded_int,
    )


def outcome(read, text):
    try:
        return ("ok", read(text))
    except InvalidNumber as exc:
        return ("invalid_number", str(exc))
    except ValueError:
        return ("invalid", None)


@pytest.mark.parametrize(
    "literal",
    [
        str(MAX_JSON_INTEGER + 1),  # 2**63: orjson takes it
        str(-MAX_JSON_INTEGER - 1),  # -2**63: orjson takes it
        str(2**64 - 1),  # orjson's largest integer
        str(2**64),  # orjson makes it a float
        "1" * 30,
        "1e309",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
    ],
)
def test_numbers_no_field_can_hold_are_refused_as_before(literal):
    body = f'{{"findings": {{"a": {literal}}}}}'.encode()
    with pytest.raises(InvalidNumber):
        loads(body)
    with pytest.raises(ParseError) as refused:
        SafeJSONParser().parse(io.BytesIO(body), "application/json", {})
    assert refused.value.detail.code == "invalid_number"  # type: ignore[union-attr]


def test_the_largest_integers_and_floats_still_read():
    body = f"[{MAX_JSON_INTEGER}, -{MAX_JSON_INTEGER}, 1.7e308, 0.1, -0, 1234567890123456789]"
    assert loads(body.encode()) == [MAX_JSON_INTEGER, -MAX_JSON_INTEGER, 1.7e308, 0.1, 0, 1234567890123456789]


def test_orjson_reads_an_ordinary_record(monkeypatch):
    record = {"age": 54, "sex": "F", "findings": {"radius": 17.99, "texture": 10.38}, "symptoms": ["é"]}
    monkeypatch.setattr(parsers.json, "loads", None)  # the strict path is not needed
    assert loads(json.dumps(record).encode()) == record


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\\ud800"}',  # a lone surrogate escape: json takes it, orjson does not
        b'{"a": 1, "a": 2}',  # the last duplicate wins, in both
        b"\xef\xbb\xbf{}",  # a byte order mark: refused, as before
        b'{"a": "\xff"}',  # not UTF-8
        b'"\xed\xa0\x80"',  # an encoded surrogate: not UTF-8
        b"[1,]",
        b"",
    ],
)
def test_edge_cases_read_as_the_strict_path_reads_them(body):
    assert outcome(loads, body) == outcome(strict, body)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_reads_as_the_strict_path_reads_it(value):
    body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert outcome(loads, body) == outcome(strict, body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet='{}[]",:0123456789.eE+-nulltruefalseNaInfiy \\u', max_size=40))
def test_any_bytes_read_as_the_strict_path_reads_them(data):
    body = data if isinstance(data, bytes) else data.encode()
    assert outcome(loads, body) == outcome(strict, body)
