"""The NUL character in a JSON body is a 400: PostgreSQL stores it in neither text nor JSON (a
fuzzed progress report with a NUL in a metrics key was a 500 there)."""

from __future__ import annotations

import pytest

from cases.interchange import RecordError, parse_line
from learning_engine.parsers import InvalidCharacter, loads


@pytest.mark.parametrize("body", [b'{"\\u0000": 1}', b'{"a": "x\\u0000y"}', b'["\\\\\\u0000"]'])
def test_an_escaped_nul_in_a_key_or_string_is_refused(body):
    with pytest.raises(InvalidCharacter):
        loads(body)


def test_a_backslash_followed_by_the_text_u0000_is_kept():
    assert loads(b'{"a": "x\\\\u0000y"}') == {"a": "x\\u0000y"}


def test_a_json_lines_record_with_a_nul_is_a_record_error():
    with pytest.raises(RecordError):
        parse_line(b'{"external_id": "a\\u0000", "source": "s"}')
