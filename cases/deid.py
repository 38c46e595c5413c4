"""De-identification: the only form of a case that leaves the ``cases`` app.

Policy (HIPAA Safe Harbor, see DESIGN.md):

- direct identifiers (name, MRN, SSN, phone, email, address, external id, any unknown patient or
  record key) are dropped;
- the patient becomes ``HMAC-SHA256(PSEUDONYM_KEY, source, mrn)``: stable under one key, useless
  without it; the key lives in the environment only;
- dates become years; the age at the encounter is kept, with every age over 89 reported as the
  single band "90+"; ZIP becomes its first three digits, or "000" for restricted prefixes;
- free text (the note, the diagnosis label and the symptoms) is scrubbed of the patient's own
  identifiers and of anything that looks like one, each replaced by a typed placeholder such as
  ``[NAME]``. The patient's own identifiers are matched loosely: in any letter case, with or
  without accents, apostrophes and hyphens, numbers with any separators, the birth date in the
  usual written forms, and for patients over 89 the birth year alone.

Scrubbing errs on the side of privacy: a bare number of six or more digits is taken for an
identifier (it may be an MRN or an account number), even when it was a lab value written without
thousands separators. Decimal values ("Temp 38.6"), ratios ("BP 120/80") and percentages
("SpO2 91%") survive.

Bump ``POLICY_VERSION`` whenever the output of this module changes for the same input: every
de-identified record and every dataset records the version that produced it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from cases.interchange import CaseRecord
from cases.quality import age_at

POLICY_VERSION = "safe-harbor-2026.2"

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

# --- Patterns for identifiers in free text -------------------------------------------------------
# Order matters: longer, more specific shapes first, so an email is not half-eaten as a URL.
_MONTH_NAMES = (
    ("jan", "uary"),
    ("feb", "ruary"),
    ("mar", "ch"),
    ("apr", "il"),
    ("may", ""),
    ("jun", "e"),
    ("jul", "y"),
    ("aug", "ust"),
    ("sep", "tember"),
    ("oct", "ober"),
    ("nov", "ember"),
    ("dec", "ember"),
)


def _month_pattern(short: str, rest: str) -> str:
    if short == "sep":
        return r"sep(?:t(?:ember)?)?\.?"
    return rf"{short}(?:{rest})?\.?" if rest else short


_MONTHS = "(?:" + "|".join(_month_pattern(short, rest) for short, rest in _MONTH_NAMES) + ")"
_ORDINAL = r"(?:st|nd|rd|th)?"
_HEX = r"[0-9a-f]{1,4}"
_IPV6 = (
    r"(?<![\w:.])(?:"
    rf"(?:{_HEX}:){{7}}{_HEX}"
    rf"|(?:{_HEX}:){{1,7}}:"
    rf"|(?:{_HEX}:){{1,6}}:{_HEX}"
    rf"|(?:{_HEX}:){{1,5}}(?::{_HEX}){{1,2}}"
    rf"|(?:{_HEX}:){{1,4}}(?::{_HEX}){{1,3}}"
    rf"|(?:{_HEX}:){{1,3}}(?::{_HEX}){{1,4}}"
    rf"|(?:{_HEX}:){{1,2}}(?::{_HEX}){{1,5}}"
    rf"|{_HEX}:(?::{_HEX}){{1,6}}"
    rf"|:(?::{_HEX}){{1,7}}"
    r")(?![\w:])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)),
    # A URL does not end with the punctuation of the sentence around it.
    ("URL", re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]", re.IGNORECASE)),
    ("IP", re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d]|\.\d)")),
    ("IP", re.compile(_IPV6, re.IGNORECASE)),
    ("SSN", re.compile(r"(?<![\d.])\d{3}[-. ]\d{2}[-. ]\d{4}(?!\d|\.\d)")),
    ("DATE", re.compile(r"(?<![\d.])\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?!\d|\.\d)")),
    ("DATE", re.compile(r"(?<![\d.])\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})(?!\d|\.\d)")),
    # "March 14, 1957", "Mar. 14 1957", "Mar-14-1957"
    ("DATE", re.compile(rf"\b{_MONTHS}[\s./-]*\d{{1,2}}{_ORDINAL}(?:\s*,\s*|[\s./-]+)\d{{4}}\b", re.IGNORECASE)),
    # "14 March 1957", "14th of March, 1957", "14-Mar-1957", "14Mar1957", "14-Mar-57"
    (
        "DATE",
        re.compile(
            rf"\b\d{{1,2}}{_ORDINAL}[\s./-]*(?:of\s+)?{_MONTHS}(?:[\s,./-]*\d{{4}}|[./-]\d{{2}})\b", re.IGNORECASE
        ),
    ),
    (
        "MRN",
        re.compile(
            r"\b(?:MRN|MR#|medical record(?: number| no\.?)?|chart(?: number| no\.?| #))[\s:#-]*[A-Z0-9-]*\d[A-Z0-9-]*",
            re.IGNORECASE,
        ),
    ),
    # International numbers in groups of any size: "+33 1 23 45 67 89", "+44 (0)20 7946 0958".
    ("PHONE", re.compile(r"(?<!\w)\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){3,6}(?!\w|\.\d)")),
    (
        "PHONE",
        re.compile(
            r"(?<!\w)(?<!\d\.)(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)[\s.-]?|\d{2,5}[\s.-])\d{2,4}[\s.-]?\d{3,4}"
            r"(?!\w|\.\d)"
        ),
    ),
    (
        "ADDRESS",
        re.compile(
            r"\b\d{1,6}\s+(?:[A-Z][\w'\u2019-]*\s+){1,3}(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Ln|Lane|Dr|Drive|"
            r"Way|Ct|Court|Pl|Place|Ter|Terrace|Pkwy|Parkway|Sq|Square|Hwy|Highway)\b\.?"
        ),
    ),
    # Safe Harbor: an age over 89 is itself an identifier ("a 97-year-old", "aged 95").
    (
        "AGE",
        re.compile(
            r"(?<![\w.])(?:9\d|1[0-4]\d)(?=\s*-?\s*(?:years?|yrs?|y/?o\b|y\.o\.))"
            r"|(?:(?<=\bage )|(?<=\baged )|(?<=\bage: )|(?<=\bage:))(?:9\d|1[0-4]\d)\b",
            re.IGNORECASE,
        ),
    ),
    ("ID", re.compile(r"\b[A-Z]{0,4}-?\d{6,}\b", re.IGNORECASE)),
]

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
_FOLD = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "TH",
        "\u0131": "i",  # dotless i
    }
)


def fold(text: str) -> str:
    """``text`` without accents and special letters: "Łukasz Müller-Øberg" -> "Lukasz Muller-Oberg"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).translate(_FOLD)


