"""Scrubbing free text: the patient's own identifiers, then anything shaped like an identifier.

``OwnIdentifiers`` prepares a patient's identifiers once per record and finds them in normalised
text (``cases.textnorm``); ``cases.phi_patterns`` finds the rest. ``scrub_text`` replaces what
both find by typed placeholders (``[NAME]``), the characters as written; ``residual_identifiers``
and ``finding_key_identifiers`` report the kinds found, never the text.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from cases import phi_patterns, textnorm
from cases.deid.identifiers import (
    _DIGITS,
    _MONTH_DAY,
    _MONTH_NUMBERS,
    _NOT_DIGITS,
    _NUMBER_RUN,
    _combined_regex,
    _initials,
    _initials_regex,
    _number_forms,
    _own_specs,
    _parse_date,
    _text_of,
    _with_adjacent_initials,
    normalised_patient,
)
from cases.deid.matchers import _caseless, _matcher, _may_be_empty
from cases.phi_patterns import Span, masked

_ANY_DIGIT = phi_patterns.ANY_DIGIT


def _pattern_kinds(text: str) -> list[str]:
    """The kinds of ``phi_patterns.PATTERNS`` found in ``text`` (normalised first), each once."""
    return phi_patterns.pattern_kinds(textnorm.normal_text(text))


class OwnIdentifiers:
    """A patient's identifiers, prepared once per record, matched in normalised text.

    Words (names, places, emails, the MRN, ZIP) are matched as the joined regex of ``_own_specs``
    would match them (``cases.deid.matchers``). Numbers are not turned into regexes: every digit
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


def scrub_text(text: str, patient: dict[str, Any], *, encounter_date: dt.date | None = None) -> str:
    """Replace the patient's own identifiers, then pattern-matched ones, by typed placeholders.

    With ``encounter_date`` the patient's age is known, and for a patient over 89 the year of
    birth is scrubbed too.
    """
    return OwnIdentifiers(patient, encounter_date).scrub(text)


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
    own = OwnIdentifiers(patient, encounter_date)
    found: list[tuple[int, list[str]]] = []
    for position, key in enumerate(keys):
        words = key_words(key)
        kinds = own.kinds_in(words) if words else []
        if kinds:
            found.append((position, kinds))
    return found


def residual_identifiers(
    texts: Iterable[tuple[str, str]], patient: dict[str, Any], *, encounter_date: dt.date | None = None
) -> list[dict[str, str]]:
    """Scan de-identified text for anything that still looks like an identifier.

    ``texts`` are ``(field, text)`` pairs. Returns findings as ``{"field", "kind"}`` (one per
    field and kind), never the matched text itself, so a report about a leak does not leak.
    """
    own = OwnIdentifiers(patient, encounter_date)
    findings: list[dict[str, str]] = []
    for field_name, text in texts:
        if text:
            findings += [{"field": field_name, "kind": kind} for kind in own.kinds_in(text)]
    return findings
