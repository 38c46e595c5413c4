"""De-identification: the only form of a case that leaves the ``cases`` app.

Policy (HIPAA Safe Harbor, see docs/design.md and docs/deidentification.md):

- direct identifiers (name, MRN, SSN, phone, email, address, external id, any unknown patient or
  record key) are dropped;
- the patient becomes ``HMAC-SHA256(PSEUDONYM_KEY, source, mrn)``: stable under one key, useless
  without it; the key lives in the environment only;
- dates become years; the age at the encounter is kept, with every age over 89 reported as the
  single band "90+"; ZIP becomes its first three digits, or "000" for restricted prefixes;
- free text (the note, the diagnosis label and the symptoms) is scrubbed of the patient's own
  identifiers and of anything that looks like one (``cases.phi_patterns``: other people's names
  after a kinship or role word, dates and ages over 89 with digits or in words, addresses, phone,
  account, device, vehicle and licence numbers, ...), each replaced by a typed placeholder such
  as ``[NAME]``. The patient's own identifiers are matched loosely: in any letter case, with or
  without accents, apostrophes and hyphens, numbers with any separators, the birth date in the
  usual written forms, the initials, and for patients over 89 the birth year alone;
- all matching runs on the normal form of ``cases.textnorm`` (invisible characters removed,
  compatibility forms and accents undone, look-alike letters folded onto their TR39 skeleton),
  and replaces the characters as written, so the clinical text around an identifier is kept;
- findings keys are passed on as they are, so a key that holds an identifier of the case is
  refused when the case is submitted (``finding_key_identifiers``), and the residual scan
  checks keys as words (``key_words``).

Scrubbing errs on the side of privacy: a bare number of six or more digits is taken for an
identifier (it may be an MRN or an account number), even when it was a lab value written without
thousands separators. Decimal values ("Temp 38.6"), ratios ("BP 120/80") and percentages
("SpO2 91%") survive.

Bump ``POLICY_VERSION`` whenever the output of this module changes for the same input: every
de-identified record and every dataset records the version that produced it.

How the patient's own identifiers are matched (speed without a second definition). The
definition is one regex per patient: every identifier text as an alternative (``_Spec.pattern``),
the longest first, joined with ``|`` and applied with ``re.IGNORECASE`` (``_combined_regex``).
Compiling it costs milliseconds a patient, so it is compiled only for the odd patient whose
identifier could match an empty string. Everyone else gets ``_Matchers``, which find exactly the
same matches: each alternative made of ASCII characters is matched by string search and a few
shared, compiled separator patterns (``_Runs``, ``_Flex``, ``_Zip``); any other alternative by its
own regex, compiled once per distinct text and cached (``_Regex``); and the leftmost match wins,
the earliest alternative on a tie, as in the joined regex. ``tests/cases/test_deid.py`` holds the
two to the same output on generated patients.

Residual checks of many cases (``ResidualIndex``): a dataset scan asks, for every case, whether
its own identifiers appear in its strings. The strings are mostly a small vocabulary, so each
distinct string is indexed once (its pattern kinds, the fragments of its words and numbers); a
patient whose identifier words and numbers occur nowhere in the index cannot match any string,
and only the others are matched exactly. See ``ResidualIndex.might_hold_own`` for why that test
never misses a match.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import hmac
import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from cases import phi_patterns, textnorm
from cases.phi_patterns import Span, masked
from cases.quality import age_at

if TYPE_CHECKING:
    from cases.interchange import CaseRecord

POLICY_VERSION = "safe-harbor-2026.3"

# Three-digit ZIP prefixes whose area holds 20,000 people or fewer (HHS guidance on the Safe
# Harbor method, 2000 Census). Safe Harbor turns them into "000". The one list; update it here.
RESTRICTED_ZIP3 = frozenset(
    {
        "036",
        "059",
        "063",
        "102",
        "203",
        "556",
        "692",
        "790",
        "821",
        "823",
        "830",
        "831",
        "878",
        "879",
        "884",
        "890",
        "893",
    }
)
AGE_CEILING = 89  # ages above this are reported only as "90+"
OLDEST_BAND = "90+"

# --- Identifiers found by their shape: ``cases.phi_patterns`` ------------------------------------

_ANY_DIGIT = phi_patterns.ANY_DIGIT
_MONTHS, _ORDINAL = phi_patterns.MONTHS, phi_patterns.ORDINAL


def _pattern_kinds(text: str) -> list[str]:
    """The kinds of ``phi_patterns.PATTERNS`` found in ``text`` (normalised first), each once."""
    return phi_patterns.pattern_kinds(textnorm.normal_text(text))


# --- The patient's own identifiers ---------------------------------------------------------------

# Straight and typographic apostrophes, and the hyphens and dashes that may join a double name.
_APOSTROPHES = "'\u2019\u02bc`\u00b4\u2018"
_DASHES = "-\u2010\u2011\u2012\u2013\u2014"
_NAME_SEPARATORS = re.compile(r"[\s,.;:()\"/]+")
_NAME_DASHES = re.compile(rf"[{re.escape(_DASHES)}]+")
_NAME_APOSTROPHES = re.compile(rf"[{re.escape(_APOSTROPHES)}]+")
_NAME_STOPWORDS = frozenset(
    {"mr", "mrs", "ms", "mx", "miss", "dr", "prof", "jr", "sr", "ii", "iii", "iv", "md", "phd", "dds", "rn"}
    | {"the", "of", "and"}
)
# Lower-case particles of a name ("Maria de la Cruz") are words, not names, on their own; the full
# name is still matched as a whole. Capitalised, they may be a name ("Van Morrison").
_NAME_PARTICLES = frozenset({"de", "da", "del", "della", "di", "du", "la", "le", "van", "der", "den", "von", "ter"})
# Letters that Unicode decomposition does not reduce to ASCII but that people type without.
_FOLD = str.maketrans(textnorm.SPECIAL_LETTERS)


def fold(text: str) -> str:
    """``text`` without accents and special letters: "Łukasz Müller-Øberg" -> "Lukasz Muller-Oberg"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).translate(_FOLD)


