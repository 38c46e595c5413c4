"""The default JSON parser of every API view."""

from __future__ import annotations

import codecs
import io
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]

# The largest integer any field takes: a database integer column holds no more, and beyond float's
# range (about 1.8e308) ``float(n)`` and ``math.isfinite(n)`` raise OverflowError instead of failing.
MAX_JSON_INTEGER = 2**63 - 1

_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[[ord("{"), ord("[")]] = 1
_STEPS[[ord("}"), ord("]")]] = -1
_NOT_BRACKETS = bytes(code for code in range(256) if code not in b"{}[]")


def raw_json_depth(body: bytes) -> int:
    """How deep a JSON text nests objects and arrays, read off the bytes before parsing.

    Escaped backslashes and quotes are dropped; then every other piece between quotes is outside
    the strings, and of those only the brackets count (a running sum, vectorised by numpy over the
    brackets alone: half the time on a 6 kB CDS Hooks call of every byte going through numpy, the
    same on 5 MB). A hostile body is refused before the parser ever recurses into it.
    """
    if b"{" not in body and b"[" not in body:
        return 0
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(plain.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    steps = _STEPS.take(np.frombuffer(brackets, dtype=np.uint8))
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


class InvalidNumber(ValueError):
    """A JSON number no field takes: NaN, an infinity, a float beyond float's range, a huge integer."""


def _refuse_constant(literal: str) -> float:
    raise InvalidNumber(f"{literal} is not a number JSON allows.")


def _finite_float(literal: str) -> float:
    number = float(literal)  # 1e309 reads as inf: refuse it rather than store an infinity
    if not math.isfinite(number):
        raise InvalidNumber(f"The number {_shorten(literal)} is out of range.")
    return number


def _bounded_int(literal: str) -> int:
    # The length first: Python's int() refuses more than 4300 digits with a ValueError of its own.
    number = int(literal) if len(literal) <= 20 else None
    if number is None or not -MAX_JSON_INTEGER <= number <= MAX_JSON_INTEGER:
        raise InvalidNumber(f"The integer {_shorten(literal)} is out of range (at most {MAX_JSON_INTEGER} either way).")
    return number


def _shorten(literal: str) -> str:
    return literal if len(literal) <= 24 else f"{literal[:12]}...({len(literal)} characters)"


# An escaped NUL character: "\u0000" after an even number of backslashes (an odd number would make
# it a literal backslash and the text "u0000"). A raw NUL byte is no valid JSON anywhere.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class InvalidCharacter(ValueError):
    """A string holding the NUL character: PostgreSQL can store it neither in text nor in JSON."""


def refuse_nul(data: bytes) -> None:
    """Raise ``InvalidCharacter`` when the JSON text ``data`` escapes a NUL character in a string."""
    if b"\\u0000" in data and _ESCAPED_NUL.search(data):
        raise InvalidCharacter("a string holds the NUL character (\\u0000), which no field can store.")


# A run of 19 digits: the only way a literal can hold an integer beyond MAX_JSON_INTEGER (19 digits).
# Found by mapping every digit to "0" and looking for 19 zeros: a regex ([0-9]{19}) tries a match at
# every digit and cost 170 us on a 6 kB CDS Hooks call (timestamps, ids), this 8 us.
_DIGITS_AS_ZEROS = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_RUN = b"0" * 19


def _has_long_digits(data: bytes) -> bool:
    return _LONG_RUN in data.translate(_DIGITS_AS_ZEROS)


def loads(text: str | bytes) -> Any:
    """``json.loads`` for what clients send: strict, every number finite and within range.

    Raises ``InvalidNumber`` for NaN / Infinity literals, floats that overflow (``1e309``) and
    integers beyond ``MAX_JSON_INTEGER``, ``InvalidCharacter`` for a string or key holding the NUL
    character (PostgreSQL stores it in neither text nor JSON: a 500 before), ``ValueError`` for
    anything else that is not JSON (bytes that are not UTF-8 too).

    orjson reads a body first (about 10x faster than ``json`` with these hooks, which call Python
    for every number): it refuses NaN, Infinity, floats beyond float's range, lone surrogates and
    anything that is not RFC 8259 JSON, and what it takes it reads as ``json`` does. Two things it
    does differently go to ``json`` with the hooks: a body with a run of 19 digits (orjson takes
    integers up to 2**64 - 1 and turns larger ones into floats, where the hooks refuse anything
    beyond ``MAX_JSON_INTEGER``), and every body orjson refuses, so that the error, its code
    (``invalid_number`` or not) and its message are the ones ``json`` gives.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    refuse_nul(data)
    if not _has_long_digits(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # strictly: json.loads would guess UTF-16 and let surrogates pass
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)


class SafeJSONParser(JSONParser):
    """DRF's JSON parser (strict: no NaN or Infinity), with a bound on nesting and on numbers.

    A number no field can take (NaN, Infinity, ``1e309``, an integer beyond ``MAX_JSON_INTEGER``)
    is a 400 with code ``invalid_number``.

    A body nested deeper than ``MAX_JSON_DEPTH`` (environment, default 32) is a 400 with code
    ``parse_error`` (like any unreadable body), and so is one too deep for Python's parser itself
    (rather than a 500). No
    endpoint takes anything near that deep; the bound keeps hostile bodies out of JSON columns and
    out of code that walks them recursively. Invalid UTF-8 and invalid JSON are 400 ``parse_error``
    (DRF), a media type no parser of the view takes 415 ``unsupported_media_type``.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        body = stream.read() if stream is not None else b""
        limit = int(settings.MAX_JSON_DEPTH)
        # No deeper than it has brackets: a body with few (every predict record) skips the scan.
        if body.count(b"{") + body.count(b"[") > limit and raw_json_depth(body) > limit:
            raise ParseError(f"The body nests objects and arrays more than {limit} levels deep.")
        encoding = get_encoding(parser_context or {})
        try:
            if codecs.lookup(encoding).name == "utf-8":
                return loads(body)  # orjson reads UTF-8 bytes; invalid UTF-8 is a ValueError below
            text = codecs.getreader(encoding)(io.BytesIO(body)).read()
            return loads(text)
        except InvalidNumber as exc:
            # Its own code: the body is JSON, but a number in it is one no field can take (a 500
            # before: OverflowError where a field compared or converted it).
            raise ParseError(f"JSON parse error - {exc}", code="invalid_number") from None
        except ValueError as exc:  # also UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