def _loose(text: str) -> str:
    """A regex for ``text`` as people retype it: any accents, apostrophes, hyphens and spacing."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in _APOSTROPHES:
            out.append(f"[{re.escape(_APOSTROPHES)}]?")
        elif ch in _DASHES:
            out.append(rf"[\s{re.escape(_DASHES)}]*")
        elif ch.isspace():
            out.append(r"\s+")
        elif ch in ".,":
            out.append(rf"{re.escape(ch)}?")
        else:
            # Also the forms that case mapping expands ("ß" -> "SS", "İ" -> "i̇"): IGNORECASE
            # compares one character with one character only.
            expanded = [form for form in (ch.lower(), ch.upper()) if len(form) > 1]
            forms = dict.fromkeys(form for form in (ch, fold(ch), *expanded) if form)
            escaped = [re.escape(form) for form in forms]
            out.append(escaped[0] if len(escaped) == 1 else f"(?:{'|'.join(escaped)})")
    return "".join(out)


def _flexible(chars: str, *, separators: str = r"[\s().+/-]*") -> str:
    """A regex for a digit (or letter-and-digit) string written with any separators."""
    return separators.join(re.escape(ch) for ch in chars)


def _bounded(pattern: str) -> str:
    return rf"(?<!\w)(?:{pattern})(?!\w)"


def _name_parts(name: str) -> list[str]:
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
    return parts


def _main_phone(phone: str) -> str:
    """The phone number without an extension ("617-555-0100 x1234" -> "617-555-0100")."""
    return re.split(r"(?i)\s*(?:x|ext\.?|extension)\s*\d", phone, maxsplit=1)[0]


def _parse_date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _literal_alternatives(patient: dict[str, Any]) -> list[tuple[str, str]]:
    """``(kind, regex)`` for this patient's identifiers written as words, the longest first."""
    literal: list[tuple[str, str, str]] = []  # (kind, text, regex)

    def add(kind: str, text: str, pattern: str | None = None) -> None:
        literal.append((kind, text, pattern or _loose(text)))

    name = str(patient.get("name") or "").strip()
    if name:
        add("NAME", name)
        for part in _name_parts(name):
            add("NAME", part)
    for key, kind in (("mrn", "MRN"), ("ssn", "SSN"), ("phone", "PHONE")):
        value = str(patient.get(key) or "").strip()
        if value:
            add(kind, value, re.escape(value))
    email = str(patient.get("email") or "").strip()
    if email:
        add("EMAIL", email, re.escape(email))
        local = email.split("@", 1)[0]
        if len(local) >= 4:
            add("EMAIL", local, re.escape(local))
    address = str(patient.get("address") or "").strip()
    if address:
        add("ADDRESS", address)
        for segment in re.split(r"[,\n;]", address):
            segment = segment.strip()
            # Keep two-letter state codes: Safe Harbor allows the state.
            if len(segment) >= 3:
                add("ADDRESS", segment)
    zip_code = str(patient.get("zip") or "").strip()
    if zip_code:
        add("ZIP", zip_code, re.escape(zip_code))
    literal.sort(key=lambda item: len(item[1]), reverse=True)
    alternatives = [(kind, _bounded(pattern)) for kind, _text, pattern in literal]

    # An MRN with letters, written with other separators or none ("MRN 448812", "mrn448812").
    alnum = re.sub(r"[\W_]", "", str(patient.get("mrn") or ""))
    if len(alnum) >= 4 and not alnum.isdigit():
        alternatives.append(("MRN", rf"(?<![^\W_])(?:{_flexible(alnum, separators=r'[\s.:#/-]*')})(?![^\W_])"))
    zip_digits = re.sub(r"\D", "", zip_code)
    if len(zip_digits) >= 5:
        alternatives.append(("ZIP", rf"(?<!\d){zip_digits[:5]}(?:[\s-]?\d{{4}})?(?!\d)"))
    return alternatives