def _loose(text: str) -> str:
    """A regex for ``text`` as people retype it: any accents, apostrophes, hyphens and spacing."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        piece = _separator_piece(ch)
        if piece is not None:
            out.append(piece)
        else:
            # Also the forms that case mapping expands ("ß" -> "SS", "İ" -> "i̇"): IGNORECASE
            # compares one character with one character only.
            expanded = [form for form in (ch.lower(), ch.upper()) if len(form) > 1]
            forms = dict.fromkeys(form for form in (ch, fold(ch), *expanded) if form)
            escaped = [re.escape(form) for form in forms]
            out.append(escaped[0] if len(escaped) == 1 else f"(?:{'|'.join(escaped)})")
    return "".join(out)


def _separator_piece(ch: str) -> str | None:
    """The regex ``_loose`` writes for a separator character, or None for any other character."""
    if ch in _APOSTROPHES:
        return f"[{re.escape(_APOSTROPHES)}]?"
    if ch in _DASHES:
        return rf"[\s{re.escape(_DASHES)}]*"
    if ch.isspace():
        return r"\s+"
    if ch in ".,":
        return rf"{re.escape(ch)}?"
    return None


def _flexible(chars: str, *, separators: str = r"[\s().+/-]*") -> str:
    """A regex for a digit (or letter-and-digit) string written with any separators."""
    return separators.join(re.escape(ch) for ch in chars)


def _bounded(pattern: str) -> str:
    return rf"(?<!\w)(?:{pattern})(?!\w)"


@functools.lru_cache(maxsize=4096)
def _name_parts(name: str) -> tuple[str, ...]:
    parts: list[str] = []
    for token in _NAME_SEPARATORS.split(name):
        # "O'Brien-Smith": the whole token, "O'Brien", "Smith", then "Brien" on its own.
        pieces = _NAME_DASHES.split(token)
        candidates = [token, *pieces, *(sub for piece in pieces for sub in _NAME_APOSTROPHES.split(piece))]
        for part in candidates:
            bare = _NAME_APOSTROPHES.sub("", _NAME_DASHES.sub("", part))
            if len(bare) < 2 or bare.lower() in _NAME_STOPWORDS:
                continue
            if bare.lower() in _NAME_PARTICLES and part == part.lower():
                continue
            if part not in parts:
                parts.append(part)
    return tuple(parts)


_EXTENSION = re.compile(r"(?i)\s*(?:x|ext\.?|extension)\s*\d")


def _main_phone(phone: str) -> str:
    """The phone number without an extension ("617-555-0100 x1234" -> "617-555-0100")."""
    return _EXTENSION.split(phone, maxsplit=1)[0]


def _parse_date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _value(value: Any) -> str:
    """A patient value as ``_own_specs`` reads it: ``str(value or "").strip()``."""
    return value.strip() if value.__class__ is str else str(value or "").strip()


_IDENTIFIER_KEYS = ("name", "mrn", "ssn", "phone", "email", "address", "zip")


def normalised_patient(patient: Any) -> dict[str, Any]:
    """The patient block with its identifiers in the normal form of ``cases.textnorm``: what the
    matchers and the residual keys are made from, so that they agree with each other."""
    if not isinstance(patient, dict):
        return {}
    changed: dict[str, Any] | None = None
    for key in _IDENTIFIER_KEYS:
        value = patient.get(key)
        if value.__class__ is str and not textnorm.is_plain(value):
            changed = changed if changed is not None else dict(patient)
            changed[key] = textnorm.normalise(value).text
    return changed if changed is not None else patient


def _text_of(patient: dict[str, Any], key: str) -> str:
    return _value(patient.get(key))


class _Spec(NamedTuple):
    """One alternative of a patient's own identifiers: a text and how it is matched.

    ``mode``: "loose" (``_loose``: names and addresses), "literal" (the exact characters, any
    letter case), "flex" (an MRN's letters and digits with any separators) or "zip" (the first
    five ZIP digits, with or without the four more of ZIP+4).
    """

    kind: str
    text: str
    mode: str

    @property
    def pattern(self) -> str:
        if self.mode == "loose":
            return _bounded(_loose(self.text))
        if self.mode == "literal":
            return _bounded(re.escape(self.text))
        if self.mode == "flex":
            return rf"(?<![^\W_])(?:{_flexible(self.text, separators=r'[\s.:#/-]*')})(?![^\W_])"
        return rf"(?<!\d){self.text}(?:[\s-]?\d{{4}})?(?!\d)"


_ADDRESS_SEGMENTS = re.compile(r"[,\n;]")


def _own_specs(patient: dict[str, Any], *, raw_name: str = "") -> list[_Spec]:
    """This patient's identifiers as alternatives, in the order they are tried: words, the longest first.

    ``patient`` is normalised (``normalised_patient``); ``raw_name``, the name as written, gives
    the parts whose normal form is a stopword ("Þe" becomes "The"): still the patient's name.
    """
    literal: list[_Spec] = []
    name = _text_of(patient, "name")
    if name:
        literal.append(_Spec("NAME", name, "loose"))
        parts = list(_name_parts(name))
        for part in _name_parts(raw_name) if raw_name and raw_name != name else ():
            normal = textnorm.normalise(part).text
            if normal not in parts:
                parts.append(normal)
        literal += [_Spec("NAME", part, "loose") for part in parts]
    for key, kind in (("mrn", "MRN"), ("ssn", "SSN"), ("phone", "PHONE")):
        value = _text_of(patient, key)
        if value:
            literal.append(_Spec(kind, value, "literal"))
    email = _text_of(patient, "email")
    if email:
        literal.append(_Spec("EMAIL", email, "literal"))
        local = email.split("@", 1)[0]
        if len(local) >= 4:
            literal.append(_Spec("EMAIL", local, "literal"))
    address = _text_of(patient, "address")
    if address:
        literal.append(_Spec("ADDRESS", address, "loose"))
        for segment in _ADDRESS_SEGMENTS.split(address):
            segment = segment.strip()
            # Keep two-letter state codes: Safe Harbor allows the state.
            if len(segment) >= 3:
                literal.append(_Spec("ADDRESS", segment, "loose"))
    zip_code = _text_of(patient, "zip")
    if zip_code:
        literal.append(_Spec("ZIP", zip_code, "literal"))
    literal.sort(key=lambda spec: len(spec.text), reverse=True)

    # An MRN with letters, written with other separators or none ("MRN 448812", "mrn448812").
    alnum = _NOT_ALNUM.sub("", str(patient.get("mrn") or ""))
    if len(alnum) >= 4 and not alnum.isdigit():
        literal.append(_Spec("MRN", alnum, "flex"))
    zip_digits = _NOT_DIGITS.sub("", zip_code)
    if len(zip_digits) >= 5:
        literal.append(_Spec("ZIP", zip_digits[:5], "zip"))
    return literal


@functools.lru_cache(maxsize=256)
def _combined_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """The definition: every alternative in one regex, ``(?P<k0>...)|(?P<k1>...)|...``."""
    return re.compile("|".join(f"(?P<k{index}>{pattern})" for index, pattern in enumerate(patterns)), re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# --- Matching the alternatives without the joined regex ------------------------------------------

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


class _OwnIdentifiers:
    """A patient's identifiers, prepared once per record, matched in normalised text.

    Words (names, places, emails, the MRN, ZIP) are matched as the joined regex of ``_own_specs``
    would match them (see the module docstring). Numbers are not turned into regexes: every digit
    run of the text is compared with the patient's numbers, digit by digit, whatever separates the
    digits. The birth date written with a month name is recognised by one shared regex and
    compared with the patient's. The patient's initials ("J.D.", "JQD") are scrubbed but not
    reported by the residual checks (``own_kinds``): a few capitals prove no leak, and the
    residual index keeps no key for them.

    Everything is matched in the normal form of ``cases.textnorm`` (of the text and of the
    patient's identifiers alike) and replaced in the text as written.
    """

    def __init__(self, patient: dict[str, Any], encounter_date: dt.date | None) -> None:
        raw_name = _text_of(patient, "name") if isinstance(patient, dict) else ""
        patient = normalised_patient(patient)
        self.specs = _own_specs(patient, raw_name=raw_name)
        self.matchers = [_matcher(spec) for spec in self.specs]
        self.combined: re.Pattern[str] | None = None
        if any(_may_be_empty(spec) for spec in self.specs):
            # re.sub's rules for empty matches are not worth copying: use the definition itself.
            self.combined = _combined_regex(tuple(spec.pattern for spec in self.specs))
        self.born = _parse_date(patient.get("birth_date"))
        self.numbers = _number_forms(patient, self.born, encounter_date)
        self.initials = _initials_regex(_initials(_text_of(patient, "name")))

    def _literal_spans(self, text: str) -> list[Span]:
        """Where the alternatives of ``_own_specs`` match, as ``re.finditer`` of their joined regex
        would find them (empty matches left out: they replace nothing)."""
        if self.combined is not None:
            return [
                (match.start(), match.end(), self.specs[int((match.lastgroup or "k0")[1:])].kind)
                for match in self.combined.finditer(text)
                if match.end() > match.start()
            ]
        caseless = _caseless(text)
        # [start, end, index, matcher]: each alternative's next match at or after the cursor.
        pending: list[list[Any]] = []
        for index, matcher in enumerate(self.matchers):
            if matcher.anchor is not None and matcher.anchor not in caseless:
                continue
            hit = matcher.first(text, caseless, 0)
            if hit is not None:
                pending.append([hit[0], hit[1], index, matcher])
        spans: list[Span] = []
        while pending:
            # The leftmost match wins; on a tie the earlier alternative, as in ``a|b``.
            start, end, index, _ = min(pending, key=lambda item: (item[0], item[2]))
            spans.append((start, end, self.specs[index].kind))
            survivors = []
            for item in pending:
                if item[0] < end:  # overlaps the match: search on after it, as re.finditer does
                    hit = item[3].first(text, caseless, end)
                    if hit is None:
                        continue
                    item[0], item[1] = hit
                survivors.append(item)
            pending = survivors
        return spans

    def _number_spans(self, match: re.Match[str]) -> list[Span]:
        run = match.group()
        # A form can only match the digits of consecutive groups: most runs (a temperature, a
        # date of the encounter) hold none of the patient's forms at all.
        digits_only = _NOT_DIGITS.sub("", run)
        if not any(form in digits_only for _kind, form in self.numbers):
            return []
        base = match.start()
        groups = [(group.start(), group.end()) for group in _DIGITS.finditer(run)]
        spans: list[Span] = []
        cursor = index = 0
        while index < len(groups):
            for kind, form in self.numbers:
                digits, end = "", index
                while end < len(groups) and len(digits) < len(form):
                    digits += run[groups[end][0] : groups[end][1]]
                    end += 1
                if digits == form:
                    start, stop = groups[index][0], groups[end - 1][1]
                    # The "+" of a country code, and an area code's "(" when its ")" goes too.
                    while start > cursor and (
                        run[start - 1] == "+" or (run[start - 1] == "(" and ")" in run[start:stop])
                    ):
                        start -= 1
                    spans.append((base + start, base + stop, kind))
                    cursor, index = stop, end
                    break
            else:
                index += 1
        return spans

    def _is_birthday(self, match: re.Match[str]) -> bool:
        born = self.born
        assert born is not None
        month = _MONTH_NUMBERS[(match["m1"] or match["m2"])[:3].lower()]
        day = int(match["d1"] or match["d2"])
        year = (match["y1"] or match["y2"] or "").lstrip("'")
        return (month, day) == (born.month, born.day) and year in ("", str(born.year), f"{born.year % 100:02d}")

    def own_spans(self, text: str, *, initials: bool = True) -> tuple[str, list[Span]]:
        """The patient's identifiers in a normalised ``text``, and the text with them masked
        (``phi_patterns.masked``), each stage after the ones before it have taken theirs."""
        spans: list[Span] = []
        if self.specs:
            found = self._literal_spans(text)
            if found:
                found = _with_adjacent_initials(text, found)
                spans += found
                text = masked(text, found)
        if initials and self.initials is not None:
            found = [(match.start(), match.end(), "NAME") for match in self.initials.finditer(text)]
            if found:
                spans += found
                text = masked(text, found)
        # Both need a digit; most symptoms and labels have none.
        if (self.born is not None or self.numbers) and _ANY_DIGIT.search(text):
            if self.born is not None:
                found = [(m.start(), m.end(), "DATE") for m in _MONTH_DAY.finditer(text) if self._is_birthday(m)]
                if found:
                    spans += found
                    text = masked(text, found)
            if self.numbers:
                found = [span for match in _NUMBER_RUN.finditer(text) for span in self._number_spans(match)]
                if found:
                    spans += found
                    text = masked(text, found)
        return text, spans

    def scrub(self, text: str) -> str:
        if not text:
            return text
        normal = textnorm.normalise(text)
        work, spans = self.own_spans(normal.text)
        spans += phi_patterns.pattern_spans(work)
        return _replaced(text, normal, spans)

    def own_kinds(self, text: str) -> list[str]:
        _, spans = self.own_spans(textnorm.normal_text(text), initials=False)
        return [kind for _start, _end, kind in spans]

    def kinds_in(self, text: str) -> list[str]:
        return list(dict.fromkeys([*self.own_kinds(text), *_pattern_kinds(text)]))


def _replaced(text: str, normal: textnorm.Normalised, spans: list[Span]) -> str:
    """``text`` with the characters that made each span of its normal form replaced by a placeholder.

    Spans that overlap (a URL that swallowed a name) become one, named after the longest.
    """
    if not spans:
        return text
    merged: list[list[Any]] = []
    for start, end, kind in sorted(spans):
        start, end = textnorm.original_span(normal, start, end)
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if end - start > last[1] - last[0]:
                last[2] = kind
            last[1] = max(last[1], end)
        else:
            merged.append([start, end, kind])
    pieces: list[str] = []
    cursor = 0
    for start, end, kind in merged:
        pieces += [text[cursor:start], f"[{kind}]"]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


# Initials next to a name of the patient ("J. Doe", "Maria L."): part of the name.
_INITIALS_BEFORE = re.compile(r"(?<![^\s(])(?:[A-Z]\.\s?){1,3}\Z")
_INITIAL_AFTER = re.compile(r"\s[A-Z]\.(?![\w])")


def _with_adjacent_initials(text: str, spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end, kind in spans:
        if kind == "NAME":
            before = _INITIALS_BEFORE.search(text, max(0, start - 9), start)
            if before is not None:
                start = before.start()
            after = _INITIAL_AFTER.match(text, end)
            if after is not None:
                end = after.end()
        out.append((start, end, kind))
    return out


def _initials(name: str) -> tuple[str, ...]:
    """The patient's initials as people write them: all of them ("JQD") and first and last ("JD")."""
    words = [
        word
        for word in re.findall(r"[^\W\d_][\w'\u2019-]*", name)
        if word.lower() not in _NAME_STOPWORDS and not (word.lower() in _NAME_PARTICLES and word == word.lower())
    ]
    letters = [word[0].upper() for word in words if word[0].upper().isascii()]
    if len(letters) < 2:
        return ()
    return tuple(dict.fromkeys(["".join(letters), letters[0] + letters[-1]]))


@functools.lru_cache(maxsize=4096)
def _initials_regex(sequences: tuple[str, ...]) -> re.Pattern[str] | None:
    """Initials in capitals: dotted ("J.D.", "J. Q. D."); undotted if three or more ("JQD"); two
    undotted ("JD") only where the text says they are someone's ("pt JD", "initials: JD", "(JD)"),
    since two capitals are often an abbreviation ("MS", "CK", "AF")."""
    alternatives: list[str] = []
    for letters in sequences:
        alternatives.append(r"(?<![\w.])" + r"\.\s?".join(letters) + r"\.?(?!\w)")
        if len(letters) >= 3:
            alternatives.append(rf"(?<![\w.]){letters}(?!\w)")
        else:
            after = "|".join(
                f"(?<={re.escape(word)})"
                for word in (
                    *("pt ", "Pt ", "PT ", "pt. ", "patient ", "Patient ", "initials ", "initials: "),
                    *("Initials: ", "Initials ", "re: ", "Re: ", "RE: ", "("),
                )
            )
            alternatives.append(rf"(?:{after}){letters}(?!\w)")
    return re.compile("|".join(alternatives)) if alternatives else None


def _number_forms(
    patient: dict[str, Any], born: dt.date | None, encounter_date: dt.date | None
) -> list[tuple[str, str]]:
    """``(kind, digits)`` of this patient's numbers, to be found whatever separates the digits."""
    mrn_digits = _NOT_DIGITS.sub("", str(patient.get("mrn") or ""))
    phone = _NOT_DIGITS.sub("", _main_phone(str(patient.get("phone") or "")))
    forms = [
        ("PHONE", phone),
        # Without the country code or trunk prefix, and the local number alone.
        *(("PHONE", phone[-length:]) for length in (10, 7) if len(phone) > length),
        ("SSN", _NOT_DIGITS.sub("", str(patient.get("ssn") or ""))),
        ("MRN", mrn_digits),
    ]
    forms = [(kind, digits) for kind, digits in forms if len(digits) >= 5]
    if born is not None:
        forms += [("DATE", digits) for digits in _date_forms(born)]
        # Safe Harbor: for a patient over 89 even the year of birth is an identifier.
        if encounter_date is not None and age_at(born, encounter_date) > AGE_CEILING:
            forms.append(("DATE", f"{born.year}"))
    forms = list(dict.fromkeys(forms))
    forms.sort(key=lambda item: len(item[1]), reverse=True)
    return forms


def _date_forms(born: dt.date) -> list[str]:
    """The birth date as digits in the usual orders, with and without zero padding, sorted."""
    y, m, d = f"{born.year}", (f"{born.month:02d}", f"{born.month}"), (f"{born.day:02d}", f"{born.day}")
    dates = {f"{y}{mm}{dd}" for mm in m for dd in d}
    dates |= {f"{mm}{dd}{yy}" for mm in m for dd in d for yy in (y, y[2:])}
    dates |= {f"{dd}{mm}{yy}" for mm in m for dd in d for yy in (y, y[2:])}
    return [digits for digits in sorted(dates) if len(digits) >= 6]


# A run of digits with the separators people put into phone numbers, SSNs and dates.
_NUMBER_RUN = re.compile(r"[(+]*\d(?:[\s().+/-]*\d)*")
_DIGITS = re.compile(r"\d+")
_NOT_DIGITS = re.compile(r"\D+")
_NOT_ALNUM = re.compile(r"[\W_]+")
_MONTH_NUMBERS = {short: number for number, (short, _rest) in enumerate(phi_patterns.MONTH_NAMES, start=1)}
_MONTH_DAY = re.compile(
    rf"\b(?P<m1>{_MONTHS})[\s./,-]*(?P<d1>\d{{1,2}}){_ORDINAL}(?:[\s./,-]*(?P<y1>\d{{4}}|'?\d{{2}}))?\b"
    rf"|\b(?P<d2>\d{{1,2}}){_ORDINAL}[\s./,-]*(?:of\s+)?(?P<m2>{_MONTHS})(?:[\s./,-]*(?P<y2>\d{{4}}|'?\d{{2}}))?\b",
    re.IGNORECASE,
)


# --- Public API ----------------------------------------------------------------------------------


def pseudonym(source: str, mrn: str, *, key: str | bytes) -> str:
    """HMAC-SHA256 of the patient's source and MRN under the pseudonym key (hex).

    A unit separator joins the two so ("ab", "c") and ("a", "bc") cannot collide.
    """
    if not key:
        raise ValueError("The pseudonym key is empty; set PSEUDONYM_KEY.")
    key_bytes = key.encode() if isinstance(key, str) else key
    message = f"{source.strip().lower()}\x1f{mrn.strip().upper()}".encode()
    return hmac.new(key_bytes, message, hashlib.sha256).hexdigest()


def age_band(age: int) -> str:
    if age > AGE_CEILING:
        return OLDEST_BAND
    low = (age // 10) * 10
    return f"{low}-{low + 9}"


def generalise_zip(zip_code: str | None) -> str | None:
    digits = re.sub(r"\D", "", zip_code or "")
    if len(digits) < 3:
        return None
    prefix = digits[:3]
    return "000" if prefix in RESTRICTED_ZIP3 else prefix


def scrub_text(text: str, patient: dict[str, Any], *, encounter_date: dt.date | None = None) -> str:
    """Replace the patient's own identifiers, then pattern-matched ones, by typed placeholders.

    With ``encounter_date`` the patient's age is known, and for a patient over 89 the year of
    birth is scrubbed too.
    """
    return _OwnIdentifiers(patient, encounter_date).scrub(text)


# "\w" joins "doe_score" into one word, so a key is checked for identifiers as the words it is
# made of: separators and underscores become spaces, and camelCase is split ("doeScore").
_KEY_SEPARATORS = re.compile(r"[\W_]+")
_CAMEL_CASE = re.compile(r"(?<=[a-z])(?=[A-Z])")


def key_words(key: str) -> str:
    """A findings key as the words it is made of, in normal form: "doe_score" -> "doe score"."""
    return _KEY_SEPARATORS.sub(" ", _CAMEL_CASE.sub(" ", textnorm.normal_text(key))).strip()


def finding_key_identifiers(
    keys: Iterable[str], patient: dict[str, Any], *, encounter_date: dt.date | None = None
) -> list[tuple[int, list[str]]]:
    """``(position, kinds)`` of the findings keys that hold an identifier: one of the patient's own,
    or anything shaped like one (``phi_patterns``), looked for in ``key_words(key)``.

    Findings keys reach de-identified records and datasets as they are (until a data dictionary
    names the findings), so such a key is refused when a case is submitted, and the residual scan
    of a dataset checks keys the same way.
    """
    own = _OwnIdentifiers(patient, encounter_date)
    found: list[tuple[int, list[str]]] = []
    for position, key in enumerate(keys):
        words = key_words(key)
        kinds = own.kinds_in(words) if words else []
        if kinds:
            found.append((position, kinds))
    return found


def deidentify(record: CaseRecord, *, key: str | bytes) -> dict[str, Any]:
    """The de-identified form of a case record: what datasets, exports and ML staff see."""
    patient = record.patient
    born = _parse_date(patient.get("birth_date"))
    age: int | str | None = None
    band: str | None = None
    if born is not None:
        years = age_at(born, record.encounter_date)
        if years >= 0:
            band = age_band(years)
            age = OLDEST_BAND if years > AGE_CEILING else years
    scrub: Callable[[str], str] = _OwnIdentifiers(patient, record.encounter_date).scrub
    return {
        "policy_version": POLICY_VERSION,
        "patient_pseudonym": pseudonym(record.source, str(patient["mrn"]), key=key),
        "source": record.source,
        "cohort": record.cohort,
        "encounter_year": record.encounter_date.year,
        "age": age,
        "age_band": band,
        "sex": patient.get("sex") or "unknown",
        "zip3": generalise_zip(patient.get("zip")),
        "findings": dict(record.findings),
        "symptoms": [scrub(symptom) for symptom in record.symptoms],
        "note": scrub(record.note),
        "diagnosis": {
            "code": record.diagnosis_code,
            "label": scrub(record.diagnosis_label),
        },
    }


def record_sha256(deidentified: dict[str, Any]) -> str:
    """sha256 (hex) of a de-identified record's canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(deidentified, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def approval_columns(patient: dict[str, Any], deidentified: dict[str, Any]) -> dict[str, str]:
    """What approval stores beside the de-identified record, computed once so that dataset builds
    never recompute it per case: the record's sha256, its dataset row, the patient's residual keys."""
    from cases.rows import stored_row  # the row format builds on this module (its "90+"), not the reverse

    return {
        "deid_sha256": record_sha256(deidentified),
        "deid_dataset_row": stored_row(deidentified),
        "residual_keys": residual_keys(patient),
    }


def residual_identifiers(
    texts: Iterable[tuple[str, str]], patient: dict[str, Any], *, encounter_date: dt.date | None = None
) -> list[dict[str, str]]:
    """Scan de-identified text for anything that still looks like an identifier.

    ``texts`` are ``(field, text)`` pairs. Returns findings as ``{"field", "kind"}`` (one per
    field and kind), never the matched text itself, so a report about a leak does not leak.
    """
    own = _OwnIdentifiers(patient, encounter_date)
    findings: list[dict[str, str]] = []
    for field_name, text in texts:
        if text:
            findings += [{"field": field_name, "kind": kind} for kind in own.kinds_in(text)]
    return findings


# --- Residual checks of many cases ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringFacts:
    """What the residual check knows about one distinct string."""

    kinds: tuple[str, ...]  # the kinds of ``phi_patterns.PATTERNS`` found in it
    plain: bool  # its own normal form (ASCII): ``ResidualIndex.might_hold_own`` can rule its patients out


_WORDS = re.compile(r"[a-z0-9]+")
_MRN_KEY = re.compile(r" f:(\S*)")  # an MRN key in joined keys (as ``might_hold_keys`` finds it): its text
_WORD2 = re.compile(r"[a-z0-9]{2,}")
_WORD3 = re.compile(r"[a-z0-9]{3,}")
_NOT_DIGIT_OR_MARK = re.compile(r"[^\d\x01]+")
_FLEX_STRIP = re.compile(r"[\s.:#/-]+")
_ALNUM_ASCII = "abcdefghijklmnopqrstuvwxyz0123456789"
# For ASCII text, the same as the regexes above in a few C loops (bytes.translate with a table is
# one): every character but lower-case letters and digits made a space (then split() gives the
# words), or deleted but digits (and the "\x01" between fields), or deleted but letters and digits.
_SPACE_OUT = bytes(code if chr(code) in _ALNUM_ASCII else 32 for code in range(256))
_ALL_BUT_DIGITS = bytes(code for code in range(128) if not chr(code).isdigit() and code != 1)
_ALL_BUT_ALNUM = bytes(code for code in range(128) if not chr(code).isalnum())
# The shape of fields and address segments: letters and digits "a", the marks between them "|".
_SHAPE = bytes(97 if chr(code) in _ALNUM_ASCII else 124 if chr(code) in "\x01,\n;" else 32 for code in range(256))
# A name may have a part without a word of two letters: single letters joined by an apostrophe or
# a hyphen ("O'B"), or a character other than letters, digits and the name separators.
_JOINERS = str.maketrans({**dict.fromkeys(_APOSTROPHES, "'"), **dict.fromkeys(_DASHES, "-")})
_NAME_CHARACTERS = (_ALNUM_ASCII + " \t\n\r\f\v,.;:()\"/'-").encode()
_JOINED_LETTERS = re.compile(r"(?<![a-z0-9])[a-z0-9]['-]+[a-z0-9](?![a-z0-9])")
# A field (between "\x01"s) or an address segment (between "," "\n" ";") whose letter-and-digit
# runs are all shorter than three.
_FIELD_WITHOUT_WORD3 = re.compile(r"(?:^|[\x01,\n;])(?:[^a-z0-9\x01,\n;]|[a-z0-9]{1,2}(?![a-z0-9]))*(?=[\x01,\n;]|$)")


def _folded(text: str) -> str:
    """Lower case without accents: the form whose ASCII words the index compares."""
    return text.lower() if text.isascii() else fold(text.translate(_JOINERS)).casefold()


def _words(folded: str) -> list[str]:
    """The ASCII letter-and-digit runs of a folded text."""
    return folded.encode().translate(_SPACE_OUT).decode().split() if folded.isascii() else _WORDS.findall(folded)


def _may_lack_word3(folded: str) -> bool:
    """Whether some field or address segment of the folded text may have no word of three."""
    if not folded.isascii():
        return _FIELD_WITHOUT_WORD3.search(folded) is not None
    # Every run of three or more becomes "A"s; with the rest gone, a field without one shows as "||".
    marks = folded.encode().translate(_SHAPE).replace(b"aaa", b"A").translate(None, b"a ")
    return b"||" in b"|" + marks + b"|"


def _email_key_text(email: str) -> str:
    """The part of an email whose words stand for both its alternatives (the email, its local part).

    The local part's words are in the email too, and are the patient's own (a domain's words are
    everyone's); a local part too short to be an alternative without such a word leaves the
    email's. A text without a word of three gets its patient checked exactly.
    """
    local = email.split("@", 1)[0]
    if len(local) < 4 and not _WORD3.search(_folded(local)):
        return email
    return local


_OTHER_KEYS = ("mrn", "ssn", "phone", "zip", "address", "email")
RESIDUAL_KEYS_FORMAT = "rk2"  # bump whenever ``residual_keys`` changes what it writes


def residual_keys(patient: Any) -> str:
    """The keys of a patient's own identifiers that ``ResidualIndex.might_hold_keys`` looks up.

    Space-separated: the format, then ``!`` when some identifier has no key word (the patient is
    always checked exactly), then ``n:`` name words, ``w:`` words of the other identifiers, ``f:``
    the MRN's letters and digits, ``d:`` numbers (phone, SSN, MRN, ZIP, birth year and dates),
    ``m:month-day`` of the birth date. Folded identifiers: PHI, kept in ``cases`` like the patient
    block itself. Approval stores them (``Case.residual_keys``) so that a dataset scan need not load
    and fold every patient block; ``might_hold_own`` computes them on the fly.
    """
    patient = normalised_patient(patient)
    get = patient.get
    keys = [RESIDUAL_KEYS_FORMAT]
    exact = False
    name = _value(get("name"))
    if name:
        folded = _folded(name)
        words = _words(folded)
        if max(map(len, words), default=0) < 2:
            exact = True
        keys += ["n:" + word for word in dict.fromkeys(words) if len(word) >= 2]
        odd = not folded.isascii() or bool(folded.encode().translate(None, _NAME_CHARACTERS))
        tricky = odd or (("'" in folded or "-" in folded) and _JOINED_LETTERS.search(folded))
        if tricky and any(not _WORD2.search(_folded(part)) for part in _name_parts(name)):
            exact = True
    mrn, ssn, phone, zip_code, address, email = map(_value, map(get, _OTHER_KEYS))
    fields = [value for value in (mrn, ssn, phone, zip_code, _email_key_text(email)) if value]
    if address:
        fields.append(address)
    if fields:
        folded = _folded("\x01".join(fields))
        keys += ["w:" + word for word in dict.fromkeys(_words(folded)) if len(word) >= 3]
        if _may_lack_word3(folded) and _wordless(fields, address):
            exact = True
    if mrn:
        alnum = mrn.encode().translate(None, _ALL_BUT_ALNUM).decode() if mrn.isascii() else _NOT_ALNUM.sub("", mrn)
        if len(alnum) >= 4 and not alnum.isdigit():
            key = _caseless(alnum)
            if key.isascii():  # else a character IGNORECASE cannot match in an ASCII string
                keys.append("f:" + key)
    numbers = []
    phone_digits = _NOT_DIGITS.sub("", _main_phone(phone))
    if len(phone_digits) >= 5:
        numbers.append(phone_digits[-7:])
    for value in (ssn, mrn):
        value_digits = _NOT_DIGITS.sub("", value)
        if len(value_digits) >= 5:
            numbers.append(value_digits)
    zip_digits = _NOT_DIGITS.sub("", zip_code)
    if len(zip_digits) >= 5:
        numbers.append(zip_digits[:5])
    born = _parse_date(get("birth_date"))
    if born is not None:
        keys.append(f"m:{born.month}-{born.day}")
        numbers.append(f"{born.year}")  # the year alone is a form for patients over 89
        numbers += _date_forms(born)
    keys += ["d:" + number for number in dict.fromkeys(numbers)]
    if exact:
        keys.insert(1, "!")
    return " ".join(keys)


def _wordless(fields: list[str], address: str) -> bool:
    """A field, or an address segment matched on its own, without a word of three letters or digits."""
    if any(not _WORD3.search(_folded(value)) for value in fields):
        return True
    segments = re.split(r"[,\n;]", address) if address else []
    return any(len(segment.strip()) >= 3 and not _WORD3.search(_folded(segment)) for segment in segments)


class ResidualIndex:
    """Distinct strings indexed for the residual check of many cases; see ``might_hold_own``.

    ``add_all`` indexes a batch of strings (each distinct string once) and returns their
    ``StringFacts``. ``might_hold_own(patient)`` answers False only when no own identifier of the
    patient can match any indexed string (of a plain string; a case with another string needs the
    exact check anyway), so a scan checks exactly only the cases it answers True for
    (``case_findings`` does both). Memory is bounded: past ``limit`` strings the index starts afresh
    with the batch being added.
    """

    def __init__(self, *, limit: int = 50_000) -> None:
        self.limit = limit
        self._clear()

    def _clear(self) -> None:
        self._facts: dict[str, StringFacts] = {}
        self._flex: list[str] = []  # lower case without the MRN separators
        self._flex_blob: str | None = ""
        # Every piece of 2+ characters of every word ("n:"), those of 3+ ("w:"), every piece of 4+
        # digits of every number's digits ("d:"), every (month, day) mentioned ("m:month-day"):
        # one set, named as ``residual_keys`` names the keys, so a case's keys are looked up at once.
        self._tokens: set[str] = set()

    def add_all(self, texts: Iterable[str]) -> dict[str, StringFacts]:
        """Index these strings (a batch that ``might_hold_own`` is asked about next); their facts."""
        texts = set(texts)
        new = [text for text in texts if text not in self._facts]
        if new and len(self._facts) + len(new) > self.limit:
            self._clear()
            new = list(texts)
        for text in new:
            self._facts[text] = self._index(text)
        return {text: self._facts[text] for text in texts}

    def _index(self, text: str) -> StringFacts:
        facts = StringFacts(kinds=tuple(_pattern_kinds(text)), plain=textnorm.is_plain(text))
        if not facts.plain:
            return facts
        lower = text.lower()
        for word in set(_words(lower)):
            size = len(word)
            pieces = [word[i:j] for i in range(size - 1) for j in range(i + 2, size + 1)]
            self._tokens.update("n:" + piece for piece in pieces)
            self._tokens.update("w:" + piece for piece in pieces if len(piece) >= 3)
        if _ANY_DIGIT.search(text):
            for run in _NUMBER_RUN.findall(text):
                digits = _NOT_DIGITS.sub("", run)
                size = len(digits)
                if size >= 4:
                    fragments = [digits[i:j] for i in range(size - 3) for j in range(i + 4, size + 1)]
                    self._tokens.update("d:" + fragment for fragment in fragments)
            for match in _MONTH_DAY.finditer(text):
                month = _MONTH_NUMBERS[(match["m1"] or match["m2"])[:3].lower()]
                day = int(match["d1"] or match["d2"])
                self._tokens.add(f"m:{month}-{day}")
        self._flex.append(_FLEX_STRIP.sub("", lower))
        self._flex_blob = None
        return facts

    def might_hold_own(self, patient: Any) -> bool:
        """False only if no own identifier of ``patient`` can match any indexed plain string.

        The same test as ``might_hold_keys(residual_keys(patient))``: the patient's identifiers are
        reduced to keys (``residual_keys``, which approval also stores on the case) and the keys
        are looked up in the index.
        """
        return self.might_hold_keys(residual_keys(patient))

    def might_hold_keys(self, keys: str) -> bool:
        """False only if no identifier that ``keys`` (``residual_keys``'s output) stand for can match
        any indexed plain string. Keys of another format count as a possible match (fail closed).

        Why a False is safe (the exact matcher would find nothing in those strings):

        - A word alternative (name, part, address, segment, email, local part, MRN, SSN, phone,
          ZIP) matching an ASCII string covers characters whose lower case is the folded
          identifier's (every ASCII form ``_loose`` allows folds to it; the tests check every code
          point), with separators in between or dropped. So each ASCII word of the folded
          identifier lies inside one word of the string, i.e. it is one of the index's fragments.
          The keys hold one word of each alternative: every name word of two or more letters
          (``n:``) and every word of three or more of the other identifiers (``w:``; of the email,
          its local part's); an alternative without such a word (a name part "O'B", an address
          segment "4 B") makes the keys start with ``!``: the patient is checked exactly.
        - An MRN's letters and digits with separators (``f:``): they appear, lower case and
          contiguous, in some string with the MRN separators removed.
        - A number (phone, SSN, MRN, birth date, birth year, ZIP; ``d:``): its digits appear
          contiguous in the digits of one number run of the string; every phone form ends with the
          last seven digits, and every form has four digits or more.
        - The birth date with a month name (``m:month-day``): the index keeps every (month, day)
          mentioned.
        """
        parts = keys.split()
        if not parts or parts[0] != RESIDUAL_KEYS_FORMAT:
            return True
        if len(parts) > 1 and parts[1] == "!":
            return True
        if not self._tokens.isdisjoint(parts):
            return True
        start = keys.find(" f:")  # at most one: the MRN's
        if start < 0:
            return False
        end = keys.find(" ", start + 3)
        if self._flex_blob is None:
            self._flex_blob = "\x00".join(self._flex)
        return keys[start + 3 : end if end >= 0 else len(keys)] in self._flex_blob

    def rows_that_might_hold(self, keys: Sequence[str]) -> list[int]:
        """The positions ``i`` for which ``might_hold_keys(keys[i])`` is True, in order: the same
        answers for a batch of cases (or more, for keys ``residual_keys`` never writes: two MRN
        keys), found with a few passes over all their keys at once.

        The keys of the whole batch are looked up in one set intersection. A key found there, or an
        MRN key (``f:``) found in the indexed text, is then traced back to the cases whose keys
        hold it, by searching for the whole key (space before and after) in the batch's keys
        joined with spaces; a keys string of another format or with ``!`` is answered by
        ``might_hold_keys`` itself. Keys with any whitespace but the space (the joined text would
        not separate them the same way) make every case of the batch go through
        ``might_hold_keys``.
        """
        if not keys:
            return []
        joined = " ".join(keys)
        if not joined.isprintable():  # a tab, a line break, another separator: one case at a time
            return [row for row, case_keys in enumerate(keys) if self.might_hold_keys(case_keys)]
        prefix = RESIDUAL_KEYS_FORMAT + " "
        rows = {
            row
            for row, case_keys in enumerate(keys)
            if not case_keys.startswith(prefix) or "!" in case_keys
            if self.might_hold_keys(case_keys)
        }
        found = [word for word in self._tokens.intersection(joined.split()) if word != RESIDUAL_KEYS_FORMAT]
        mrn_keys = set(_MRN_KEY.findall(joined))
        if mrn_keys:
            if self._flex_blob is None:
                self._flex_blob = "\x00".join(self._flex)
            blob = self._flex_blob
            found += ["f:" + key for key in mrn_keys if key in blob]
        if found:
            text = " " + joined + " "
            starts = list(itertools.accumulate((len(case_keys) + 1 for case_keys in keys), initial=1))
            for word in found:
                needle = f" {word} "
                position = text.find(needle)
                while position >= 0:
                    rows.add(bisect.bisect_right(starts, position + 1) - 1)
                    position = text.find(needle, position + 1)
        return sorted(rows)

    def case_findings(
        self, texts: Sequence[tuple[str, str]], patient: Any, encounter_date: dt.date | None = None
    ) -> list[tuple[str, str]]:
        """``(field, kind)`` for one case's non-empty texts, as ``residual_identifiers`` finds them."""
        facts = self.add_all(text for _, text in texts)
        if all(facts[text].plain for _, text in texts) and not self.might_hold_own(patient):
            return [(field_name, kind) for field_name, text in texts for kind in facts[text].kinds]
        return exact_findings(texts, patient, encounter_date, facts)


def exact_findings(
    texts: Sequence[tuple[str, str]],
    patient: Any,
    encounter_date: dt.date | None = None,
    facts: dict[str, StringFacts] | None = None,
) -> list[tuple[str, str]]:
    """``(field, kind)`` by the exact matcher, with the pattern kinds from ``facts`` when known."""
    own = _OwnIdentifiers(patient if isinstance(patient, dict) else {}, encounter_date)
    findings: list[tuple[str, str]] = []
    for field_name, text in texts:
        if text:
            kinds = facts[text].kinds if facts is not None and text in facts else _pattern_kinds(text)
            findings += [(field_name, kind) for kind in dict.fromkeys([*own.own_kinds(text), *kinds])]
    return findings
