"""The residual-identifier scan of a written dataset: the last gate before a file is kept.

A dataset file holds de-identified values only. This scan proves it for every string the file
holds: it loads the raw patient block of each case (so it lives in ``cases``, the one app that may
read PHI) and looks for that patient's own identifiers and for anything shaped like an identifier,
with the very matchers de-identification uses (``cases.deid``). Its report names the case, the
field and the kind of identifier, never the identifier itself. Any finding fails the dataset:
the scan errs towards failing (fail closed).

Speed. ``deid``'s matcher for one patient's identifiers is a large regex compiled per patient
(milliseconds), far too slow to build for every case of a 100,000-case dataset. So each case first
goes through a cheap, conservative prefilter that answers "could any of this patient's identifiers
match any of these strings?". It never answers "no" when ``deid`` would find something: it checks
necessary conditions of every kind of match ``deid._own_alternatives`` builds (see
``_could_match``). Only a "maybe" builds the exact matcher, whose result is the one reported.
The shape patterns (``deid.PATTERNS``) do not depend on the patient, so their result is memoised
per distinct string: a dataset's strings are mostly a small vocabulary (symptoms, findings keys,
diagnosis labels). ``tests/training/test_datasets.py`` checks that the prefilter and the exact
scan agree.

The pseudonym column is not matched against patterns: it is HMAC output (64 hex characters) that
``deid`` computes from the MRN under a secret key, and digit-run patterns (a ZIP code, a birth year)
would occasionally "find" an identifier in random hex, about once per 100,000 patients: a build
that fails at random is no gate. Instead it must *be* a pseudonym (the exact shape), so a raw MRN or
name written into that column by mistake still fails the scan.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from cases import deid
from cases.models import Case

CHUNK_SIZE = 2000  # cases whose patient blocks are loaded per query
MAX_REPORTED_FINDINGS = 1000
PSEUDONYM_FIELDS = frozenset({"patient_pseudonym"})
PSEUDONYM_SHAPE = re.compile(r"[0-9a-f]{64}")

# The patient keys ``deid`` derives identifiers from. Loose keys are matched with any spacing,
# hyphens, apostrophes and accents (their words may be joined); the others literally.
LOOSE_KEYS = ("name", "address")
LITERAL_KEYS = ("mrn", "ssn", "phone", "email", "zip")
_KEYS = (*LOOSE_KEYS, *LITERAL_KEYS)

_WORD = re.compile(r"\w+")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_LONG_DIGITS = re.compile(r"\d{5}")
_NOT_DIGIT = re.compile(r"\D+")
_NOT_ALNUM = re.compile(r"[\W_]+")
# What ``deid`` lets stand between the digits of a number, and between the characters of an MRN.
_NUMBER_SEPARATORS = re.compile(r"[\s().+/-]+")
_MRN_SEPARATORS = re.compile(r"[\s.:#/-]+")
# Characters a loose match may drop between two words ("O'Brien" ~ "OBrien", "Smith-Jones" ~
# "SmithJones", "St." ~ "St"): words separated only by these may appear joined.
_JOINABLE = deid._APOSTROPHES + deid._DASHES + ".,"
_JOINED_WORDS = re.compile(rf"\w+(?:[{re.escape(_JOINABLE)}]+\w+)+")
_DROP_JOINABLE = str.maketrans("", "", _JOINABLE)
_JOINABLE_CHARS = re.compile(rf"[{re.escape(_JOINABLE)}]+")
_SHORT_RUNS = re.compile(r"(?<!\d)\d{1,2}(?!\d)")
_ADDRESS_SEGMENTS = re.compile(r"[,\n;]")
_HAS_DIGIT = re.compile(r"\d")
_ONLY_SHORT_NUMBERS = re.compile(r"\W*\d{1,2}(?:\W+\d{1,2})*\W*")

_MEMO_LIMIT = 50_000


@dataclass
class ScanReport:
    """What a scan found: ``findings`` are ``{"case_id", "field", "kind"}``, at most ``limit`` of them."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    cases: int = 0
    strings: int = 0
    limit: int = MAX_REPORTED_FINDINGS

    @property
    def clean(self) -> bool:
        return self.total == 0

    def add(self, case_id: int, field_name: str, kind: str) -> None:
        self.total += 1
        if len(self.findings) < self.limit:
            self.findings.append({"case_id": case_id, "field": field_name, "kind": kind})

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "cases_scanned": self.cases,
            "strings_scanned": self.strings,
            "findings": self.findings,
            "findings_total": self.total,
            "findings_truncated": self.total > len(self.findings),
        }


