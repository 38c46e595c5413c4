"""Identifiers recognised by their shape or their context, whoever the patient is.

The patient's own identifiers (their name, MRN, birth date, ...) are matched in ``cases.deid.scrubbing``;
this module finds the rest of what Safe Harbor lists: phone numbers, emails, URLs, IP and MAC
addresses, SSNs, record and account numbers, dates (with digits or in words), ages over 89 (with
digits or in words), street addresses (with a number, a number in words, a flat or a PO box),
vehicle, device, licence and certificate numbers, and the names of other people (relatives,
household members, employers, clinicians) where the words around them say that a name follows.

Each entry of ``PATTERNS`` is ``(kind, needs, regex)``. A regex with a group named ``id`` replaces
only that group ("daughter Maria": only "Maria"); others replace the whole match. ``needs`` is
what a text must contain for the regex to match at all, tested first because it is cheap (most
texts lack a digit, and most lack every word that can introduce a name): a digit, a digit and a
dot, the start of a URL, or one of a few lower-case words (``Needs``). tests/cases/test_deid.py
holds each regex to its needs.

Precision: words that only look like identifiers stay. Eponyms (Parkinson, Graves, Hodgkin, Down
syndrome) are not preceded by a kinship or role word; "May" is a month only with a capital and a
day, a year or a preposition before it; "ninety minutes" and "2 weeks" are not ages;
measurements ("WBC 14.2", "BP 120/80", "T 38.6") have no label of an identifier before them. The
names of clinicians ("Dr. Lee") are removed too: Safe Harbor does not ask for it, but a rare
specialist's name narrows a patient down and the model learns nothing from it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

Span = tuple[int, int, str]  # start, end, kind


class Needs(NamedTuple):
    """What a text must hold for a regex to match at all, tested first because it is cheap.

    ``digit``: a digit; ``dot``: a "."; ``url``: "://" or "www."; ``literal``: that string;
    ``words``: one of these strings in the lower-case text (each regex's own, in its every match); ``anchors``:
    every match starts where one of these strings starts in the lower-case text, so the regex is
    tried only there (``re.match`` at each place, instead of a search of the whole text);
    ``context``: a regex that every match ends with, looked for first, and the regex searched only
    in the ``CONTEXT_WINDOW`` characters before each place it matches.
    """

    digit: bool = False
    dot: bool = False
    url: bool = False
    literal: str = ""
    words: tuple[str, ...] = ()
    anchors: tuple[str, ...] = ()
    context: str = ""


_NEEDS_DIGIT = Needs(digit=True)


# --- Building blocks ------------------------------------------------------------------------------

MONTH_NAMES = (
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


# Any letter case: the birth date's month (``cases.deid.identifiers``) and the dates with a year.
MONTHS = "(?:" + "|".join(_month_pattern(short, rest) for short, rest in MONTH_NAMES) + ")"
ORDINAL = r"(?:st|nd|rd|th)?"
# A month that may stand without a year: "may" is a month only as "May" (or "MAY"); a dot is an
# abbreviation's ("Aug."), never the full stop after a whole name ("in August. 6 Minute Walk").
_MONTH = (
    "(?:(?i:"
    + "|".join(
        r"sep(?:tember|t\.?|\.)?" if short == "sep" else rf"{short}(?:{rest}|\.)?"
        for short, rest in MONTH_NAMES
        if short != "may"
    )
    + r")|May|MAY)"
)
# A month on its own ("in March"): written with a capital.
_MONTH_CAPITALISED = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.)"
)
_ORDINAL_WORDS = (
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|"
    "fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|"
    r"twenty[\s-](?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|thirtieth|thirty[\s-]first"
)
_DAY_NUMBER = r"(?:3[01]|[12]\d|0?[1-9])(?i:st|nd|rd|th)?(?![\d]|[.:,]\d)"
_DAY = rf"(?:{_DAY_NUMBER}|(?i:{_ORDINAL_WORDS})\b)"
_YEAR = r"(?:1[89]\d\d|2[01]\d\d|['\u2019]\d\d)(?!\d)"
_WEEKDAY = r"(?i:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?i:day)?\.?"
_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_BELOW_HUNDRED = rf"(?:(?:{_TENS})(?:[\s-](?:{_UNITS}))?|{_TEENS}|{_UNITS})"
_NUMBER_WORDS = rf"(?:(?:{_UNITS})\s+hundred(?:\s+(?:and\s+)?{_BELOW_HUNDRED})?|{_BELOW_HUNDRED})"
# 90 to 149 in words: "ninety-seven", "a hundred and two", "one hundred".
_AGE_WORDS = (
    rf"(?:(?:(?:a|one)[\s-]+)?hundred(?:[\s-]+(?:and[\s-]+)?(?:{_TEENS}|(?:twenty|thirty|forty)"
    rf"(?:[\s-]+(?:{_UNITS}))?|{_UNITS}))?|ninety(?:[\s-]+(?:{_UNITS}))?)"
)

# A name: capitalised words ("Maria", "O'Brien", "McDonald", "Mary-Jane") and initials ("J."),
# not all capitals (an abbreviation: "ICU", "EMS"). Function words are never part of one; the
# words that start a clause after a kinship word ("daughter. She", "son, Who") or name a disease in
# a family history ("father, Parkinson disease") are not its first word, but may be a surname after
# a first name ("Amy Barrett").
_FUNCTION_WORDS = (
    "The|This|That|These|Those|She|He|They|We|It|His|Her|Hers|Their|Our|My|Your|Is|Was|Were|Are|Has|Had|"
    "Have|And|But|Or|Not|No|Yes|Also|Who|Whom|Which|What|When|Where|While|Why|How|At|In|On|Of|To|From|For|"
    "With|By|As|If|So|Then|Than|Today|Tonight|Yesterday|Tomorrow|Here|There|Now|Please|Will|Would|Can|"
    "Could|Should|May|Might|Must|Did|Does|Do"
)
_NOT_A_NAME = (
    _FUNCTION_WORDS + "|"
    "Says|Said|States|Stated|Reports|Reported|Notes|Noted|Denies|"
    "Present|Called|Visited|Came|Brought|Arrived|Left|Patient|Pt|Per|Family|Home|Bedside|Unknown|None|"
    "All|Both|Each|Any|Some|Everyone|Nobody|Alive|Deceased|Died|Passed|Age|Aged|Years|Mother|Father|"
    "Daughter|Son|Wife|Husband|Sister|Brother|Partner|Friend|However|Although|Because|After|Before|"
    "During|Since|Until|Over|Under|About|Again|Still|Only|Just|Very|Well|Good|Fine|Ok|Okay|"
    "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|"
    # Capitalised clinical words that follow a kinship word in a family history ("father, Parkinson
    # disease"; "Mother (Diabetes)"), eponyms first.
    "Alzheimer|Parkinson|Hodgkin|Graves|Crohn|Cushing|Addison|Huntington|Down|Marfan|Raynaud|Sjogren|"
    "Tourette|Bell|Kawasaki|Kaposi|Hashimoto|Meniere|Paget|Guillain|Asperger|Duchenne|Ehlers|Klinefelter|"
    "Lyme|Whipple|Burkitt|Ewing|Wilms|Barrett|Charcot|Creutzfeldt|Dupuytren|Gaucher|Gilbert|Horner|Reye|"
    "Rett|Wernicke|Diabetes|Diabetic|Cancer|Breast|Lung|Colon|Colorectal|Prostate|Ovarian|Heart|Cardiac|"
    "Stroke|Dementia|Hypertension|Asthma|Depression|Anxiety|Alcoholism|Alcohol|Healthy|Adopted|Lymphoma|"
    "Leukemia|Leukaemia|Melanoma|Epilepsy|Arthritis|Osteoporosis|Glaucoma|Kidney|Renal|Liver|Thyroid|"
    "Obesity|Migraine|Bipolar|Schizophrenia|Autism|Sickle|Cystic|Multiple|Type|History|Negative|Positive|"
    "Noncontributory|Myocardial|Coronary|Congestive|Chronic|Acute|Sudden|Early|Late|Unremarkable|"
    "January|February|March|April|June|July|August|September|October|November|December"
)
# A run of FILL is a name part an earlier stage took (the patient's own first name in "contact:
# Jennifer Rose"): the rest of the name still follows it.
_CAPITALISED = r"(?:[A-Z](?:[a-z]+(?:['\u2019-]?[A-Z][a-z]+)*|['\u2019][A-Z][a-z]+|\.)|\x00+)"
_NAME_WORD = rf"(?!(?:{_NOT_A_NAME})\b){_CAPITALISED}"
_NAME_WORD_NEXT = rf"(?!(?:{_FUNCTION_WORDS})\b){_CAPITALISED}"
_NAME = rf"{_NAME_WORD}(?:\s+{_NAME_WORD_NEXT}){{0,2}}(?![\w'\u2019-])"
# After a title ("Dr. Graves") a capitalised word is a name, eponym or not.
_TITLED_NAME = rf"{_NAME_WORD_NEXT}(?:\s+{_NAME_WORD_NEXT}){{0,2}}(?![\w'\u2019-])"
_NAMES = rf"{_NAME}(?:\s*(?:,|and|&)\s*{_NAME}){{0,3}}"
# Kinship and household words, then the lists the regex and its cheap tests are made of.
_KIN_PHRASES = [
    "granddaughter",
    "grandson",
    "grandmother",
    "grandfather",
    "grandchild",
    "grandma",
    "grandpa",
    "granny",
    "stepdaughter",
    "stepson",
    "stepmother",
    "stepfather",
    "stepsister",
    "stepbrother",
    "godmother",
    "godfather",
    "goddaughter",
    "godson",
    "daughter",
    "son",
    "wife",
    "husband",
    "spouse",
    "partner",
    "mother",
    "father",
    "mom",
    "mum",
    "mommy",
    "mummy",
    "dad",
    "daddy",
    "sister",
    "brother",
    "sibling",
    "twin",
    "aunt",
    "auntie",
    "uncle",
    "niece",
    "nephew",
    "cousin",
    "fiance",
    "fiancee",
    "boyfriend",
    "girlfriend",
    "friend",
    "neighbor",
    "neighbour",
    "carer",
    "caregiver",
    "caretaker",
    "guardian",
    "roommate",
    "flatmate",
    "housemate",
    "landlord",
    "landlady",
    "employer",
    "boss",
    "supervisor",
    "coworker",
    "colleague",
]
_KIN = (
    r"(?:(?:mother|father|daughter|son|sister|brother)[\s-]in[\s-]law|co-worker|"
    + "|".join(sorted(_KIN_PHRASES, key=len, reverse=True))
    + ")s?"
)
_POSSESSIVE = r"(?i:her|his|their|the\s+patient['\u2019]s|patient['\u2019]s|pt['\u2019]s)"
# What follows a name to say whose it is: "Rosa (sister)", "Ana, her daughter".
_KIN_AFTER_A_NAME = rf"\(\s*(?:{_POSSESSIVE}\s+)?(?i:{_KIN})\s*\)|,\s*{_POSSESSIVE}\s+(?i:{_KIN})\b"
CONTEXT_WINDOW = 80  # a name of three words and the space before its context fit in this
_TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Doctor|Nurse|Rev|Sr|Fr)"
_ROLE_LABELS = (
    r"(?i:(?:patient|pt)\s+name|name|next\s+of\s+kin|nok|emergency\s+contact|contact\s+person|contact|"
    r"health\s*care\s+proxy|proxy|power\s+of\s+attorney|poa|guarantor|informant|initials)"
)
_ROLE_PHRASES = (
    r"(?i:accompanied\s+by|lives\s+with|living\s+with|staying\s+with|visited\s+by|brought\s+in\s+by|"
    r"escorted\s+by|cared\s+for\s+by|married\s+to|engaged\s+to)"
)
_EMPLOYER = r"(?i:works\s+(?:at|for)|working\s+(?:at|for)|employed\s+(?:at|by)|employer(?:\s+is)?\s*:?|job\s+at)"
_ORGANISATION_WORD = rf"(?!(?:{_NOT_A_NAME})\b)[A-Z][A-Za-z&'\u2019.-]*"
_ORGANISATION = rf"{_ORGANISATION_WORD}(?:(?:,?\s+(?:(?:and|&)\s+)?|\s*&\s*){_ORGANISATION_WORD}){{0,4}}"
# Places below a state: a town after "lives in" (a state may stay: Safe Harbor allows it).
_STATES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|"
    "Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|"
    "Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New\\s+Hampshire|New\\s+Jersey|New\\s+Mexico|"
    "New\\s+York\\s+State|North\\s+Carolina|North\\s+Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|"
    "Rhode\\s+Island|South\\s+Carolina|South\\s+Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington\\s+State|"
    "West\\s+Virginia|Wisconsin|Wyoming|the\\s+US|the\\s+USA|America|Canada|Mexico|England|Scotland|Wales"
)
_PLACE = (
    rf"(?!(?:{_STATES})(?![\w-]))(?!(?:{_NOT_A_NAME})\b)[A-Z][a-z]+(?:[\s-](?!(?:{_NOT_A_NAME})\b)[A-Z][a-z]+){{0,2}}"
)
_LIVES = r"(?i:lives|living|resides|residing|resident|moved|relocated|moving|relocating|originally|hometown)"

# Street types (USPS and British), without those that end clinical phrases with a number before
# them ("6 Minute Walk", "2 Carpal Tunnel", "Iliac Crest", "Gastric Bypass", "Heel Spur").
_STREET_FULL = (
    "Street|Avenue|Road|Boulevard|Lane|Drive|Way|Court|Place|Terrace|Parkway|Square|Highway|Circle|Close|"
    "Crescent|Gardens|Garden|Grove|Row|Mews|Trail|Alley|Plaza|Pike|Wharf|Quay|Heights|Crossing|Crossroad|"
    "Expressway|Freeway|Turnpike|Motorway|Glen|Cove|Landing|Meadows|Meadow|Vale|Causeway|Cliffs|Cliff|"
    "Corners|Corner|Creek|Dale|Estates|Estate|Ferry|Flats|Ford|Forest|Forge|Fort|Gateway|Harbor|Harbour|"
    "Haven|Hills|Hill|Hollow|Isle|Knolls|Knoll|Lakes|Lake|Lodge|Manor|Mills|Mill|Mission|Mountain|Mount|"
    "Orchard|Parks|Park|Pines|Prairie|Ranch|River|Shores|Shore|Skyway|Stream|Summit|Valley|Village|Ville|"
    "Vista|Ways"
)
_STREET_ABBREVIATIONS = "St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Ter|Pkwy|Sq|Hwy|Cir|Cres|Gdns|Trl|Rte|Hts"
# A full word ends at a word boundary; an abbreviation may take its dot ("St.").
_STREET_SUFFIX = rf"(?:(?:{_STREET_FULL})\b|(?:{_STREET_ABBREVIATIONS})\b\.?)"
_STREET_WORD = r"(?:[A-Z][\w'\u2019-]*|\d+(?:st|nd|rd|th))"
_STREET_FULL_SUFFIX = (
    r"(?:Street|Avenue|Road|Boulevard|Lane|Drive|Terrace|Parkway|Crescent|Close|Gardens|Grove|Square|Highway)"
)
_UNIT = r"(?:Flat|Apt\.?|Apartment|Suite|Ste\.?|Unit)"

# Labels of numbers that identify a person, a device, a vehicle, an account or a document; the
# number after one (with a digit in it) is an identifier, the label stays.
_NUMBER_WORD = r"(?:\s+(?:no\.?|num(?:ber)?|#|id|identifier|code))?"
_ID_LABELS = (
    r"(?i:"
    r"licen[cs]e\s+plate|number\s+plate|plate\s+(?:no\.?|number|#)|registration(?:\s+(?:no\.?|number|plate|mark))?|"
    r"vehicle\s+(?:registration|reg\.?|plate|id|identification\s+number)|vin|"
    r"serial(?:\s+(?:no\.?|number|#))?|s/n|device\s+(?:id|identifier|serial|no\.?|number)|udi|imei|meid|"
    r"implant\s+(?:id|serial|no\.?|number)|"
    r"account|acct\.?|a/c|policy|member(?:ship)?\s+(?:id|no\.?|number|#)|subscriber(?:\s+id)?|"
    r"beneficiary(?:\s+id)?|insurance(?:\s+(?:id|policy))?|health\s*plan(?:\s+id)?|plan\s+(?:id|no\.?|number|#)|"
    r"group\s+(?:no\.?|number|#|id)|medicare|medicaid|mbi|hicn|nhs|claim|card\s+(?:no\.?|number|#)|"
    r"credit\s+card|iban|routing|"
    r"driver['\u2019]?s?\s+licen[cs]e|licen[cs]e|certificate|cert\.|passport|dea|npi|badge|"
    r"employee(?:\s+id)?|staff\s+id|permit|social\s+security|"
    r"(?:patient|pt|hospital|encounter|visit|accession|specimen|sample|order|requisition|reference|ref|"
    r"booking|confirmation)\s+(?:id|no\.?|number|#)"
    r")"
)
_ID_VALUE = (
    r"(?=[\w/.-]*\d)[A-Za-z0-9](?:[A-Za-z0-9]|[/.-](?=[A-Za-z0-9])){2,}"
    r"(?:\s(?:(?=[A-Z]*\d)[A-Z0-9]{2,6}|[A-Z]{3})(?![\w-]))*"
)

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

_I = re.IGNORECASE
# Every month's first three letters ("sept" holds "sep"): in every date written with a month name.
_MONTH_WORDS = tuple(short for short, _rest in MONTH_NAMES)
_WEEKDAY_ANCHORS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTH_ANCHORS = tuple(short for short, _rest in MONTH_NAMES)
_NUMBER_ANCHORS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fifteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
]
_ID_ANCHORS = [
    "licen",
    "number",
    "plate",
    "registration",
    "vehicle",
    "vin",
    "serial",
    "s/n",
    "device",
    "udi",
    "imei",
    "meid",
    "implant",
    "account",
    "acct",
    "a/c",
    "policy",
    "member",
    "subscriber",
    "beneficiary",
    "insurance",
    "health",
    "plan",
    "group",
    "medicare",
    "medicaid",
    "mbi",
    "hicn",
    "nhs",
    "claim",
    "card",
    "credit",
    "iban",
    "routing",
    "driver",
    "certificate",
    "cert",
    "passport",
    "dea",
    "npi",
    "badge",
    "employee",
    "staff",
    "permit",
    "social",
    "patient",
    "pt",
    "hospital",
    "encounter",
    "visit",
    "accession",
    "specimen",
    "sample",
    "order",
    "requisition",
    "reference",
    "ref",
    "booking",
    "confirmation",
    "sn",
    "dl",
    "id",
]

# An email written out so that it is not one ("maria dot khan at gmail dot com", "m.khan(at)mail.org",
# "mkhan [at] clinic [dot] org", "mkhan @ mail.com"): the local part, an "at" (a word between spaces,
# in brackets, or "@" with spaces), the domain's labels separated by dots (".", " dot ", "(dot)") and
# a known top-level domain, written all in lower or all in upper case, so that "was at home.No
# distress" (a full stop without its space) is not taken. The local part may be a patient's own
# identifier already found (``FILL``): "jqdoe at mail dot org" goes whole. The usual written form is
# ``EMAIL`` above.
_SPELLED_DOT = r"(?:\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)"
_DOT_OR_SPELLED = rf"(?:\.|{_SPELLED_DOT})"
_BRACKETED_AT = r"\s*[(\[{<]\s*at\s*[)\]}>]\s*"
_PLAIN_AT = r"(?:\s+at\s+|\s+@\s*|\s*@\s+)"
_TOP_LEVEL_DOMAINS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|me|us|uk|ca|au|nz|ie|de|fr|es|it|nl|be|ch|se|no|dk|fi"
    "|in|jp|cn|br|mx|za|pl|pt|il|sg|hk|kr|nhs|health|email|mail"
)


def _all_lower_or_upper(alternatives: str) -> str:
    """A group matching one of ``alternatives`` written all in lower or all in upper case, even
    inside a case-blind regex."""
    return f"(?-i:{alternatives}|{alternatives.upper()})"


_TLD = _all_lower_or_upper(_TOP_LEVEL_DOMAINS)
# After a plain "at" or "@" and a plain ".", many domains are words or clinical abbreviations
# ("crackles at bases.no wheeze", "BP @ rest.NO change", "at rest.US echo", "@ HS.CA 9.1"): there
# the domain is a generic one or a country's after its usual second level ("yahoo.co.uk").
_GENERIC = "com|org|net|edu|gov"
_SECOND_LEVEL = "co|com|org|net|ac|gov|nhs|edu"
_PLAIN_END = (
    rf"(?:{_SPELLED_DOT}{_TLD}|\.{_all_lower_or_upper(_GENERIC)}"
    rf"|\.{_all_lower_or_upper(_SECOND_LEVEL)}\.{_TLD})"
)
_SPELLED_EMAIL = (
    rf"(?<![\w.+\x00-])[\w+\x00-]+(?:{_DOT_OR_SPELLED}[\w+\x00-]+){{0,3}}"
    rf"(?:{_BRACKETED_AT}[\w-]+(?:{_DOT_OR_SPELLED}[\w-]+){{0,3}}{_DOT_OR_SPELLED}{_TLD}"
    rf"|{_PLAIN_AT}[\w-]+(?:{_DOT_OR_SPELLED}[\w-]+){{0,3}}{_PLAIN_END})(?![\w-])"
)

# Order matters: longer, more specific shapes first, so an email is not half-eaten as a URL; a
# later regex never matches inside what an earlier one took (``pattern_spans`` masks it).
PATTERNS: list[tuple[str, Needs, re.Pattern[str]]] = [
    ("EMAIL", Needs(literal="@"), re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", _I)),
    ("EMAIL", Needs(words=("at", "@")), re.compile(_SPELLED_EMAIL, _I)),
    # A URL does not end with the punctuation of the sentence around it.
    ("URL", Needs(url=True), re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]", _I)),
    # A MAC address: six pairs of hex digits, one separator throughout.
    (
        "ID",
        Needs(digit=True),
        re.compile(r"(?<![\w:-])[0-9a-f]{2}([:-])(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}(?![\w:-])", _I),
    ),
    ("IP", Needs(digit=True, dot=True), re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d]|\.\d)")),
    ("IP", Needs(literal=":"), re.compile(_IPV6, _I)),
    ("SSN", _NEEDS_DIGIT, re.compile(r"(?<![\d.])\d{3}[-. ]\d{2}[-. ]\d{4}(?!\d|\.\d)")),
    ("DATE", _NEEDS_DIGIT, re.compile(r"(?<![\d.])\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?!\d|\.\d)")),
    ("DATE", _NEEDS_DIGIT, re.compile(r"(?<![\d.])\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})(?!\d|\.\d)")),
    # "March 14, 1957", "Mar. 14 1957", "Mar-14-1957"
    (
        "DATE",
        Needs(digit=True, words=_MONTH_WORDS),
        re.compile(rf"\b{MONTHS}[\s./-]*\d{{1,2}}{ORDINAL}(?:\s*,\s*|[\s./-]+)\d{{4}}\b", _I),
    ),
    # "14 March 1957", "14th of March, 1957", "14-Mar-1957", "14Mar1957", "14-Mar-57"
    (
        "DATE",
        Needs(digit=True),
        re.compile(rf"\b\d{{1,2}}{ORDINAL}[\s./-]*(?:of\s+)?{MONTHS}(?:[\s,./-]*\d{{4}}|[./-]\d{{2}})\b", _I),
    ),
    # Dates without a year, or in words, month first: "May 24th", "Monday, May 24", "May
    # twenty-fourth, 2024", "March 2024".
    (
        "DATE",
        Needs(words=_MONTH_WORDS, anchors=(*_WEEKDAY_ANCHORS, *_MONTH_ANCHORS)),
        re.compile(
            rf"\b(?:{_WEEKDAY},?\s+)?{_MONTH}(?![A-Za-z])[\s-]*(?:(?i:the)\s+)?{_DAY}(?:(?:\s*,\s*|[\s./-]+){_YEAR})?"
            rf"|\b{_MONTH}(?![A-Za-z])[\s,./-]+{_YEAR}"
        ),
    ),
    # Day first: "24th of May", "the twenty-fourth of May", "24 May 2024" (searched just before a month).
    (
        "DATE",
        Needs(words=_MONTH_WORDS, context=rf"{_MONTH}(?![A-Za-z])"),
        re.compile(
            rf"\b(?:{_WEEKDAY},?\s+)?(?:(?i:the)\s+)?(?<![\d.,]){_DAY}(?:\s+(?i:of)\s+|[\s/-]*|\.(?!\s))"
            rf"{_MONTH}(?:[\s,./-]*{_YEAR}|(?![A-Za-z0-9]))"
        ),
    ),
    # A month on its own where the words before make it a date: "since March", "in May".
    (
        "DATE",
        Needs(words=_MONTH_WORDS),
        re.compile(
            r"\b(?i:in|on|since|during|until|till|by|from|early|late|mid|last|next|this|before|after|through|"
            rf"between|around|end\s+of|beginning\s+of|start\s+of)[\s-]+(?P<id>{_MONTH_CAPITALISED})(?![\w'\u2019])"
        ),
    ),
    # A day of the month with a preposition: "on the 24th", "since 5/24".
    (
        "DATE",
        Needs(digit=True, anchors=("on", "since", "from", "until", "till", "by", "date")),
        re.compile(
            r"\b(?i:on|since|from|until|till|by|dated?)\s+(?:(?i:the)\s+(?P<id>(?:3[01]|[12]\d|0?[1-9])"
            r"(?i:st|nd|rd|th))\b|(?P<id2>(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01]))(?![/\d]))"
        ),
    ),
    (
        "DATE",
        Needs(anchors=("christmas", "thanksgiving", "easter", "hanukkah", "halloween", "new")),
        re.compile(
            rf"\b(?:Christmas|Thanksgiving|Easter|Hanukkah|Halloween|New\s+Year['\u2019]s)(?:\s+(?:Day|Eve))?"
            rf"(?:\s*,?\s*{_YEAR})?(?![\w'\u2019])"
        ),
    ),
    (
        "MRN",
        Needs(digit=True, anchors=("mr", "medical", "chart")),
        re.compile(
            r"\b(?:MRN|MR#|medical record(?: number| no\.?)?|chart(?: number| no\.?| #))[\s:#-]*[A-Z0-9-]*\d[A-Z0-9-]*",
            _I,
        ),
    ),
    # International numbers in groups of any size: "+33 1 23 45 67 89", "+44 (0)20 7946 0958".
    ("PHONE", Needs(digit=True, literal="+"), re.compile(r"(?<!\w)\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){3,6}(?!\w|\.\d)")),
    (
        "PHONE",
        _NEEDS_DIGIT,
        re.compile(
            r"(?<!\w)(?<!\d\.)(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)[\s.-]?|\d{2,5}[\s.-])\d{2,4}[\s.-]?\d{3,4}"
            r"(?!\w|\.\d)"
        ),
    ),
    # Numbers behind a label: "account #A-4471", "VIN 1HGCM82633A004352", "plate 7XYZ123",
    # "serial no. SN-4821", "licence D1234567", "Medicare 1EG4-TE5-MK73". The label stays.
    (
        "ID",
        Needs(digit=True, anchors=tuple(_ID_ANCHORS)),
        re.compile(
            rf"\b{_ID_LABELS}(?![\w/]){_NUMBER_WORD}[\s:#=.-]*(?:(?i:is|was|of)\s+)?#?\s*(?P<id>{_ID_VALUE})"
            rf"|\b(?:SN|DL|ID|UDI|MBI)(?:[\s:#=-]+|(?=\d))(?P<id2>{_ID_VALUE})"
            # A bare "plate" is a licence plate only with capitals and digits mixed: "plate 7XYZ123",
            # not "plate 3.5mm".
            r"|\b(?i:plate)\s*[:#]?\s*(?P<id3>(?=[A-Z0-9-]*\d)(?=[0-9-]*[A-Z])[A-Z0-9][A-Z0-9-]{3,8})(?!\w|\.\d)"
        ),
    ),
    # A vehicle identification number: 17 capitals and digits, never I, O or Q.
    ("ID", _NEEDS_DIGIT, re.compile(r"\b(?=[A-HJ-NPR-Z]*\d)(?=[0-9]*[A-HJ-NPR-Z])[A-HJ-NPR-Z0-9]{17}\b")),
    (
        "ADDRESS",
        _NEEDS_DIGIT,
        re.compile(rf"\b\d{{1,6}}[A-Za-z]?\s+(?:{_STREET_WORD}\s+){{1,3}}{_STREET_SUFFIX}"),
    ),
    # "twelve Elm Street", "One Main St."
    (
        "ADDRESS",
        Needs(anchors=tuple(_NUMBER_ANCHORS)),
        re.compile(rf"\b(?i:{_NUMBER_WORDS})\s+(?:{_STREET_WORD}\s+){{1,3}}{_STREET_SUFFIX}"),
    ),
    (
        "ADDRESS",
        Needs(digit=True, anchors=("flat", "apt", "apartment", "suite", "ste", "unit")),
        re.compile(rf"\b{_UNIT}\s*#?\s*\d+[A-Za-z]?\b"),
    ),
    ("ADDRESS", Needs(digit=True, words=("box",)), re.compile(r"\b(?i:p\.?\s*o\.?\s*box)\s*\d+\b")),
    # A street without a number: "lives on Elm Street".
    (
        "ADDRESS",
        Needs(words=tuple(_STREET_FULL_SUFFIX.strip("(?:)").lower().split("|"))),
        re.compile(
            rf"\b(?i:on|at|off|near|in|from|to)\s+(?P<id>(?:(?!(?:{_NOT_A_NAME})\b)[A-Z][\w'\u2019-]*\s+){{1,3}}"
            rf"{_STREET_FULL_SUFFIX})\b"
        ),
    ),
    # The town after "lives in" (a state may stay: Safe Harbor allows it).
    (
        "ADDRESS",
        Needs(anchors=("liv", "resid", "mov", "relocat", "originally", "hometown")),
        re.compile(rf"\b{_LIVES}\s+(?i:in|to|at|of|from)\s+(?P<id>{_PLACE})(?![\w'\u2019-])"),
    ),
    # Safe Harbor: an age over 89 is itself an identifier ("a 97-year-old", "aged 95", "in her
    # 90s"), in words too ("ninety-seven years old", "aged a hundred and two", "a nonagenarian").
    ("AGE", _NEEDS_DIGIT, re.compile(r"(?<![\w.])(?:9\d|1[0-4]\d)(?=\s*-?\s*(?:years?|yrs?|y/?o\b|y\.o\.))", _I)),
    ("AGE", Needs(digit=True, anchors=("age",)), re.compile(r"\bage(?:d | |: |:)(?P<id>9\d|1[0-4]\d)\b", _I)),
    (
        "AGE",
        Needs(digit=True, literal="90"),
        re.compile(
            r"\b(?:her|his|their|the\s+patient['\u2019]s)\s+(?:(?:early|mid|late)[\s-]+)?(?P<id>90['\u2019]?s)\b", _I
        ),
    ),
    (
        "AGE",
        Needs(words=("ninety", "hundred", "nonagenarian", "centenarian", "nineties")),
        re.compile(
            rf"\b(?P<id>{_AGE_WORDS})(?=[\s-]*(?:years?|yrs?|y/?o\b|y\.o\.))(?![\s-]*years?\s+ago)"
            rf"|\b(?:aged?|age:)\s+(?P<id2>{_AGE_WORDS})\b"
            r"|\b(?:super)?(?:nonagenarian|centenarian)s?\b"
            r"|\b(?:her|his|their|the\s+patient['\u2019]s)\s+(?:(?:early|mid|late)[\s-]+)?(?P<id3>nineties)\b",
            _I,
        ),
    ),
    # Names of other people, where the words say a name follows (or comes before).
    (
        "NAME",
        Needs(anchors=(*_KIN_PHRASES, "co-worker")),
        re.compile(rf"\b(?i:{_KIN})\b\s*(?:[,(]\s*)?(?:(?i:named|called|(?:whose\s+)?name\s+is)\s+)?(?P<id>{_NAMES})"),
    ),
    (
        "NAME",
        Needs(context=_KIN_AFTER_A_NAME),
        re.compile(rf"(?<![^\s(\x00])(?P<id>{_NAME})\s*(?:{_KIN_AFTER_A_NAME})"),
    ),
    (
        "NAME",
        Needs(anchors=("mr", "ms", "miss", "mx", "dr", "prof", "doctor", "nurse", "rev", "sr", "fr")),
        re.compile(rf"\b{_TITLES}\.?\s+(?P<id>{_TITLED_NAME})"),
    ),
    (
        "NAME",
        Needs(
            anchors=(
                *[
                    "patient",
                    "pt",
                    "name",
                    "next",
                    "nok",
                    "emergency",
                    "contact",
                    "health",
                    "proxy",
                    "power",
                    "poa",
                    "guarantor",
                    "informant",
                ],
                "initials",
            )
        ),
        re.compile(rf"\b{_ROLE_LABELS}\s*[:=-]\s*\(?\s*(?P<id>{_NAMES}|(?:[A-Z]\.?\s?){{2,4}}(?!\w))"),
    ),
    (
        "NAME",
        Needs(
            anchors=(
                "accompanied",
                "lives",
                "living",
                "staying",
                "visited",
                "brought",
                "escorted",
                "cared",
                "married",
                "engaged",
            )
        ),
        re.compile(rf"\b{_ROLE_PHRASES}\s+(?P<id>{_NAMES})"),
    ),
    (
        "NAME",
        Needs(anchors=("works", "working", "employed", "employer", "job")),
        re.compile(rf"\b{_EMPLOYER}\s+(?P<id>{_ORGANISATION})(?![\w'\u2019-])"),
    ),
    ("ID", _NEEDS_DIGIT, re.compile(r"\b[A-Z]{0,4}-?\d{6,}\b", _I)),
]

ANY_DIGIT = re.compile(r"\d")
_URL_START = re.compile(r"://|www\.", _I)
_LETTER_RUNS = re.compile(r"[a-z]+")


def _anchor_start(anchor: str) -> str:
    """What a word where ``anchor`` starts begins with: its first two or three letters ("" when
    the anchor starts with fewer than two letters: "s/n")."""
    letters = _LETTER_RUNS.match(anchor)
    head = letters.group() if letters is not None else ""
    return head[:3] if len(head) >= 2 else ""


class _Rule:
    """One entry of ``PATTERNS`` with its cheap tests laid out for the loop of ``_find``."""

    __slots__ = ("anchors_by_start", "context", "digit", "dot", "kind", "literal", "needs", "pattern", "url", "words")

    def __init__(self, kind: str, needs: Needs, pattern: re.Pattern[str]) -> None:
        self.kind, self.needs, self.pattern = kind, needs, pattern
        self.digit, self.dot, self.url, self.literal, self.words = (
            needs.digit,
            needs.dot,
            needs.url,
            needs.literal,
            needs.words,
        )
        self.context = re.compile(needs.context) if needs.context else None
        self.anchors_by_start: dict[str, list[str]] = {}
        for anchor in needs.anchors:
            self.anchors_by_start.setdefault(_anchor_start(anchor), []).append(anchor)


_RULES = [_Rule(kind, needs, pattern) for kind, needs, pattern in PATTERNS]


def _find(text: str, *, mask: bool, first: bool) -> list[Span]:
    """What ``PATTERNS`` find in ``text``: with ``mask``, each regex on the text with the finds of
    the ones before it masked (``pattern_spans``), else each on the text as it is; with ``first``,
    at most one find per regex (enough for ``pattern_kinds``).

    The cheap tests come first: a regex whose text lacks what it needs is skipped, and one with
    anchors (every match starts at a word boundary where an anchor starts; tested in
    tests/cases/test_deid.py) is tried with ``re.match`` at those places only, and only when a
    word of the text begins as an anchor does.
    """
    found: list[Span] = []
    lower = text.lower()
    has_digit = ANY_DIGIT.search(text) is not None
    starts: set[str] | None = None
    for rule in _RULES:
        if rule.digit and not has_digit:
            continue
        if rule.literal and rule.literal not in text:
            continue
        if rule.dot and "." not in text:
            continue
        if rule.url and _URL_START.search(text) is None:
            continue
        if rule.words and not any(word in lower for word in rule.words):
            continue
        pattern = rule.pattern
        if rule.anchors_by_start and len(lower) == len(text):  # lower() lengthens a rare letter
            if starts is None:
                words = _LETTER_RUNS.findall(lower)
                starts = {word[:3] for word in words} | {word[:2] for word in words} | {""}
            places: set[int] = set()
            for start in starts.intersection(rule.anchors_by_start):
                for anchor in rule.anchors_by_start[start]:
                    position = lower.find(anchor)
                    while position >= 0:
                        places.add(position)
                        position = lower.find(anchor, position + 1)
            if not places:
                continue
            matches: list[re.Match[str]] = []
            end = 0
            for place in sorted(places):
                if place >= end:
                    match = pattern.match(text, place)
                    if match is not None:
                        matches.append(match)
                        if first:
                            break
                        end = match.end() if match.end() > place else place + 1  # as finditer does
        elif rule.context is not None:
            matches = []
            end = 0
            for context in rule.context.finditer(text):
                position = max(end, context.start() - CONTEXT_WINDOW)
                # A match in the window must also be one in the whole text (the window's end would
                # pass a lookahead that the text after it fails): matched again from its start.
                while (candidate := pattern.search(text, position, context.end())) is not None:
                    match = pattern.match(text, candidate.start())
                    if match is not None and match.end() > match.start():
                        matches.append(match)
                        end = match.end()
                        break
                    position = candidate.start() + 1
                if first and matches:
                    break
        elif first:
            match = pattern.search(text)
            matches = [match] if match is not None else []
        else:
            matches = list(pattern.finditer(text))
        if not matches:
            continue
        spans = [(*id_span(match), rule.kind) for match in matches]
        spans = [span for span in spans if span[1] > span[0]]
        if not spans:
            continue
        found += spans
        if mask:
            # Masks hold no digits and no letters: the cheap tests are taken again.
            text = masked(text, spans)
            lower = text.lower()
            has_digit = has_digit and ANY_DIGIT.search(text) is not None
            starts = None
    return found


def id_span(match: re.Match[str]) -> tuple[int, int]:
    """The span of the match's ``id`` group (``id``, ``id2``, ... for its alternatives), else the match."""
    groups = match.re.groupindex
    if groups:
        for name in ("id", "id2", "id3"):
            if name in groups and match.start(name) >= 0:
                return match.span(name)
    return match.span()


FILL = "\x00"  # what a found identifier becomes for the regexes after it: a non-word character


def masked(text: str, spans: list[Span]) -> str:
    """``text`` with each span filled with ``FILL`` (same length, so positions hold)."""
    if not spans:
        return text
    pieces: list[str] = []
    cursor = 0
    for start, end, _kind in sorted(spans):
        start = max(start, cursor)
        if end <= start:
            continue
        pieces += [text[cursor:start], FILL * (end - start)]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def pattern_spans(text: str) -> list[Span]:
    """Every identifier of ``PATTERNS`` in a normalised ``text``, each regex after the ones before
    it have taken theirs (their matches masked). Spans may overlap when a later match swallowed an
    earlier one's mask (a URL around a name): ``cases.deid.scrubbing`` merges them."""
    return _find(text, mask=True, first=False)


def pattern_kinds(text: str) -> list[str]:
    """The kinds of ``PATTERNS`` found in a normalised ``text``, each once, in the table's order
    (each regex on the text as it is: a residual check, not a replacement)."""
    return list(dict.fromkeys(kind for _start, _end, kind in _find(text, mask=False, first=True)))
