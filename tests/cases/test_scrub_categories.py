"""Note scrubbing, category by category: what reached ML engineers before, and what must stay.

Every example of ``tests/cases/phi_examples.py`` is scrubbed as a note of the patient there: the
identifiers in braces become placeholders of the category's kind and nothing else changes. The
property tests disguise a known identifier with invisible characters and look-alike letters and
check that it never gets through.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cases import textnorm
from cases.deid import scrubbing
from tests.cases.phi_examples import EXAMPLES, KEPT, PATIENT, expected

ENCOUNTER = dt.date(2026, 3, 10)
CASES = [
    pytest.param(kind, example, id=f"{category}: {example}")
    for category, (kind, examples) in EXAMPLES.items()
    for example in examples
]


@pytest.mark.parametrize(("kind", "example"), CASES)
def test_each_identifier_becomes_a_placeholder_and_the_rest_stays(kind, example):
    text = example.replace("{", "").replace("}", "")
    assert scrubbing.scrub_text(text, PATIENT, encounter_date=ENCOUNTER) == expected(example, kind)


@pytest.mark.parametrize("text", KEPT)
def test_clinical_words_stay_as_written(text):
    assert scrubbing.scrub_text(text, PATIENT, encounter_date=ENCOUNTER) == text


def test_the_text_around_a_disguised_identifier_keeps_its_own_characters():
    """Matching runs on the normal form; the replacement is made in the text as written."""
    fever = "\uff26\uff45\uff56\uff45\uff52 \uff13\uff18.\uff16"  # fullwidth "Fever 38.6"
    note = f"{fever} \u2014 Jo\u200bhn Do\u0301e, caf\u00e9 au lait spots, \u00bd tablet."
    assert (
        scrubbing.scrub_text(note, PATIENT) == f"{fever} \u2014 [NAME] [NAME], caf\u00e9 au lait spots, \u00bd tablet."
    )


def test_the_residual_scan_finds_what_the_old_scrubber_let_through():
    leaked = {
        "mrn": ("MRN 77\u200b17702 on file", "MRN"),  # the old scrubber left "[MRN]17702"
        "relative": ("daughter Maria called", "NAME"),
        "date": ("admitted May 24th", "DATE"),
        "age": ("ninety-seven years old", "AGE"),
        "name": ("J\u043ehn is better", "NAME"),
    }
    findings = scrubbing.residual_identifiers(
        [(field, text) for field, (text, _kind) in leaked.items()], PATIENT, encounter_date=ENCOUNTER
    )
    for field, (_text, kind) in leaked.items():
        assert {"field": field, "kind": kind} in findings


# --- Disguises never let a known identifier through --------------------------------------------

INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u00ad",  # soft hyphen
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u200e",  # left-to-right mark
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\ufe0f",  # variation selector 16
    "\u180e",  # Mongolian vowel separator
    "\U000e0041",  # tag letter A
]
# Look-alikes of the letters of "John", "Quincy" and "Doe" (Cyrillic, Greek, fullwidth, Latin with marks).
LOOK_ALIKES = {
    "J": ["\u0408", "\uff2a", "\u0134"],
    "o": ["\u043e", "\u03bf", "\uff4f", "\u00f6", "\u00f3"],
    "h": ["\u04bb", "\uff48"],
    "n": ["\uff4e", "\u00f1"],
    "Q": ["\uff31"],
    "u": ["\uff55", "\u00fc"],
    "i": ["\u0456", "\uff49", "\u00ed"],
    "c": ["\u0441", "\uff43", "\u00e7"],
    "y": ["\u0443", "\uff59", "\u00fd"],
    "D": ["\uff24"],
    "e": ["\u0435", "\uff45", "\u00e9"],
}
IDENTIFIERS = ["John", "Quincy", "Doe", "John Quincy Doe", "MRN-7717702", "617-555-0100"]


@st.composite
def disguised(draw, identifier: str) -> str:
    out = []
    for ch in identifier:
        if ch in LOOK_ALIKES and draw(st.booleans()):
            ch = draw(st.sampled_from(LOOK_ALIKES[ch]))
        elif ch.isdigit() and draw(st.integers(0, 4)) == 0:
            ch = chr(0xFF10 + int(ch))  # fullwidth digit
        out.append(ch)
        if draw(st.integers(0, 2)) == 0:
            out.append(draw(st.sampled_from(INVISIBLE)))
    return "".join(out)


@settings(max_examples=400, deadline=None)
@given(st.data(), st.sampled_from(IDENTIFIERS), st.sampled_from(["{} seen today.", "Spoke with {}.", "({})", "{}"]))
def test_invisible_characters_and_look_alikes_never_let_a_known_identifier_through(data, identifier, template):
    written = data.draw(disguised(identifier))
    scrubbed = scrubbing.scrub_text(template.format(written), PATIENT)
    leftover = textnorm.normal_text(re.sub(r"\[[A-Z]+\]", " ", scrubbed)).casefold()
    assert identifier.casefold() not in leftover
    for part in identifier.replace("-", " ").split():
        if len(part) >= 3:
            assert part.casefold() not in leftover, (written, scrubbed)
    assert "[" in scrubbed  # replaced, not just mangled
