"""What monitoring announces: a version newly degraded, inputs newly drifted (``alerts.events.emit``).

``announce`` compares a snapshot with the one before it of the same scope, so a condition is
announced once when it appears, not at every snapshot while it lasts. The data name the version
(ids, its label), the arm and figures: never a patient, a value or a subject.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.events import EventType, emit

if TYPE_CHECKING:
    from monitoring.models import MonitoringSnapshot


def _scope(snapshot: MonitoringSnapshot) -> dict[str, Any]:
    return {
        "version_id": snapshot.version_id,
        "version": snapshot.version.version,
        "ab_test": snapshot.ab_test_id,
        "arm": snapshot.arm or None,
        "snapshot": snapshot.pk,
    }


def _label(snapshot: MonitoringSnapshot) -> str:
    arm = f" (A/B test {snapshot.ab_test_id}, arm {snapshot.arm})" if snapshot.ab_test_id else ""
    return f"{snapshot.model_type.slug} {snapshot.version.version}{arm}"


def announce(snapshot: MonitoringSnapshot, previous: MonitoringSnapshot | None) -> list[str]:
    """Emit the events ``snapshot`` brings that ``previous`` did not; returns their types."""
    sent = []
    if snapshot.degraded and not (previous is not None and previous.degraded):
        emit(
            EventType.VERSION_DEGRADED,
            model_type=snapshot.model_type.slug,
            summary=f"{_label(snapshot)} is degraded: live accuracy below offline accuracy minus the tolerance",
            data={
                **_scope(snapshot),
                "live_accuracy": snapshot.live_accuracy,
                "interval": [snapshot.accuracy_low, snapshot.accuracy_high],
                "recent_accuracy": snapshot.recent_accuracy,
                "recent_interval": [snapshot.recent_low, snapshot.recent_high],
                "recent_units": snapshot.recent_units,
                "offline_accuracy": snapshot.offline_accuracy,
                "tolerance": snapshot.tolerance,
                "labelled": snapshot.labelled,
            },
        )
        sent.append(str(EventType.VERSION_DEGRADED))
    new = sorted(set(snapshot.drifted) - set(previous.drifted if previous is not None else {}))
    if new:
        emit(
            EventType.DRIFT_DETECTED,
            model_type=snapshot.model_type.slug,
            summary=f"{_label(snapshot)}: {len(new)} input(s) drifted (PSI at or above {snapshot.psi_threshold:g})",
            data={
                **_scope(snapshot),
                "psi": {name: snapshot.drifted[name] for name in new},
                "threshold": snapshot.psi_threshold,
                "inputs": snapshot.inputs,
            },
        )
        sent.append(str(EventType.DRIFT_DETECTED))
    return sent
