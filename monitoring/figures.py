"""The monitoring figures of a model type, read from its snapshots: one owner for the API and the admin.

``monitoring_figures`` answers both: the settings the figures were judged by, the latest snapshot
of the version (the active one unless another is named) and of each running A/B arm, and the
version's history, oldest first. ``charts`` draws the admin's (live accuracy with its interval
against the offline line; PSI per input against the threshold) with ``learning_engine.charts``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from learning_engine.charts import LineChart, line_chart
from models_registry.models import ABTest, ModelVersion
from monitoring.models import MonitoringSnapshot, ReferenceProfile

DEFAULT_HISTORY = 100
MAX_HISTORY = 500
# The admin's PSI chart draws the inputs with the highest latest PSI (the palette has five colours).
CHART_INPUTS = 4


def current_settings() -> dict[str, Any]:
    return {
        "tolerance": float(settings.MONITORING_TOLERANCE),
        "alpha": float(settings.MONITORING_ALPHA),
        "psi_threshold": float(settings.MONITORING_PSI_THRESHOLD),
        "min_inputs": int(settings.MONITORING_MIN_INPUTS),
        "window_hours": int(settings.MONITORING_WINDOW_HOURS),
        "interval_seconds": int(settings.MONITORING_INTERVAL_SECONDS),
        "degradation_window": int(settings.MONITORING_DEGRADATION_WINDOW),
    }


def _snapshots() -> Any:
    return MonitoringSnapshot.objects.select_related("version", "model_type")


def monitoring_figures(
    model_type: Any, *, version: ModelVersion | None = None, limit: int = DEFAULT_HISTORY
) -> dict[str, Any]:
    """What the API answers and the admin shows for ``model_type`` (module docstring)."""
    if version is None:
        version = ModelVersion.objects.active().filter(model_type=model_type).first()
    history: list[MonitoringSnapshot] = []
    if version is not None:
        recent = _snapshots().filter(version=version, ab_test__isnull=True).order_by("-computed_at", "-id")[:limit]
        history = list(reversed(list(recent)))
    arms = []
    for test in ABTest.objects.running().filter(model_type=model_type).order_by("pk"):
        for arm in ("a", "b"):
            latest = _snapshots().filter(ab_test=test, arm=arm).order_by("-computed_at", "-id").first()
            if latest is not None:
                arms.append(latest)
    return {
        "model_type": model_type.slug,
        "version": version.version if version is not None else None,
        "has_reference": version is not None and ReferenceProfile.objects.filter(version=version).exists(),
        "settings": current_settings(),
        "latest": history[-1] if history else None,
        "arms": arms,
        "history": history,
    }


def charts(history: list[MonitoringSnapshot]) -> dict[str, LineChart]:
    """The admin's charts of a version's history (x: when each snapshot was computed, in UTC: the
    snapshots come at the monitoring task's pace, and a gap of days shows as one)."""
    points = [(snapshot.computed_at, snapshot) for snapshot in history]
    accuracy = line_chart(
        [
            ("live accuracy", [(n, s.live_accuracy) for n, s in points]),
            ("interval (low)", [(n, s.accuracy_low) for n, s in points]),
            ("interval (high)", [(n, s.accuracy_high) for n, s in points]),
            ("offline accuracy", [(n, s.offline_accuracy) for n, s in points]),
            (
                "offline - tolerance",
                [(n, None if s.offline_accuracy is None else s.offline_accuracy - s.tolerance) for n, s in points],
            ),
        ],
        title="Live accuracy (anytime-valid interval) against the offline accuracy",
        x_label="computed (UTC)",
        time_x=True,
        y_label="accuracy",
        y_min=0.0,
        y_max=1.0,
    )
    latest = history[-1].drift if history else {}
    ranked = sorted(
        (name for name, figure in latest.items() if figure.get("psi") is not None),
        key=lambda name: -float(latest[name]["psi"]),
    )[:CHART_INPUTS]
    drift = line_chart(
        [
            *((name, [(n, (s.drift.get(name) or {}).get("psi")) for n, s in points]) for name in ranked),
            ("threshold", [(n, s.psi_threshold) for n, s in points]),
        ],
        title=f"PSI against the training reference (the {len(ranked)} highest now)",
        x_label="computed (UTC)",
        time_x=True,
        y_label="PSI",
        y_min=0.0,
    )
    return {"accuracy": accuracy, "drift": drift}
