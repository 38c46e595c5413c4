"""What an alert may carry: ids, slugs, enum values and figures, never patient data.

An alert leaves the engine (a webhook to a chat channel or a pager, an e-mail), far outside the PHI
controls of the ``cases`` app. The emitting code is trusted to mean well, not to be careful, so the
shape is checked: ``data`` is a tree of JSON numbers, booleans, nulls and short slug-like strings
(letters, digits and ``_ . : + -``, no blank, no ``@``, no 7 digits in a group such as a date:
a full name, a note, an e-mail address, a date, a phone number or a medical record number does not
fit; a canonical UUID is allowed) under slug keys (snake_case, feature keys, diagnosis codes) that
do not name patient data. ``summary`` is one short line written by the code; as callers build it
from labels they do not control, it is made safe rather than refused (``clean_summary``: e-mail
addresses, dates and long numbers become placeholders). A shape check cannot prove that a slug is
not someone's name; the rule is that callers pass only identifiers the engine made (primary keys,
model-type slugs, feature keys of a dictionary, status values) and figures.

Errors name where the bad value is (``data["drift"][2]``), never the value: it may be the PHI.
"""

from __future__ import annotations

import math
import numbers
import re
import uuid
from collections.abc import Mapping
from typing import Any

SUMMARY_MAX_LENGTH = 200
STRING_MAX_LENGTH = 100
KEY_MAX_LENGTH = 64
MAX_DEPTH = 4
MAX_ITEMS = 1000
MAX_NODES = 5000

_KEY_WORD = re.compile(r"[^a-z0-9]+")
_STRING = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]*$")
_SUMMARY_OTHER = re.compile(r"[^A-Za-z0-9 _.,:;=<>%()'/+\-\[\]]")
_EMAIL = re.compile(r"\S+@\S+")
# Digits joined by single separators: a number, a date (1931-05-24), a phone number (617-555-0100).
_NUMBER_GROUP = re.compile(r"\d(?:[\-./:() ]?\d)*")
LONG_NUMBER_DIGITS = 7
# Words of a key that name patient data: such a key has no place in an alert whatever its value.
_PHI_KEY_WORDS = frozenset(
    {
        "patient",
        "mrn",
        "dob",
        "birth",
        "birthdate",
        "address",
        "phone",
        "email",
        "ssn",
        "note",
        "notes",
        "zip",
        "postcode",
        "surname",
        "firstname",
        "lastname",
        "fullname",
        "identifiers",
        "phi",
    }
)


class AlertDataError(ValueError):
    """The summary or data of an alert is not of the de-identified shape (the message says where)."""


def clean_summary(summary: object) -> str:
    """The summary, made safe rather than refused: callers build it from labels and slugs they do not
    control, and an alert that cannot be raised is worse than a summary with a gap. One line; an
    e-mail address and a date or number of 7 or more digits become placeholders; any other character
    outside letters, digits, blanks and simple punctuation becomes ``?``; at most 200 characters."""
    if not isinstance(summary, str) or not summary.strip():
        raise AlertDataError("The summary must be text that is not empty.")
    text = " ".join(summary.split())
    text = _EMAIL.sub("[address]", text)
    text = _NUMBER_GROUP.sub(
        lambda found: "[number]" if _digits(found.group()) >= LONG_NUMBER_DIGITS else found.group(), text
    )
    text = _SUMMARY_OTHER.sub("?", text)
    if len(text) > SUMMARY_MAX_LENGTH:
        text = text[: SUMMARY_MAX_LENGTH - 3] + "..."
    return text


def clean_slug(value: object, *, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > KEY_MAX_LENGTH or not _STRING.match(value):
        raise AlertDataError(f"{what} must be a slug of at most {KEY_MAX_LENGTH} characters.")
    return value


def clean_data(data: object) -> dict[str, Any]:
    """A JSON-native copy of ``data`` (numpy numbers become int and float) or ``AlertDataError``."""
    if not isinstance(data, Mapping):
        raise AlertDataError("data must be a mapping.")
    budget = [MAX_NODES]
    return _clean_mapping(data, "data", 1, budget)


def _clean_mapping(mapping: Mapping[Any, Any], path: str, depth: int, budget: list[int]) -> dict[str, Any]:
    if len(mapping) > MAX_ITEMS:
        raise AlertDataError(f"{path} has more than {MAX_ITEMS} entries.")
    cleaned: dict[str, Any] = {}
    for position, (key, value) in enumerate(mapping.items()):
        if not isinstance(key, str) or len(key) > KEY_MAX_LENGTH or not _STRING.match(key) or _has_long_number(key):
            raise AlertDataError(
                f"Key {position} of {path} must be a slug (a feature key, a diagnosis code, snake_case) "
                f"of at most {KEY_MAX_LENGTH} characters."
            )
        if _PHI_KEY_WORDS.intersection(_KEY_WORD.split(key.lower())) or key.lower() == "name":
            raise AlertDataError(f'{path}["{key}"] names patient data; an alert carries ids, slugs and figures.')
        cleaned[key] = _clean_value(value, f'{path}["{key}"]', depth, budget)
    return cleaned


def _clean_value(value: object, path: str, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise AlertDataError(f"data has more than {MAX_NODES} values.")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise AlertDataError(f"{path} must be a finite number.")
        return number
    if isinstance(value, str):
        return _clean_string(value, path)
    if isinstance(value, uuid.UUID):
        return str(value)
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        raise AlertDataError(f"{path} is nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, Mapping):
        return _clean_mapping(value, path, depth + 1, budget)
    if isinstance(value, list | tuple):
        if len(value) > MAX_ITEMS:
            raise AlertDataError(f"{path} has more than {MAX_ITEMS} items.")
        return [_clean_value(item, f"{path}[{index}]", depth + 1, budget) for index, item in enumerate(value)]
    raise AlertDataError(f"{path} must be a number, a boolean, null, a slug, a list or a mapping.")


def _clean_string(value: str, path: str) -> str:
    if value == "":
        return value
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = ""
    if canonical == value.lower():
        return canonical  # a UUID's hex may hold a long run of digits: it is no MRN
    if len(value) > STRING_MAX_LENGTH or not _STRING.match(value) or _has_long_number(value):
        raise AlertDataError(
            f"{path} must be a slug (letters, digits and _ . : + -, no blank) of at most {STRING_MAX_LENGTH} "
            "characters without a date or a number of 7 or more digits; send ids as numbers."
        )
    return value


def _digits(text: str) -> int:
    return sum(char.isdigit() for char in text)


def _has_long_number(text: str) -> bool:
    return any(_digits(group) >= LONG_NUMBER_DIGITS for group in _NUMBER_GROUP.findall(text))


def safe_label(value: object) -> str | None:
    """``value`` when it is an acceptable alert string (a version label such as v1.2.0), else None.

    For labels people or clients chose: an alert about a rollback must be sent (and the rollback
    must happen) even when a version's label is not of the alert shape.
    """
    try:
        return _clean_string(value, "label") if isinstance(value, str) and value else None
    except AlertDataError:
        return None
