"""Examples of every kind of identifier that note scrubbing must catch, and of clinical text it must keep.

Each example is a sentence with the identifier in braces: ``"Daughter {Maria} at the bedside."``
means that "Maria" must become a placeholder of the category's kind and the rest must stay as
written. ``PATIENT`` is the case's own patient (for the initials and the disguised own name).
"""

from __future__ import annotations

import re

PATIENT = {
    "mrn": "MRN-7717702",
    "name": "John Quincy Doe",
    "birth_date": "1931-05-24",
    "phone": "617-555-0100",
    "address": "12 Elm St, Cambridge, MA 02139",
}

# category: (placeholder kind, examples)
EXAMPLES: dict[str, tuple[str, list[str]]] = {
    "relatives and other people": (
        "NAME",
        [
            "Daughter {Maria} at the bedside.",
            "Her son, {Tom}, called twice.",
            "Lives with husband {Carlos Mendes}.",
            "{Rosa} (sister) brought her in.",
            "Spoke to {Ana}, her daughter, by phone.",
            "Mother-in-law {Edith} helps with meals.",
            "Neighbour {Kofi Mensah} found him on the floor.",
            "Emergency contact: {Linda Park}.",
            "Accompanied by {Jorge}.",
            "Seen by Dr. {Okafor} this morning.",
            "Works at {Acme Logistics} as a driver.",
            "Next of kin: {Wilhelmina Quast}.",
            "Her daughters {Maria and Ana} visit daily.",
        ],
    ),
    "dates in words": (
        "DATE",
        [
            "Admitted {May 24th} with cough.",
            "Seen on {24th of May} in clinic.",
            "Discharged {May 24th, 2024}.",
            "Follow-up {Monday, June 3}.",
            "Fell on {the twenty-fourth of May}.",
            "Symptoms since {March}.",
            "Last seen {Dec. 3}.",
            "Returned on the {28th}.",
            "Reviewed on {5/24} by the team.",
            "Fell at {Christmas 2023}.",
            "Started inhalers in {March 2024}.",
            "Booked for {24 May}.",
        ],
    ),
    "ages over 89 in words": (
        "AGE",
        [
            "She is {ninety-seven} years old.",
            "A {ninety-seven}-year-old widow.",
            "Aged {ninety nine}, lives alone.",
            "{A hundred and two} years old today.",
            "A {nonagenarian} with dementia.",
            "In her late {nineties}.",
            "Active in his {90s}.",
            "Frail, aged {95}.",
        ],
    ),
    "street addresses": (
        "ADDRESS",
        [
            "Lives at {twelve Elm Street}.",
            "Lives at {12 Elm St}, second floor.",
            "Moved to {Flat 3}, {14 Harbor View Road}.",
            "Lives on {Elm Street} with family.",
            "Lives in {Springfield} now.",
            "Post to {PO Box 77}.",
            "Lives at {One Main Street}.",
            "Stays at {Apt 4B} most nights.",
        ],
    ),
    "vehicle numbers": (
        "ID",
        [
            "Car VIN {1HGCM82633A004352} noted by police.",
            "Licence plate {7XYZ123} at the scene.",
            "Registration {AB12 CDE}, damaged.",
            "Parked car, plate {KX-5521}.",
        ],
    ),
    "device numbers": (
        "ID",
        [
            "Pacemaker serial {SN-4821-XK} checked.",
            "Pump S/N {77812-A} replaced.",
            "Device ID {D-99812} recorded.",
            "Phone IMEI {356938035643809} logged.",
            "Hub MAC address {00:1B:44:11:3A:B7}.",
        ],
    ),
    "account and health plan numbers": (
        "ID",
        [
            "Billing account #{A-4471} closed.",
            "Acct no. {88-1234} on hold.",
            "Policy number {XYZ123456} active.",
            "Member ID {W123456789} verified.",
            "Medicare {1EG4-TE5-MK73} on file.",
            "Insurance ID {BC-20011}.",
            "Health plan ID {HP4471} confirmed.",
        ],
    ),
    "licence and certificate numbers": (
        "ID",
        [
            "Licence {D1234567} shown.",
            "Driver's license {S530-4417-8832} on file.",
            "Prescriber DEA {AB1234563}.",
            "Certificate no. {C-7781} issued.",
            "Passport {X1234567} at reception.",
        ],
    ),
    "initials of the patient": (
        "NAME",
        [
            "{J.D.} seen in clinic.",
            "{JQD} for follow-up.",
            "Reviewed pt {JD} today.",
            "{J. Q. D.} agreed to the plan.",
            "Letter to {J. Doe} sent.",
        ],
    ),
    "the patient's name disguised": (
        "NAME",
        [
            "{Jo\u200bhn} seen today.",  # zero-width space
            "{D\u200doe} agreed.",  # zero-width joiner
            "Spoke with {Qu\u00adincy}.",  # soft hyphen
            "{J\u043ehn} is better.",  # Cyrillic o
            "Seen: {\uff2a\uff4f\uff48\uff4e}.",  # fullwidth letters
            "{Do\u0301e} improving.",  # combining accent
            "{Jo\u2060hn} slept well.",  # word joiner
            "{\ufeffDoe} called back.",  # byte order mark
            "{\u0408ohn} asked for water.",  # Cyrillic Je
        ],
    ),
    "the MRN disguised": (
        "MRN",
        [
            "{MRN 77\u200b17702} on the wristband.",
            "Chart: {MRN\u00a077-17702}.",
            "{MRN \uff17\uff17\uff11\uff17\uff17\uff10\uff12}.",
        ],
    ),
    "emails written out": (
        "EMAIL",
        [
            "Results to {maria dot khan at gmail dot com} please.",
            "Write to {m.khan(at)mail.org} for the letter.",
            "Contact {mkhan [at] clinic [dot] org} today.",
            "Reach her at {mkhan @ mail.com} after six.",
            "Daughter's address {J_DOE AT YAHOO DOT CO DOT UK} on file.",
            "Send to {q.r (at) s (dot) t (dot) nhs} only.",
            "Email {mkhan at gmail.com} for results.",
            "Her son's is {j.doe AT yahoo.co.uk} now.",
        ],
    ),
}

