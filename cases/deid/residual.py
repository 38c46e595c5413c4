"""Residual checks of many cases: the index behind a dataset's residual-identifier scan.

A dataset scan (``cases.scanning``) asks, for every case, whether its own identifiers appear in its
strings. The strings are mostly a small vocabulary, so each distinct string is indexed once (its
pattern kinds, the fragments of its words and numbers); a patient whose identifier words and
numbers occur nowhere in the index cannot match any string, and only the others are matched
exactly. See ``ResidualIndex.might_hold_keys`` for why that test never misses a match.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cases import textnorm
from cases.deid.identifiers import (
    _APOSTROPHES,
    _DASHES,
    _MONTH_DAY,
    _MONTH_NUMBERS,
    _NOT_ALNUM,
    _NOT_DIGITS,
    _NUMBER_RUN,
    _date_forms,
    _main_phone,
    _name_parts,
    _parse_date,
    _value,
    fold,
    normalised_patient,
)
from cases.deid.matchers import _caseless
from cases.deid.scrubbing import _ANY_DIGIT, OwnIdentifiers, _pattern_kinds


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
    own = OwnIdentifiers(patient if isinstance(patient, dict) else {}, encounter_date)
    findings: list[tuple[str, str]] = []
    for field_name, text in texts:
        if text:
            kinds = facts[text].kinds if facts is not None and text in facts else _pattern_kinds(text)
            findings += [(field_name, kind) for kind in dict.fromkeys([*own.own_kinds(text), *kinds])]
    return findings
