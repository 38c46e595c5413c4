"""Text as the identifier matchers see it, with the way back to the text as written.

A name typed with a zero-width space inside, a soft hyphen, Cyrillic or Greek look-alike letters,
fullwidth letters or combining accents looks like the name to a reader and is not the name to a
regex. ``normalise`` removes the difference, one character at a time:

- invisible characters go: Unicode's default-ignorable code points (zero-width space, joiner and
  non-joiner, soft hyphen, word joiner, BOM, bidirectional controls, variation selectors, tag
  characters, ...), every other format (Cf) and control character but the ASCII whitespace;
- other whitespace becomes a space, and decimal digits of any script their ASCII digit;
- compatibility forms are decomposed (NFKD: a fullwidth J is "J", the ligature fi is "fi") and
  combining marks dropped ("é" is "e", "e" + U+0301 too);
- a letter that still is not ASCII becomes its confusable skeleton (Unicode TR39, from ICU's
  ``SpoofChecker``: a Cyrillic a is "a", a Greek capital omicron "O"), spelled in ASCII when the skeleton
  is ASCII. TR39 gives the look-alikes of "I", "l", "1" and "|" one skeleton, "l" (and "O" to "0"
  and "O"): the ASCII character of that class chosen is the one of the same kind (an upper-case
  letter becomes "I", a lower-case one "l").

ASCII characters are never rewritten to their skeletons: TR39 makes "1" an "l", "0" an "O" and
"m" an "rn", which would break every number and half the words. Only look-alikes outside ASCII
are folded onto ASCII. The letters that decomposition leaves alone but people type without
("ß", "æ", "ø", "ł", "ð", "þ") are spelled as ``fold`` in ``cases.deid.identifiers`` spells them.

Each character of the normalised text comes from one character of the original (``origin``), so
a match found in the normalised text replaces exactly the characters that made it in the
original: the rest of the text stays as it was written. Plain text (ASCII without control
characters, nearly every note) is its own normal form, and is returned as it is.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import icu

# The ASCII characters a normal form never holds (control characters but the whitespace ones).
ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
_SPOOF = icu.SpoofChecker()
_IGNORABLE = icu.UProperty.DEFAULT_IGNORABLE_CODE_POINT
_MARKS = frozenset({"Mn", "Me"})
# Letters that decomposition leaves alone but that people type without; the same as
# ``cases.deid.identifiers``'s fold (checked by tests/cases/test_textnorm.py).
SPECIAL_LETTERS = {
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


class Normalised(NamedTuple):
    """A normal form: ``text``, for each of its characters the index of the original one it comes
    from (None when the text is its own normal form), and the original's length."""

    text: str
    origin: list[int] | None
    length: int


def is_plain(text: str) -> bool:
    """Whether ``text`` is its own normal form (ASCII without control characters)."""
    return text.isascii() and ASCII_CONTROLS.search(text) is None


# Where a text stops being plain: a character outside printable ASCII and its whitespace.
_NOT_PLAIN = re.compile(r"[^\t\n\x0b\x0c\r\x1c-\x1f -~]+")


def normalise(text: str) -> Normalised:
    """``text`` in the normal form of the module docstring, with the index map back."""
    if is_plain(text):
        return Normalised(text, None, len(text))
    forms = _FORMS
    pieces: list[str] = []
    origin: list[int] = []
    cursor = 0
    # Runs of plain characters are copied as they are; only the others are looked at one by one.
    for run in _NOT_PLAIN.finditer(text):
        start, end = run.span()
        if start > cursor:
            pieces.append(text[cursor:start])
            origin.extend(range(cursor, start))
        for index in range(start, end):
            ch = text[index]
            form = forms.get(ch)
            if form is None:
                form = forms[ch] = _form(ch)
            if form:
                pieces.append(form)
                origin.extend([index] * len(form))
        cursor = end
    if cursor < len(text):
        pieces.append(text[cursor:])
        origin.extend(range(cursor, len(text)))
    return Normalised("".join(pieces), origin, len(text))


def normal_text(text: str) -> str:
    """Only the normal form of ``text`` (for a patient's identifiers, whose positions nobody needs)."""
    return text if is_plain(text) else normalise(text).text


def original_span(normalised: Normalised, start: int, end: int) -> tuple[int, int]:
    """The characters of the original text that made ``normalised.text[start:end]`` (``end > start``),
    with the characters next to them that the normal form dropped (an invisible character, the
    combining accent of the last letter): they belong to nothing else."""
    origin = normalised.origin
    if origin is None:
        return start, end
    first = min(origin[start], origin[start - 1] + 1) if start > 0 else 0
    last = max(origin[end - 1] + 1, origin[end]) if end < len(origin) else normalised.length
    return first, last


# --- One character --------------------------------------------------------------------------------

# Printable ASCII is itself; everything else is computed once and remembered (a few thousand
# distinct characters at most in practice).
_FORMS: dict[str, str] = {chr(code): chr(code) for code in range(128)}
_FORMS.update({ch: "" for ch in map(chr, range(128)) if ASCII_CONTROLS.match(ch)})


def _form(ch: str) -> str:
    if ch.isspace():
        return " "
    if icu.Char.hasBinaryProperty(ch, _IGNORABLE) or unicodedata.category(ch) in ("Cf", "Cc"):
        return ""
    digit = unicodedata.decimal(ch, None)
    if digit is not None:
        return str(digit)
    out: list[str] = []
    for part in unicodedata.normalize("NFKD", ch):
        if unicodedata.category(part) in _MARKS:
            continue
        if part.isascii():
            out.append(part)
        elif part in SPECIAL_LETTERS:
            out.append(SPECIAL_LETTERS[part])
        else:
            out.append(_look_alike(part))
    return "".join(out)


def skeleton(text: str) -> str:
    """The TR39 confusable skeleton of ``text`` (ICU), without combining marks."""
    decomposed = unicodedata.normalize("NFD", _SPOOF.getSkeleton(0, text))
    return "".join(ch for ch in decomposed if unicodedata.category(ch) not in _MARKS)


# ASCII characters grouped by their skeleton; the groups of more than one ("l": "1", "I", "l",
# "|"; "O": "0", "O"; "'": "'", "`") are where ``_look_alike`` must choose.
_ASCII_BY_SKELETON: dict[str, list[str]] = {}
for _code in range(32, 127):
    _ASCII_BY_SKELETON.setdefault(skeleton(chr(_code)), []).append(chr(_code))


def _look_alike(ch: str) -> str:
    """A non-ASCII character without decomposition: an ASCII spelling of its skeleton, if it has one."""
    shape = skeleton(ch)
    if not shape:
        return ""
    if not shape.isascii():
        return shape
    candidates = _ASCII_BY_SKELETON.get(shape)
    if not candidates:
        return shape  # "ae" and the like: no single ASCII character looks like it
    if len(candidates) == 1:
        return candidates[0]
    category = unicodedata.category(ch)
    if category.startswith("L"):
        letters = [c for c in candidates if c.isalpha()]
        upper = [c for c in letters if c.isupper()]
        lower = [c for c in letters if c.islower()]
        if category in ("Lu", "Lt") and upper:
            return upper[0]
        if lower:
            return lower[0]
        if letters:
            return letters[0]
    if category.startswith("N"):
        digits = [c for c in candidates if c.isdigit()]
        if digits:
            return digits[0]
    others = [c for c in candidates if not c.isalnum()]
    return (others or candidates)[0]