def scan_dataset_rows(
    rows: Iterable[tuple[int, str, Any]],
    *,
    pseudonym_fields: Collection[str] = PSEUDONYM_FIELDS,
    limit: int = MAX_REPORTED_FINDINGS,
) -> ScanReport:
    """Scan ``(case_id, field, text)`` rows, grouped by case (as a dataset file holds them).

    A case's rows should be consecutive; a case that comes back later is scanned again (correct,
    only slower).
    """
    cases = (
        (case_id, [(field_name, text) for _, field_name, text in case_rows])
        for case_id, case_rows in itertools.groupby(rows, key=itemgetter(0))
    )
    return scan_cases(cases, pseudonym_fields=pseudonym_fields, limit=limit)


def scan_cases(
    cases: Iterable[tuple[int, Sequence[tuple[str, Any]]]],
    *,
    pseudonym_fields: Collection[str] = PSEUDONYM_FIELDS,
    limit: int = MAX_REPORTED_FINDINGS,
) -> ScanReport:
    """Scan ``(case_id, [(field, text), ...])`` per case. Loads the patient blocks ``CHUNK_SIZE`` at a time.

    A case id with no case behind it is a finding too (kind ``UNKNOWN_CASE``): nothing can vouch
    for its strings.
    """
    report = ScanReport(limit=limit)
    scanner = _Scanner(frozenset(pseudonym_fields))
    iterator = iter(cases)
    while chunk := list(itertools.islice(iterator, CHUNK_SIZE)):
        patients = {
            case_id: (patient, encounter_date)
            for case_id, patient, encounter_date in Case.objects.filter(pk__in={case_id for case_id, _ in chunk})
            .order_by()
            .values_list("id", "patient", "encounter_date")
        }
        for case_id, texts in chunk:
            report.cases += 1
            report.strings += len(texts)
            found = patients.get(case_id)
            if found is None:
                report.add(case_id, "case_id", "UNKNOWN_CASE")
                continue
            for field_name, kind in scanner.case_findings(texts, *found):
                report.add(case_id, field_name, kind)
    return report


# --- Per string and per set of strings: memoised -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Profile:
    """What the scan needs to know about one distinct string."""

    kinds: tuple[str, ...]  # ``deid.PATTERNS`` kinds found in it
    words: frozenset[str]  # its words (``\\w`` runs), folded and case-folded
    digits: str  # without number separators: a number's digits appear contiguous
    mrn_chars: str  # without MRN separators, case-folded
    digit_runs: frozenset[str]  # maximal runs of ASCII digits


def _profile(text: str) -> _Profile:
    # ``deid`` matches against the NFC form; ASCII is its own NFC form.
    nfc = text if text.isascii() else unicodedata.normalize("NFC", text)
    return _Profile(
        kinds=tuple(dict.fromkeys(kind for kind, pattern in deid.PATTERNS if pattern.search(nfc))),
        words=frozenset(_fold_words(_WORD.findall(nfc))),
        digits=_NUMBER_SEPARATORS.sub("", nfc),
        mrn_chars=_MRN_SEPARATORS.sub("", nfc).casefold(),
        digit_runs=frozenset(_ASCII_DIGITS.findall(nfc)),
    )


@dataclass(frozen=True, slots=True)
class _Strings:
    """The strings of one case taken together (cases share them: a vocabulary of symptoms, labels)."""

    kinds: tuple[tuple[int, str], ...]  # (index of the string, pattern kind)
    words: frozenset[str]
    long_words: tuple[str, ...]  # words other than one- and two-digit numbers, joinables removed
    short_numbers: frozenset[str]  # one- and two-digit numbers ("40", "9"): everywhere, weak evidence
    digits: str  # the strings' digit skeletons, NUL-separated
    long_digits: bool  # five digits in a row somewhere in ``digits``
    mrn_chars: str
    digit_runs: frozenset[str]


def _strings(profiles: list[_Profile]) -> _Strings:
    words = frozenset().union(*(p.words for p in profiles))
    digits = "\x00".join(p.digits for p in profiles)
    return _Strings(
        kinds=tuple((index, kind) for index, p in enumerate(profiles) for kind in p.kinds),
        words=words,
        long_words=tuple({word.translate(_DROP_JOINABLE) for word in words if not _is_short_number(word)}),
        short_numbers=frozenset(word for word in words if _is_short_number(word)),
        digits=digits,
        long_digits=_LONG_DIGITS.search(digits) is not None,
        mrn_chars="\x00".join(p.mrn_chars for p in profiles),
        digit_runs=frozenset().union(*(p.digit_runs for p in profiles)),
    )


