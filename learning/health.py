"""What the loop reads of monitoring: whether a serving version is degraded, and its input drift.

A narrow seam: ``current(version)`` returns a ``Health`` or None (no figures yet). Until the
monitoring app's reading API is on main it reports nothing, so the degradation and drift triggers
and the rollback guard stay quiet; tests replace ``current`` to drive them. When monitoring lands,
``current`` reads ``monitoring.health.current(version)`` and maps it here, and nothing else of the
loop changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Health:
    """``degraded``: live accuracy's interval lies below the offline accuracy minus the tolerance;
    ``drift``: the population stability index per model input (``findings.<key>``, ``age``...)."""

    degraded: bool
    drift: Mapping[str, float] = field(default_factory=dict)

    @property
    def worst_drift(self) -> tuple[str, float] | None:
        if not self.drift:
            return None
        name = max(sorted(self.drift), key=lambda key: self.drift[key])
        return name, float(self.drift[name])


def current(version: Any) -> Health | None:
    """The latest monitoring figures of ``version``; None while there are none."""
    return None