def _number_forms(
    patient: dict[str, Any], born: dt.date | None, encounter_date: dt.date | None
) -> list[tuple[str, str]]:
    """``(kind, digits)`` of this patient's numbers, to be found whatever separates the digits."""
    mrn_digits = re.sub(r"\D", "", str(patient.get("mrn") or ""))
    phone = re.sub(r"\D", "", _main_phone(str(patient.get("phone") or "")))
    forms = [
        ("PHONE", phone),
        # Without the country code or trunk prefix, and the local number alone.
        *(("PHONE", phone[-length:]) for length in (10, 7) if len(phone) > length),
        ("SSN", re.sub(r"\D", "", str(patient.get("ssn") or ""))),
        ("MRN", mrn_digits),
    ]
    forms = [(kind, digits) for kind, digits in forms if len(digits) >= 5]
    if born is not None:
        y, m, d = f"{born.year}", (f"{born.month:02d}", f"{born.month}"), (f"{born.day:02d}", f"{born.day}")
        dates = {f"{y}{mm}{dd}" for mm in m for dd in d}
        dates |= {f"{mm}{dd}{yy}" for mm in m for dd in d for yy in (y, y[2:])}
        dates |= {f"{dd}{mm}{yy}" for mm in m for dd in d for yy in (y, y[2:])}
        forms += [("DATE", digits) for digits in sorted(dates) if len(digits) >= 6]
        # Safe Harbor: for a patient over 89 even the year of birth is an identifier.
        if encounter_date is not None and age_at(born, encounter_date) > AGE_CEILING:
            forms.append(("DATE", y))
    forms = list(dict.fromkeys(forms))
    forms.sort(key=lambda item: len(item[1]), reverse=True)
    return forms


