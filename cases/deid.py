"""De-identification: the only form of a case that leaves the ``cases`` app.

Policy (HIPAA Safe Harbor, see DESIGN.md):

- direct identifiers (name, MRN, SSN, phone, email, address, external id, any unknown patient or
  record key) are dropped;
- the patient becomes ``HMAC-SHA256(PSEUDONYM_KEY, source, mrn)``: stable under one key, useless
  without it; the key lives in the environment only;
- dates become years; the age at the encounter is kept, with every age over 89 reported as the
  single band "90+"; ZIP becomes its first three digits, or "000" for restricted prefixes;
- free text is scrubbed of the patient's own identifiers and of anything that looks like one,
  each replaced by a typed placeholder such as ``[NAME]``.

Bump ``POLICY_VERSION`` whenever the output of this module changes for the same input: every
de-identified record and every dataset records the version that produced it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any

from cases.interchange import CaseRecord
from cases.quality import age_at

POLICY_VERSION = "safe-harbor-2026.1"

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
_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)),
    ("URL", re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+", re.IGNORECASE)),
    ("IP", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    ("IP", re.compile(r"\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b", re.IGNORECASE)),
    ("SSN", re.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")),
    ("DATE", re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")),
    ("DATE", re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b")),
    ("DATE", re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b", re.IGNORECASE)),
    ("DATE", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS},?\s+\d{{4}}\b", re.IGNORECASE)),
    ("MRN", re.compile(r"\b(?:MRN|medical record(?: number| no\.?)?)[\s:#-]*[A-Z0-9-]*\d[A-Z0-9-]*", re.IGNORECASE)),
    (
        "PHONE",
        re.compile(
            r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)[\s.-]?|\d{2,5}[\s.-])\d{2,4}[\s.-]?\d{3,4}(?![\w.]|\.\d)"
        ),
    ),
    (
        "ADDRESS",
        re.compile(
            r"\b\d{1,6}\s+(?:[A-Z][a-z]+\s+){1,3}(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Ln|Lane|Dr|Drive|"
            r"Way|Ct|Court|Pl|Place|Ter|Terrace|Pkwy|Parkway|Sq|Square|Hwy|Highway)\b\.?"
        ),
    ),
    ("ID", re.compile(r"\b[A-Z]{0,4}-?\d{6,}\b")),
]

_SPLIT_NAME = re.compile(r"[\s,.;:()\"]+")
_NAME_STOPWORDS = frozenset(
    {"mr", "mrs", "ms", "dr", "jr", "sr", "ii", "iii", "iv", "md", "phd", "dds", "the", "of", "and"}
)


def pseudonym(source: str, mrn: str, *, key: str | bytes) -> str:
    """HMAC-SHA256 of the patient's source and MRN under the pseudonym key (hex).

    A unit separator joins the two so ("ab", "c") and ("a", "bc") cannot collide.
    """
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


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _flexible_digits(digits: str) -> re.Pattern[str]:
    """A pattern for a digit string written with any separators ("617-555-0100", "617 555 0100")."""
    return re.compile(r"(?<!\d)\(?" + r"[\s().+-]*".join(re.escape(d) for d in digits) + r"(?!\d)")


def own_identifier_patterns(patient: dict[str, Any]) -> list[tuple[str, re.Pattern[str]]]:
    """Patterns for this patient's own identifiers, longest first."""
    literal: list[tuple[str, str]] = []
    name = str(patient.get("name") or "")
    if name.strip():
        literal.append(("NAME", name.strip()))
        for part in _SPLIT_NAME.split(name):
            if len(part) >= 2 and part.lower() not in _NAME_STOPWORDS:
                literal.append(("NAME", part))
    for key, kind in (("mrn", "MRN"), ("ssn", "SSN"), ("email", "EMAIL"), ("phone", "PHONE")):
        value = str(patient.get(key) or "").strip()
        if value:
            literal.append((kind, value))
    address = str(patient.get("address") or "").strip()
    if address:
        literal.append(("ADDRESS", address))
        for segment in address.split(","):
            segment = segment.strip()
            # Keep two-letter state codes: Safe Harbor allows the state.
            if len(segment) >= 3:
                literal.append(("ADDRESS", segment))
    birth = str(patient.get("birth_date") or "")
    if birth:
        literal.append(("DATE", birth))

    literal.sort(key=lambda item: len(item[1]), reverse=True)
    patterns = [(kind, re.compile(rf"(?<!\w){re.escape(text)}(?!\w)", re.IGNORECASE)) for kind, text in literal]
    # Numbers written with other separators than in the record (phone, SSN, MRN digits).
    for key, kind in (("phone", "PHONE"), ("ssn", "SSN"), ("mrn", "MRN")):
        digits = _digits(str(patient.get(key) or ""))
        if len(digits) >= 5:
            patterns.append((kind, _flexible_digits(digits)))
            if kind == "PHONE" and len(digits) > 10:
                patterns.append((kind, _flexible_digits(digits[-10:])))  # without the country code
    return patterns


def scrub_text(text: str, patient: dict[str, Any]) -> str:
    """Replace the patient's own identifiers, then pattern-matched ones, by typed placeholders."""
    if not text:
        return text
    for kind, pattern in own_identifier_patterns(patient):
        text = pattern.sub(f"[{kind}]", text)
    for kind, pattern in PATTERNS:
        text = pattern.sub(f"[{kind}]", text)
    return text


def deidentify(record: CaseRecord, *, key: str | bytes) -> dict[str, Any]:
    """The de-identified form of a case record: what datasets, exports and ML staff see."""
    patient = record.patient
    birth_raw = patient.get("birth_date")
    age: int | str | None = None
    band: str | None = None
    if birth_raw:
        years = age_at(dt.date.fromisoformat(birth_raw), record.encounter_date)
        if years >= 0:
            band = age_band(years)
            age = OLDEST_BAND if years > AGE_CEILING else years
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
        "symptoms": list(record.symptoms),
        "note": scrub_text(record.note, patient),
        "diagnosis": {
            "code": record.diagnosis_code,
            "label": scrub_text(record.diagnosis_label, patient),
        },
    }


def residual_identifiers(texts: Iterable[tuple[str, str]], patient: dict[str, Any]) -> list[dict[str, str]]:
    """Scan de-identified text for anything that still looks like an identifier.

    ``texts`` are ``(field, text)`` pairs. Returns findings as ``{"field", "kind"}``, never the
    matched text itself, so a report about a leak does not leak.
    """
    findings: list[dict[str, str]] = []
    checks = own_identifier_patterns(patient) + PATTERNS
    for field_name, text in texts:
        if not text:
            continue
        for kind, pattern in checks:
            if pattern.search(text):
                findings.append({"field": field_name, "kind": kind})
    return findings
