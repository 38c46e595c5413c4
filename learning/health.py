"""What the loop reads of monitoring: whether a serving version is degraded, and its input drift.

A narrow seam over ``monitoring.health.current(version)``: ``current`` returns a ``Health`` or None
(the version has no monitoring snapshot yet: absence of evidence is not degradation). Degraded is
monitoring's own verdict; drift is the population stability index of every model input in the
latest snapshot's window (not only those past monitoring's threshold: the policy names its own),
and only once the window holds ``MONITORING_MIN_INPUTS`` inputs, as monitoring's verdict does.
Tests replace ``current`` to drive the triggers.
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
    """The latest monitoring figures of ``version`` (its own, not an A/B arm's); None while there are none."""
    from django.conf import settings

    from monitoring.health import current as monitored

    reading = monitored(version)
    snapshot = reading.snapshot
    if snapshot is None:
        return None
    drift: dict[str, float] = {}
    if snapshot.inputs >= int(getattr(settings, "MONITORING_MIN_INPUTS", 100)):
        for name, figures in (snapshot.drift or {}).items():
            psi = figures.get("psi") if isinstance(figures, dict) else None
            if isinstance(psi, int | float):
                drift[str(name)] = float(psi)
    return Health(degraded=bool(reading.degraded), drift=drift)