class _Scanner:
    def __init__(self, pseudonym_fields: frozenset[str]) -> None:
        self.pseudonym_fields = pseudonym_fields
        self._profiles: dict[str, _Profile] = {}
        self._strings: dict[tuple[str, ...], _Strings] = {}

    def strings(self, texts: tuple[str, ...]) -> _Strings:
        found = self._strings.get(texts)
        if found is None:
            if len(self._strings) >= _MEMO_LIMIT:  # bounded memory, whatever the data
                self._strings.clear()
            if len(self._profiles) >= _MEMO_LIMIT:
                self._profiles.clear()
            profiles = []
            for text in texts:
                profile = self._profiles.get(text)
                if profile is None:
                    profile = self._profiles[text] = _profile(text)
                profiles.append(profile)
            found = self._strings[texts] = _strings(profiles)
        return found

    def case_findings(
        self, texts: Sequence[tuple[str, Any]], patient: Any, encounter_date: Any
    ) -> list[tuple[str, str]]:
        """``(field, kind)`` pairs for one case, as ``deid.residual_identifiers`` reports them."""
        findings: list[tuple[str, str]] = []
        scanned: list[tuple[str, str]] = []
        for field_name, value in texts:
            text = value if value.__class__ is str else str(value)
            if field_name in self.pseudonym_fields:
                if not PSEUDONYM_SHAPE.fullmatch(text):
                    findings.append((field_name, "PSEUDONYM_FORMAT"))
            elif text:
                scanned.append((field_name, text))
        if not scanned:
            return findings
        strings = self.strings(tuple([text for _, text in scanned]))
        if _could_match(strings, patient if isinstance(patient, dict) else {}):
            # The exact matcher, as de-identification uses it: its result is the report.
            exact = deid.residual_identifiers(scanned, patient, encounter_date=encounter_date)
            findings += [(item["field"], item["kind"]) for item in exact]
        elif strings.kinds:
            findings += [(scanned[index][0], kind) for index, kind in strings.kinds]
        return list(dict.fromkeys(findings)) if findings else findings


# --- The prefilter -------------------------------------------------------------------------------


def _fold_word(word: str) -> str:
    return word.casefold() if word.isascii() else deid.fold(word).casefold()


def _fold_words(words: Iterable[str]) -> Iterator[str]:
    """Words as ``deid``'s loose matching compares them: case-folded, accents off.

    Folding may split a word ("½" becomes "1", FRACTION SLASH, "2"): then its parts count as words too.
    """
    for word in words:
        folded = _fold_word(word)
        yield folded
        if not folded.isascii():
            parts = _WORD.findall(folded)
            if parts != [folded]:
                yield from parts


def _fold_text(text: str) -> str:
    return text.casefold() if text.isascii() else deid.fold(unicodedata.normalize("NFC", text)).casefold()


def _is_short_number(word: str) -> bool:
    return len(word) <= 2 and word.isdecimal()


def _words_of(value: str, *, joined: bool = True) -> set[str]:
    """The words of an identifier, and (``joined``) every run of words a loose match may join."""
    nfc = value if value.isascii() else unicodedata.normalize("NFC", value)
    words = set(_fold_words(_WORD.findall(nfc)))
    if joined:
        for group in _JOINED_WORDS.findall(nfc):
            parts = [_fold_word(word) for word in _WORD.findall(group)]
            for start in range(len(parts)):
                for end in range(start + 2, len(parts) + 1):
                    words.add("".join(parts[start:end]))
    return words


