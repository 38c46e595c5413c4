"""UCUM unit conversion: a FHIR Quantity's unit to the unit its data dictionary finding is kept in.

UCUM codes are parsed with ucumvert (the full UCUM grammar, generated from UCUM's own
``ucum-essence.xml``) into pint units, and pint converts: scaled units (``mg/dL`` -> ``mg/L``,
``10*3/uL`` -> ``10*9/L``, ``kPa`` -> ``mm[Hg]``), offset units (``[degF]`` -> ``Cel``) and
annotations (``{beats}/min`` is ``/min``). A unit of another dimension (``mmol/L`` for ``mg/L``: no
molar mass is known here) or a code that is not UCUM is refused with ``UnitRefused``; nothing is
guessed. The registry takes about 0.7 s to build, so it is built once per process, on first use.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from typing import Any

from cases.dictionary.units import print_unit

# UCUM codes are short ("10*3/uL", "mm[Hg]"); a longer one is refused before it reaches the parser.
MAX_UNIT_LENGTH = 64
# Conversions multiply by factors such as 0.1 or 1.8: 37 Cel is 98.60000000000001 [degF] in binary.
# Twelve significant digits are far beyond any clinical measurement and drop that noise.
SIGNIFICANT_DIGITS = 12

# A UCUM annotation ("{beats}" in "{beats}/min") is free text the sender typed, and could hold a
# name: a message shows it as "{...}".
_ANNOTATION = re.compile(r"\{[^{}]*\}")

_lock = threading.Lock()
_registry: Any = None


class UnitRefused(ValueError):
    """A value whose unit cannot be taken; the message names the units, never the value."""


def registry() -> Any:
    """The process's UCUM-aware pint registry (built on first use)."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                from ucumvert import PintUcumRegistry

                _registry = PintUcumRegistry()
    return _registry


@functools.lru_cache(maxsize=1024)
def _unit(code: str) -> Any:
    """The pint unit of a UCUM code; ``UnitRefused`` when it is not one."""
    if not code or len(code) > MAX_UNIT_LENGTH or not code.isascii() or not code.isprintable() or " " in code:
        raise UnitRefused(f"a unit code must be 1 to {MAX_UNIT_LENGTH} printable ASCII characters without spaces")
    try:
        return registry().from_ucum(code)
    except Exception:  # ucumvert raises lark's and pint's errors as well as its own
        # Not echoed: a code that is not UCUM is text someone typed, and could be anything.
        raise UnitRefused("the unit code is not a UCUM unit") from None


def check_unit(code: str) -> None:
    """Raise ``UnitRefused`` unless ``code`` is a UCUM unit."""
    _unit(code)


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (both UCUM codes).

    Equal codes return the value unchanged, without parsing. Raises ``UnitRefused`` when either
    code is not UCUM or the two measure different things; the result is always finite.
    """
    if from_unit == to_unit:
        return value
    if value == 0:  # 0.0 and -0.0 are one key of the cache below, but not one result
        return _convert(value, from_unit, to_unit)
    return _converted(value, from_unit, to_unit)


def _convert(value: float, from_unit: str, to_unit: str) -> float:
    source, target = _unit(from_unit), _unit(to_unit)
    try:
        converted = float(registry().Quantity(value, source).to(target).magnitude)
    except Exception:  # pint's DimensionalityError, or an offset unit in a compound unit
        shown = _ANNOTATION.sub("{...}", from_unit)  # the data dictionary's own unit (to_unit) is ours
        raise UnitRefused(
            f"{print_unit(shown) or shown!r} cannot be converted to {print_unit(to_unit) or to_unit!r}"
        ) from None
    if not math.isfinite(converted):
        raise UnitRefused(f"the value is too large to express in {print_unit(to_unit) or to_unit!r}")
    return float(f"{converted:.{SIGNIFICANT_DIGITS}g}")


# A conversion costs pint 25-40 us, and measurements repeat (a temperature written to a tenth of a
# degree takes a few hundred values): the results are kept, exactly as pint gave them. A refusal
# raises, and is not kept.
_converted = functools.lru_cache(maxsize=16384, typed=True)(_convert)
