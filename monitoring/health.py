"""The reading API of monitoring for the layers above it (the learning loop): a version's health.

``current(version)`` reads the version's latest snapshot (its own, not an A/B arm's); it computes
nothing, so it is cheap and never holds a lock. A version never monitored is healthy with no
snapshot: absence of evidence is not degradation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitoring.models import MonitoringSnapshot


@dataclass(frozen=True)
class Health:
    degraded: bool  # the live accuracy's anytime-valid interval lies below offline accuracy - tolerance
    drifted: dict[str, float] = field(default_factory=dict)  # {input: PSI} at or above the threshold
    snapshot: MonitoringSnapshot | None = None


def current(version: Any, *, ab_test: Any = None, arm: str = "") -> Health:
    """The health of ``version`` as its latest snapshot says (of ``ab_test``'s ``arm`` when given)."""
    rows = MonitoringSnapshot.objects.filter(version=version, ab_test=ab_test, arm=arm if ab_test is not None else "")
    snapshot = rows.select_related("version", "model_type").order_by("-computed_at", "-id").first()
    if snapshot is None:
        return Health(degraded=False)
    drifted = {str(name): float(psi) for name, psi in (snapshot.drifted or {}).items()}
    return Health(degraded=snapshot.degraded, drifted=drifted, snapshot=snapshot)
