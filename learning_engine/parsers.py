"""The default JSON parser of every API view."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[[ord("{"), ord("[")]] = 1
_STEPS[[ord("}"), ord("]")]] = -1
_QUOTE = ord('"')


def raw_json_depth(body: bytes) -> int:
    """How deep a JSON text nests objects and arrays, read off the bytes before parsing.

    Vectorised (numpy, a few bytes of memory per body byte): escaped backslashes and quotes are
    dropped, a running count of quotes marks what is inside strings, and only the brackets outside
    them count. A hostile body is refused before the parser ever recurses into it.
    """
    if b"{" not in body and b"[" not in body:
        return 0
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    codes = np.frombuffer(plain, dtype=np.uint8)
    in_string = (np.cumsum(codes == _QUOTE, dtype=np.uint8) & 1).astype(bool)
    steps = _STEPS[codes]
    steps[in_string] = 0
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


class SafeJSONParser(JSONParser):
    """DRF's JSON parser (strict: no NaN or Infinity), with a bound on nesting.

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
        if raw_json_depth(body) > limit:
            raise ParseError(f"The body nests objects and arrays more than {limit} levels deep.")
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
