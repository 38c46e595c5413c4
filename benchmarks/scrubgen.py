"""Generated clinical notes with every kind of identifier planted, and where each one is.

A note is a list of pieces, each either clinical text (``category`` None: it must be kept) or an
identifier of a category (it must go). Every category that issue #10 saw reach ML engineers is
planted: relatives' and other people's names, dates and ages over 89 in words, street addresses in
words, vehicle, device, account and licence numbers, the patient's initials, the patient's name
written with invisible characters, look-alike letters, fullwidth letters or combining accents, the
MRN with a zero-width space; and the kinds the scrubber caught before (the patient's name, phone,
email, dates with digits). The clinical pieces hold the words a scrubber is tempted by: "May" the
verb, eponyms (Parkinson, Graves, Hodgkin, Down syndrome), lab values, doses, durations, ICD codes,
family histories ("father, Parkinson disease").

Deterministic for a seed (``random.Random`` and Faker pools seeded once), so every run measures the
same notes. ``tokens`` splits a text into the tokens that recall and precision count.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from faker import Faker

SEED = 20261010

# Kinds of identifier planted: (category, how often per note on average is decided by the generator).
CATEGORIES = (
    "relative name",
    "clinician name",
    "date in words",
    "age over 89 in words",
    "street address in words",
    "vehicle number",
    "device number",
    "account number",
    "licence number",
    "patient initials",
    "disguised patient name",
    "disguised MRN",
    "patient name",
    "patient phone or email",
    "date with digits",
)

CLINICAL = [
    "Presented with productive cough and fever.",
    "Temp 38.6, WBC 14.2, BP 120/80, HR 112, SpO2 91% on room air.",
    "May consider a short course of steroids.",
    "Known Parkinson disease and Graves disease; remote Hodgkin lymphoma.",
    "Sibling with Down syndrome.",
    "Family history: father, Parkinson disease; Mother (Diabetes).",
    "Mother has hypertension; sister with asthma.",
    "Amoxicillin 500 mg three times daily for 7 days.",
    "Cough for 2 weeks; ninety minutes of wheeze last night.",
    "ICD J18.9 coded; CRP 120.5 mg/L, lactate 2.1 mmol/L.",
    "6 Minute Walk Test: 320 m.",
    "Plate 3.5 mm fixation healed; skin tag 2 mm removed.",
    "ID consult recommended; review in 3 months.",
    "They march a mile daily with the walking group.",
    "Grade 2 systolic murmur at the left sternal edge.",
    "Lives at home with support; independent with stairs.",
    "Crackles at the right base; no edema.",
    "Na 140, K 4.1, Cr 1.2, glucose 5.6 mmol/L.",
    "Metformin 1 g twice daily; insulin 10 units at night.",
    "Smoked for 20 years, quit in the past.",
    "An 85-year-old neighbour case was discussed at the meeting.",
    "Plan: chest X-ray, sputum culture, follow-up in 2 weeks.",
]

_KIN = ["daughter", "son", "wife", "husband", "sister", "brother", "partner", "friend", "neighbour", "carer"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "tenth", "twelfth", "twentieth", "twenty-fourth"]
_UNITS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_STREET_TYPES = ["Street", "Road", "Avenue", "Lane", "Drive", "Court", "Place", "St", "Rd", "Ave"]
_NUMBER_WORDS = ["twelve", "seven", "forty-two", "one hundred", "nineteen", "eighty-one", "three"]
_INVISIBLE = ["\u200b", "\u200d", "\u200c", "\u00ad", "\u2060", "\ufeff"]
_LOOK_ALIKES = {
    "a": "\u0430",
    "e": "\u0435",
    "o": "\u043e",
    "p": "\u0440",
    "c": "\u0441",
    "x": "\u0445",
    "i": "\u0456",
    "A": "\u0410",
    "E": "\u0415",
    "O": "\u041e",
    "C": "\u0421",
    "M": "\u041c",
    "H": "\u041d",
    "T": "\u0422",
    "K": "\u041a",
}


@dataclass
class Note:
    """A generated note: its pieces ``(text, category or None)`` and the patient block it belongs to."""

    patient: dict[str, Any]
    encounter: dt.date
    pieces: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(text for text, _category in self.pieces)


class _Pools:
    def __init__(self, seed: int) -> None:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first = [fake.first_name() for _ in range(300)]
        self.last = [fake.last_name() for _ in range(400)]
        self.street = [fake.last_name() for _ in range(150)]
        self.cities = [fake.city() for _ in range(150)]
        self.companies = [fake.company() for _ in range(80)]


def _disguise(word: str, rng: random.Random) -> str:
    way = rng.choice(["invisible", "look-alike", "fullwidth", "accent", "mixed"])
    if way == "invisible":
        position = rng.randint(1, max(1, len(word) - 1))
        return word[:position] + rng.choice(_INVISIBLE) + word[position:]
    if way == "look-alike":
        swappable = [i for i, ch in enumerate(word) if ch in _LOOK_ALIKES]
        if not swappable:
            return word[:1] + "\u200b" + word[1:]
        i = rng.choice(swappable)
        return word[:i] + _LOOK_ALIKES[word[i]] + word[i + 1 :]
    if way == "fullwidth":
        return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in word)
    if way == "accent":
        i = rng.randrange(len(word))
        return word[: i + 1] + "\u0301" + word[i + 1 :]
    return _disguise(_disguise(word, rng), rng)


def _vin(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    return "1" + "".join(rng.choice(alphabet) for _ in range(15)) + str(rng.randint(0, 9))


def notes(n: int, *, seed: int = SEED) -> Iterator[Note]:
    """``n`` notes, each with a few clinical sentences and a handful of planted identifiers."""
    rng = random.Random(seed)
    pools = _Pools(seed)
    for _ in range(n):
        first, middle, last = rng.choice(pools.first), rng.choice(pools.first), rng.choice(pools.last)
        encounter = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 300))
        years = rng.choice([rng.randint(20, 89), rng.randint(90, 104)])
        birth = encounter - dt.timedelta(days=years * 365 + rng.randint(10, 300))
        mrn_digits = f"{rng.randint(1000000, 9999999)}"
        phone = f"617-555-{rng.randint(0, 9999):04d}"
        street = f"{rng.randint(1, 999)} {rng.choice(pools.street)} {rng.choice(_STREET_TYPES)}"
        patient = {
            "mrn": f"MRN-{mrn_digits}",
            "name": f"{first} {middle} {last}",
            "birth_date": birth.isoformat(),
            "sex": rng.choice(["female", "male"]),
            "zip": f"{rng.randint(10000, 99999)}",
            "phone": phone,
            "email": f"{first.lower()}.{last.lower()}@example.org",
            "address": f"{street}, {rng.choice(pools.cities)}, MA",
            "ssn": f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        }
        note = Note(patient, encounter)
        plants = [_plant(category, note, rng, pools, first, middle, last, mrn_digits) for category in CATEGORIES]
        rng.shuffle(plants)
        sentences = plants[: rng.randint(5, 9)] + [[(rng.choice(CLINICAL), None)] for _ in range(rng.randint(3, 6))]
        rng.shuffle(sentences)
        for sentence in sentences:
            note.pieces += [*sentence, (" ", None)]
        yield note


def _plant(
    category: str,
    note: Note,
    rng: random.Random,
    pools: _Pools,
    first: str,
    middle: str,
    last: str,
    mrn_digits: str,
) -> list[tuple[str, str | None]]:
    """One sentence with an identifier of ``category`` in it, as pieces."""

    def name() -> str:
        return rng.choice([rng.choice(pools.first), f"{rng.choice(pools.first)} {rng.choice(pools.last)}"])

    if category == "relative name":
        kin = rng.choice(_KIN)
        return rng.choice(
            [
                [(f"{kin.capitalize()} ", None), (name(), category), (" at the bedside.", None)],
                [(f"Her {kin}, ", None), (name(), category), (", called twice.", None)],
                [(name(), category), (f" ({kin}) brought the medication list.", None)],
                [("Lives with her " + kin + " ", None), (name(), category), (".", None)],
                [("Accompanied by ", None), (name(), category), (".", None)],
                [("Emergency contact: ", None), (name(), category), (".", None)],
                [("Next of kin: ", None), (name(), category), (".", None)],
                [("Works at ", None), (rng.choice(pools.companies), category), (" as a driver.", None)],
            ]
        )
    if category == "clinician name":
        return [("Seen by Dr. ", None), (rng.choice(pools.last), category), (" on the ward round.", None)]
    if category == "date in words":
        month, day = rng.choice(_MONTHS), rng.randint(1, 28)
        suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd"}.get(day, "th")
        return rng.choice(
            [
                [("Admitted ", None), (f"{month} {day}{suffix}", category), (" with cough.", None)],
                [("Seen on ", None), (f"{day}{suffix} of {month}", category), (" in clinic.", None)],
                [("Discharged ", None), (f"{month} {day}, 2025", category), (".", None)],
                [("Fell on ", None), (f"the {rng.choice(_ORDINALS)} of {month}", category), (".", None)],
                [("Symptoms since ", None), (month, category), (".", None)],
                [("Started inhalers in ", None), (f"{month} 2024", category), (".", None)],
                [("Follow-up booked for ", None), (f"{day} {month}", category), (".", None)],
            ]
        )
    if category == "age over 89 in words":
        units = rng.choice(_UNITS)
        return rng.choice(
            [
                [("She is ", None), (f"ninety-{units}", category), (" years old.", None)],
                [("A ", None), (f"ninety-{units}", category), ("-year-old widower.", None)],
                [("Aged ", None), (f"ninety {units}", category), (", lives alone.", None)],
                [("Now ", None), (f"one hundred and {units}", category), (" years old.", None)],
                [("A ", None), ("nonagenarian", category), (" with dementia.", None)],
                [("Active in his late ", None), ("nineties", category), (".", None)],
            ]
        )
    if category == "street address in words":
        street = f"{rng.choice(pools.street)} {rng.choice(_STREET_TYPES[:7])}"
        return rng.choice(
            [
                [("Lives at ", None), (f"{rng.choice(_NUMBER_WORDS)} {street}", category), (".", None)],
                [
                    ("Moved to ", None),
                    (f"Flat {rng.randint(1, 40)}", category),
                    (", ", None),
                    (f"{rng.randint(2, 300)} {street}", category),
                    (".", None),
                ],
                [("Lives on ", None), (f"{rng.choice(pools.street)} Street", category), (" with family.", None)],
                [("Lives in ", None), (rng.choice(pools.cities), category), (" now.", None)],
                [("Post to ", None), (f"PO Box {rng.randint(10, 999)}", category), (".", None)],
            ]
        )
    if category == "vehicle number":
        letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3))
        plate = f"{rng.randint(1, 9)}{letters}{rng.randint(100, 999)}"
        return rng.choice(
            [
                [("Car VIN ", None), (_vin(rng), category), (" noted by police.", None)],
                [("Licence plate ", None), (plate, category), (" at the scene.", None)],
            ]
        )
    if category == "device number":
        return rng.choice(
            [
                [("Pacemaker serial ", None), (f"SN-{rng.randint(1000, 9999)}-XK", category), (" checked.", None)],
                [("Phone IMEI ", None), (f"35{rng.randint(10**12, 10**13 - 1)}", category), (" logged.", None)],
                [("Device ID ", None), (f"D-{rng.randint(10000, 99999)}", category), (" recorded.", None)],
                [
                    ("Hub MAC address ", None),
                    (":".join(f"{rng.randint(0, 255):02X}" for _ in range(6)), category),
                    (".", None),
                ],
            ]
        )
    if category == "account number":
        return rng.choice(
            [
                [("Billing account #", None), (f"A-{rng.randint(1000, 9999)}", category), (" closed.", None)],
                [("Member ID ", None), (f"W{rng.randint(10**8, 10**9 - 1)}", category), (" verified.", None)],
                [
                    ("Medicare ", None),
                    (f"1EG4-TE{rng.randint(1, 9)}-MK{rng.randint(10, 99)}", category),
                    (" on file.", None),
                ],
                [("Policy number ", None), (f"XYZ{rng.randint(100000, 999999)}", category), (" active.", None)],
            ]
        )
    if category == "licence number":
        return rng.choice(
            [
                [("Licence ", None), (f"D{rng.randint(10**6, 10**7 - 1)}", category), (" shown.", None)],
                [("Prescriber DEA ", None), (f"AB{rng.randint(10**6, 10**7 - 1)}", category), (".", None)],
                [("Passport ", None), (f"X{rng.randint(10**6, 10**7 - 1)}", category), (" at reception.", None)],
            ]
        )
    if category == "patient initials":
        initials = first[0] + middle[0] + last[0]
        return rng.choice(
            [
                [(f"{first[0]}.{last[0]}.", category), (" seen in clinic.", None)],
                [(initials, category), (" for follow-up.", None)],
                [("Reviewed pt ", None), (first[0] + last[0], category), (" today.", None)],
            ]
        )
    if category == "disguised patient name":
        return [(_disguise(rng.choice([first, last]), rng), category), (" seen today.", None)]
    if category == "disguised MRN":
        cut = rng.randint(1, len(mrn_digits) - 1)
        return [
            (f"MRN {mrn_digits[:cut]}{rng.choice(_INVISIBLE)}{mrn_digits[cut:]}", category),
            (" on the wristband.", None),
        ]
    if category == "patient name":
        return [(rng.choice([f"{first} {last}", last, first]), category), (" agreed to the plan.", None)]
    if category == "patient phone or email":
        return rng.choice(
            [
                [("Call ", None), (note.patient["phone"], category), (" with results.", None)],
                [("Email ", None), (note.patient["email"], category), (".", None)],
            ]
        )
    # date with digits
    return [("Seen on ", None), (note.encounter.strftime("%m/%d/%Y"), category), (".", None)]


def _is_word_character(ch: str) -> bool:
    # Invisible characters and combining marks belong to the word they sit in.
    return ch.isalnum() or unicodedata.category(ch) in ("Mn", "Me", "Cf")


def tokens(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """The tokens of ``text`` as ``(start, end)`` (plus ``offset``): runs of letters and digits,
    with the invisible characters and marks inside them, holding at least one letter or digit."""
    found: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate([*text, " "]):
        if _is_word_character(ch):
            if start is None:
                start = i
        elif start is not None:
            if any(c.isalnum() for c in text[start:i]):
                found.append((offset + start, offset + i))
            start = None
    return found
