"""Matching the alternatives of a patient's own identifiers without the joined regex.

The definition is one regex per patient: every identifier text as an alternative (``_Spec.pattern``),
the longest first, joined with ``|`` and applied with ``re.IGNORECASE`` (``_combined_regex``).
Compiling it costs milliseconds a patient, so it is compiled only for the odd patient whose
identifier could match an empty string. Everyone else gets these matchers, which find exactly the
same matches: each alternative made of ASCII characters is matched by string search and a few
shared, compiled separator patterns (``_Runs``, ``_Flex``, ``_Zip``); any other alternative by its
own regex, compiled once per distinct text and cached (``_Regex``); and the leftmost match wins,
the earliest alternative on a tie, as in the joined regex (``OwnIdentifiers._literal_spans``).
``tests/cases/test_deid.py`` holds the two to the same output on generated patients.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from cases.deid.identifiers import _APOSTROPHES, _DASHES, _compiled, _separator_piece, _Spec

# The four non-ASCII characters that re.IGNORECASE takes for an ASCII letter (KELVIN SIGN, LONG S,
# DOTLESS I, I WITH DOT ABOVE). With them replaced, ``str.lower`` keeps the length (only U+0130
# changes it) and turns a character into an ASCII letter exactly when IGNORECASE would match that
# letter there (tests/cases/test_deid.py checks every code point).
_IGNORECASE_ASCII = str.maketrans({"\u212a": "k", "\u017f": "s", "\u0131": "i", "\u0130": "i"})
# Everything a run of ``_loose`` separators can consume: what may stand between two words.
_SEPARATOR_RUN = re.compile(rf"[\s{re.escape(_APOSTROPHES + _DASHES)}.,]*")
_FLEX_SEPARATORS = re.compile(r"[\s.:#/-]*")
_ZIP_TAIL = re.compile(r"(?:[\s-]?\d{4})?(?!\d)")
# The characters ``_separator_piece`` turns into a separator (whitespace is ``str.isspace``, as in ``\s``).
_LOOSE_SEPARATORS = re.compile(rf"([\s{re.escape(_APOSTROPHES + _DASHES)}.,]+)")


def _caseless(text: str) -> str:
    """``text`` with ``caseless[i] == c`` (``c`` ASCII, lower case) iff IGNORECASE matches ``c`` at ``text[i]``."""
    return text.lower() if text.isascii() else text.translate(_IGNORECASE_ASCII).lower()


def _is_word(ch: str) -> bool:
    """``\\w`` of ``re`` for str patterns, exactly."""
    return ch.isalnum() or ch == "_"


class _Runs:
    """An ASCII alternative: runs of required characters, separator groups between them.

    The required characters are ASCII and never separators, so at a given start each separator
    group must take the whole run of separator characters up to the next required one: there is
    at most one way to match, found with string search and the group's (shared) regex. A trailing
    group is followed by ``(?!\\w)`` in the regex, so it keeps that regex's own backtracking.
    """

    __slots__ = ("anchor", "groups", "runs", "trailing")

    def __init__(self, runs: list[str], groups: list[str], trailing: str | None) -> None:
        self.runs = runs
        self.groups = [_compiled(group) for group in groups]
        self.trailing = _compiled(rf"(?:{trailing})(?!\w)") if trailing is not None else None
        self.anchor = max(runs, key=len)

    def first(self, text: str, caseless: str, pos: int) -> tuple[int, int] | None:
        head = self.runs[0]
        start = caseless.find(head, pos)
        while start >= 0:
            end = self._end(text, caseless, start)
            if end >= 0:
                return start, end
            start = caseless.find(head, start + 1)
        return None

    def _end(self, text: str, caseless: str, start: int) -> int:
        if start and _is_word(text[start - 1]):
            return -1
        position = start + len(self.runs[0])
        for group, run in zip(self.groups, self.runs[1:], strict=True):
            stop = _SEPARATOR_RUN.match(text, position).end()  # type: ignore[union-attr]
            if group.fullmatch(text, position, stop) is None or not caseless.startswith(run, stop):
                return -1
            position = stop + len(run)
        if self.trailing is not None:
            tail = self.trailing.match(text, position)
            return tail.end() if tail is not None else -1
        if position < len(text) and _is_word(text[position]):
            return -1
        return position


class _Flex:
    """An MRN's ASCII letters and digits with any of ``[\\s.:#/-]`` between them."""

    __slots__ = ("anchor", "chars")

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.anchor = None

    def first(self, text: str, caseless: str, pos: int) -> tuple[int, int] | None:
        head = self.chars[0]
        start = caseless.find(head, pos)
        while start >= 0:
            if not (start and text[start - 1].isalnum()):
                position = start + 1
                for ch in self.chars[1:]:
                    position = _FLEX_SEPARATORS.match(text, position).end()  # type: ignore[union-attr]
                    if caseless[position : position + 1] != ch:
                        break
                    position += 1
                else:
                    if position == len(text) or not text[position].isalnum():
                        return start, position
            start = caseless.find(head, start + 1)
        return None