# A run of digits with the separators people put into phone numbers, SSNs and dates.
_NUMBER_RUN = re.compile(r"[(+]*\d(?:[\s().+/-]*\d)*")
_DIGITS = re.compile(r"\d+")
_MONTH_NUMBERS = {short: number for number, (short, _rest) in enumerate(_MONTH_NAMES, start=1)}
_MONTH_DAY = re.compile(
    rf"\b(?P<m1>{_MONTHS})[\s./,-]*(?P<d1>\d{{1,2}}){_ORDINAL}(?:[\s./,-]*(?P<y1>\d{{4}}|'?\d{{2}}))?\b"
    rf"|\b(?P<d2>\d{{1,2}}){_ORDINAL}[\s./,-]*(?:of\s+)?(?P<m2>{_MONTHS})(?:[\s./,-]*(?P<y2>\d{{4}}|'?\d{{2}}))?\b",
    re.IGNORECASE,
)


class _OwnIdentifiers:
    """A patient's identifiers, prepared once per record.

    Words (names, places, emails) become one compiled regex. Numbers are not turned into
    regexes (compiling is the slow part): every digit run of the text is compared with the
    patient's numbers, digit by digit, whatever separates the digits. The birth date written
    with a month name is recognised by one shared regex and compared with the patient's.
    """

    def __init__(self, patient: dict[str, Any], encounter_date: dt.date | None) -> None:
        alternatives = _literal_alternatives(patient)
        self.kinds = {f"k{index}": kind for index, (kind, _pattern) in enumerate(alternatives)}
        self.regex: re.Pattern[str] | None = None
        if alternatives:
            joined = "|".join(f"(?P<k{index}>{pattern})" for index, (_kind, pattern) in enumerate(alternatives))
            self.regex = re.compile(joined, re.IGNORECASE)
        self.born = _parse_date(patient.get("birth_date"))
        self.numbers = _number_forms(patient, self.born, encounter_date)

    def _literal(self, match: re.Match[str], found: list[str]) -> str:
        kind = self.kinds[match.lastgroup or ""]
        found.append(kind)
        return f"[{kind}]"

    def _number_run(self, match: re.Match[str], found: list[str]) -> str:
        run = match.group()
        groups = [(group.start(), group.end()) for group in _DIGITS.finditer(run)]
        pieces: list[str] = []
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
                    pieces += [run[cursor:start], f"[{kind}]"]
                    cursor, index = stop, end
                    found.append(kind)
                    break
            else:
                index += 1
        return "".join([*pieces, run[cursor:]]) if pieces else run

    def _month_day(self, match: re.Match[str], found: list[str]) -> str:
        born = self.born
        assert born is not None
        month = _MONTH_NUMBERS[(match["m1"] or match["m2"])[:3].lower()]
        day = int(match["d1"] or match["d2"])
        year = (match["y1"] or match["y2"] or "").lstrip("'")
        if (month, day) == (born.month, born.day) and year in ("", str(born.year), f"{born.year % 100:02d}"):
            found.append("DATE")
            return "[DATE]"
        return match.group()

    def _own(self, text: str, found: list[str]) -> str:
        text = unicodedata.normalize("NFC", text)
        if self.regex is not None:
            text = self.regex.sub(lambda match: self._literal(match, found), text)
        if self.born is not None:
            text = _MONTH_DAY.sub(lambda match: self._month_day(match, found), text)
        if self.numbers:
            text = _NUMBER_RUN.sub(lambda match: self._number_run(match, found), text)
        return text

    def scrub(self, text: str) -> str:
        if not text:
            return text
        text = self._own(text, [])
        for kind, pattern in PATTERNS:
            text = pattern.sub(f"[{kind}]", text)
        return text

    def kinds_in(self, text: str) -> list[str]:
        found: list[str] = []
        self._own(text, found)
        found += [kind for kind, pattern in PATTERNS if pattern.search(text)]
        return list(dict.fromkeys(found))


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
