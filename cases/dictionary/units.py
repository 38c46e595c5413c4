"""UCUM unit codes as people print them: one table for pages, form labels and messages."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# UCUM codes as people print them (UCUM's own "print symbol"); a unit not listed prints as its code.
# "1" (dimensionless) prints as nothing: "Smoothness (mean)", not "Smoothness (mean) (1)".
UNIT_PRINT: Mapping[str, str] = MappingProxyType(
    {
        "1": "",
        "Cel": "°C",
        "[degF]": "°F",
        "mm[Hg]": "mmHg",
        "10*3/uL": "10³/µL",
        "10*6/uL": "10⁶/µL",
        "10*9/L": "10⁹/L",
        "10*12/L": "10¹²/L",
        "ug/L": "µg/L",
        "ug/dL": "µg/dL",
        "umol/L": "µmol/L",
        "uL": "µL",
        "/min": "/min",
    }
)


def print_unit(unit: str) -> str:
    """A UCUM code as printed (``Cel`` -> ``°C``, ``1`` -> nothing); unknown codes as they are."""
    return UNIT_PRINT.get(unit, unit)


def with_unit(text: str, unit: str) -> str:
    """``text`` followed by ``unit`` as printed (nothing for a dimensionless or missing unit)."""
    printed = print_unit(unit) if unit else ""
    return f"{text} {printed}" if printed else text