# Clinical text that must come out exactly as it went in.
KEPT = [
    "May consider increasing the dose.",
    "They march a mile daily.",
    "Parkinson disease, Graves disease, Hodgkin lymphoma, Down syndrome.",
    "WBC 14.2, BP 120/80, T 38.6, HR 112, SpO2 91%.",
    "ICD J18.9 and J45.909 coded.",
    "Cough for 2 weeks; ninety minutes of wheeze.",
    "Metformin 500 mg twice daily; insulin 10 units at night.",
    "Plate 3.5 mm fixed; skin tag 2 mm removed.",
    "6 Minute Walk Test: 320 m.",
    "Family history: father, Parkinson disease; Mother (Diabetes).",
    "Mother has hypertension; sister with asthma.",
    "ID consult recommended; follow up in 2 weeks.",
    "Grade 2 murmur; plan to repeat in 3 months.",
    "Account for 5% of cases.",
    "Patient may 2x daily use the inhaler.",
    "Lives at home with support.",
    "An 85-year-old man, 70 years of smoking.",
    "Moved to Texas last year.",
    "Pt was at home.No distress at rest.",  # a full stop without its space is not an email's dot
    "Seen at clinic. Com fine.",
    "Dyspnoea at rest.Co-morbid COPD.",
    "Sister at work.Com says hi.",
    # A full stop without its space before a short word: a country's domain only after a spelled
    # "dot" or a bracketed "(at)", never after a plain "at"/"@" and a ".".
    "Crackles at bases.no wheeze.",
    "Pain at night.no fever; seen at home.in bed.",
    "BP @ rest.NO acute change.",
    "Dyspnea at rest.US echo pending.",
    "Lesion at L4-L5.IT was stable.",
    "Insulin @ HS.CA 9.1 mg/dL.",
    "Started at 5mg.IN summary, at risk.no falls.",
]


def parse(example: str) -> tuple[str, list[str]]:
    """``(text without braces, the identifiers in braces)``."""
    return example.replace("{", "").replace("}", ""), re.findall(r"\{([^}]*)\}", example)


def expected(example: str, kind: str) -> str:
    """The example as scrubbing must leave it: each identifier in braces replaced by ``[kind]``."""
    return re.sub(r"\{[^}]*\}", f"[{kind}]", example)


# The categories found by their shape or context, whoever the patient is (``cases.phi_patterns``).
OWN_CATEGORIES = frozenset({"initials of the patient", "the patient's name disguised"})
PATTERN_EXAMPLES = [
    parse(example)[0]
    for category, (_kind, examples) in EXAMPLES.items()
    if category not in OWN_CATEGORIES
    for example in examples
]