class _Zip:
    """Five ZIP digits not inside a longer number, with the four of ZIP+4 if they follow."""

    __slots__ = ("anchor", "digits")

    def __init__(self, digits: str) -> None:
        self.digits = digits
        self.anchor = digits

    def first(self, text: str, caseless: str, pos: int) -> tuple[int, int] | None:
        start = text.find(self.digits, pos)
        while start >= 0:
            if not (start and text[start - 1].isdecimal()):
                tail = _ZIP_TAIL.match(text, start + len(self.digits))
                if tail is not None:
                    return start, tail.end()
            start = text.find(self.digits, start + 1)
        return None


class _Regex:
    """Any other alternative: its own regex, compiled once per distinct pattern."""

    __slots__ = ("anchor", "regex")

    def __init__(self, pattern: str) -> None:
        self.regex = _compiled(pattern)
        self.anchor = None

    def first(self, text: str, caseless: str, pos: int) -> tuple[int, int] | None:
        match = self.regex.search(text, pos)
        return (match.start(), match.end()) if match is not None else None


_Matcher = _Runs | _Flex | _Zip | _Regex


@functools.lru_cache(maxsize=16384)
def _may_be_empty(spec: _Spec) -> bool:
    """Whether the alternative can match an empty string (a name of apostrophes, say)."""
    return spec.mode == "loose" and all(
        ch in _APOSTROPHES or ch in _DASHES or ch in ".," for ch in unicodedata.normalize("NFC", spec.text)
    )


@functools.lru_cache(maxsize=16384)
def _matcher(spec: _Spec) -> _Matcher:
    if spec.mode == "literal" and spec.text.isascii():
        return _Runs([spec.text.lower()], [], None)
    if spec.mode == "loose":
        runs = _loose_runs(spec.text)
        if runs is not None:
            return runs
    if spec.mode == "flex" and spec.text.isascii():
        return _Flex(spec.text.lower())
    if spec.mode == "zip" and spec.text.isascii():
        return _Zip(spec.text)
    return _Regex(spec.pattern)


def _loose_runs(text: str) -> _Runs | None:
    """``_loose(text)`` as runs and separator groups, or None unless every other character is ASCII."""
    pieces = _LOOSE_SEPARATORS.split(unicodedata.normalize("NFC", text))
    # [run, separators, run, ..., run, trailing separators]: split() puts "" first for a leading one.
    runs, separators = pieces[0::2], pieces[1::2]
    if not runs[0] or not all(run.isascii() for run in runs):
        return None  # a leading separator (rare), or a letter only a regex can match loosely
    trailing = None
    if not runs[-1]:
        runs.pop()
        trailing = "".join(_separator_piece(ch) or "" for ch in separators.pop())
    if not runs:
        return None
    groups = ["".join(_separator_piece(ch) or "" for ch in group) for group in separators]
    return _Runs([run.lower() for run in runs], groups, trailing)