def _could_match(strings: _Strings, patient: dict[str, Any]) -> bool:
    """False only if no own-identifier alternative of ``deid`` can match any of the strings.

    Each test is a necessary condition of one family of ``deid._own_alternatives``:

    - a literal (name, name part, address, address segment, MRN, SSN, phone, email, ZIP) is
      matched between word boundaries, so each word of a match is a whole word of the string,
      and is one of the identifier's words or several of them joined (loose matching drops
      apostrophes, hyphens and dots); so some word of the strings is in the identifier's text;
    - a number written with any separators (phone, SSN, MRN digits; ZIP) leaves its digits
      contiguous once the separators are removed; an MRN's letters and digits likewise;
    - the birth date, in any written form, shows the year as a word or a run of digits, or the
      day and the month and the two-digit year as words, or eight digits in a row, or the day
      leading a run of digits and the month's name inside a word.

    The cheap substring tests come first; the word-level ones run only when those pass.
    """
    values = {key: _text_value(patient.get(key)) for key in _KEYS}
    blob = "\n".join(values.values())
    if blob.isascii():
        haystack = _JOINABLE_CHARS.sub("", blob).lower()
    else:
        # Joinable characters go before folding too: one of them (ACUTE ACCENT) folds to a space.
        haystack = _JOINABLE_CHARS.sub("", _fold_text(_JOINABLE_CHARS.sub("", blob)))
    if any(word in haystack for word in strings.long_words) and _words_could_match(strings, values):
        return True
    if (
        strings.short_numbers
        and not strings.short_numbers.isdisjoint(_SHORT_RUNS.findall(haystack))
        and strings.short_numbers & _short_numbers_alone(values)
    ):
        return True
    if strings.long_digits and _number_could_match(strings, values):
        return True
    mrn_chars = _NOT_ALNUM.sub("", values["mrn"]).casefold()
    if len(mrn_chars) >= 4 and not mrn_chars.isdigit() and mrn_chars in strings.mrn_chars:
        return True
    return _date_could_match(strings, deid._parse_date(patient.get("birth_date")))


def _text_value(value: Any) -> str:
    if value.__class__ is str:
        return value.strip()
    return "" if value is None else str(value).strip()


def _literal_values(values: dict[str, str]) -> list[str]:
    literal = [values[key] for key in LITERAL_KEYS if values[key]]
    if "@" in values["email"]:
        literal.append(values["email"].split("@", 1)[0])  # the local part alone
    return literal


def _words_could_match(strings: _Strings, values: dict[str, str]) -> bool:
    """The word-level test behind the substring one (which only says a word occurs somewhere)."""
    loose: set[str] = set()
    for key in LOOSE_KEYS:
        if values[key]:
            loose |= _words_of(values[key])
    if any(not _is_short_number(word) for word in strings.words & loose):
        return True
    # Matched literally (letter case aside): every word of the value is a word of the strings.
    return any(_words_of(value, joined=False) <= strings.words for value in _literal_values(values))


def _short_numbers_alone(values: dict[str, str]) -> set[str]:
    """Words of one or two digits that can make up an identifier on their own.

    Numbers like "40" are everywhere ("40-49" is an age band), so sharing one with a patient's
    address is no evidence, unless an identifier can consist of such numbers alone: a name with a
    number among its parts, an address segment of short numbers only, an MRN "12".
    """
    alone: set[str] = set()
    name = values["name"]
    if name and _HAS_DIGIT.search(name):
        alone |= {word for word in _words_of(name) if _is_short_number(word)}
    address = values["address"]
    candidates = _literal_values(values)
    if address:
        candidates += [address, *_ADDRESS_SEGMENTS.split(address)]
    for candidate in candidates:
        if _ONLY_SHORT_NUMBERS.fullmatch(candidate):
            alone |= _words_of(candidate)
    return alone


def _number_could_match(strings: _Strings, values: dict[str, str]) -> bool:
    forms = []
    phone = _NOT_DIGIT.sub("", deid._main_phone(values["phone"]))
    if len(phone) >= 5:
        forms.append(phone[-7:])  # every form deid tries (with or without prefixes) ends so
    for key in ("ssn", "mrn"):
        number = _NOT_DIGIT.sub("", values[key])
        if len(number) >= 5:
            forms.append(number)
    zip_digits = _NOT_DIGIT.sub("", values["zip"])
    if len(zip_digits) >= 5:
        forms.append(zip_digits[:5])
    return any(form in strings.digits for form in forms)


def _date_could_match(strings: _Strings, born: Any) -> bool:
    if born is None:
        return False
    words, runs = strings.words, strings.digit_runs
    year, month, day = str(born.year), born.month, born.day
    if year in words or year in runs:  # "1957-03-14", and the birth year alone (over 89)
        return True
    if {f"{year}{month:02d}{day:02d}", f"{month:02d}{day:02d}{year}", f"{day:02d}{month:02d}{year}"} & words:
        return True
    days = (str(day), f"0{day}")
    if f"{born.year % 100:02d}" in words and words.intersection(days) and words & {str(month), f"0{month}"}:
        return True  # "3/14/57", "14.03.57"
    # "March 14", "14th of March", "Mar14": the day leads a run of digits, the month's name is in a word.
    if not any(run.startswith(days) for run in runs):
        return False
    short_month = deid._MONTH_NAMES[month - 1][0]
    return any(short_month in word for word in words)
