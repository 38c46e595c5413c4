"""A patient's own identifiers as the matchers look for them: the patient block in normal form, the
alternatives of the definition (``_Spec``, ``_own_specs``: names and addresses loosely, the MRN with any
separators, ...), the initials, and the numbers (phone, SSN, MRN, the birth date in its usual orders).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from typing import Any, NamedTuple

from cases import phi_patterns, textnorm
from cases.deid.safe_harbor import AGE_CEILING
from cases.phi_patterns import Span
from cases.quality import age_at

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


_MONTHS, _ORDINAL = phi_patterns.MONTHS, phi_patterns.ORDINAL
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
