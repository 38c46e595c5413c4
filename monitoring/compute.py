"""Computing a monitoring snapshot of a version (or of one A/B arm) from the prediction log.

Scopes (``current_scopes``): each model type's active version, over all of its answers since its
latest activation; and each running A/B test's two arms, over the predictions the test routed to
the arm since it started (in shadow mode arm B is B's silent predictions, scored against the
feedback on A's answers, as the test's own figures do).

Figures (``docs/design.md``, "Monitoring"):

- cumulative since the scope's start: answers, labelled answers, live accuracy with its
  anytime-valid interval (``monitoring.stats.live_accuracy``), and the calibration of the labelled
  answers;
- over the recent labelled units (``MONITORING_DEGRADATION_WINDOW`` per epoch): the degradation
  rule and the interval it inverts (``monitoring.stats.recent_accuracy``), so a late drop is not
  drowned by the good months before it;
- in the window (``MONITORING_WINDOW_HOURS`` before now): answers, predicted-label shares and their
  PSI against the shares the version predicted on its offline test split, and per input the PSI
  against the reference, the missing rate and the out-of-range rate (from the ``InputTally`` rows).
  An input is **drifted** when its PSI is at least ``MONITORING_PSI_THRESHOLD`` and the window holds
  at least ``MONITORING_MIN_INPUTS`` inputs (fewer make PSI noise).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone

from models_registry.models import ABTest, ActivationHistory, Feedback, ModelVersion, PerformanceRecord, Prediction
from monitoring import stats
from monitoring.events import announce
from monitoring.models import InputTally, MonitoringSnapshot, ReferenceProfile
from monitoring.profiles import merge_tallies, reference_distribution


@dataclass(frozen=True)
class Scope:
    """What one snapshot covers: a version's answers, or one arm of an A/B test."""

    version: ModelVersion
    since: dt.datetime
    ab_test: ABTest | None = None
    arm: str = ""

    @property
    def shadow(self) -> bool:
        """Arm B of a shadow test: silent predictions, never answered."""
        return self.ab_test is not None and self.ab_test.mode == ABTest.Mode.SHADOW and self.arm == "b"

    def describe(self) -> str:
        base = f"{self.version.model_type.slug} {self.version.version}"
        return f"{base} (A/B test {self.ab_test.pk}, arm {self.arm})" if self.ab_test is not None else base


def activated_at(version: ModelVersion) -> dt.datetime:
    """When ``version`` last became active (its creation when the history has no such row)."""
    row = ActivationHistory.objects.filter(to_version=version).order_by("-created_at", "-id").first()
    if row is not None:
        return row.created_at
    return version.deployed_at or version.created_at


def version_scope(version: ModelVersion) -> Scope:
    return Scope(version=version, since=activated_at(version))


def current_scopes(model_type: Any = None) -> list[Scope]:
    """The active version of each model type (or of ``model_type``), and each running test's arms."""
    versions = ModelVersion.objects.active().select_related("model_type")
    tests = ABTest.objects.running().select_related("model_type", "version_a", "version_b")
    if model_type is not None:
        versions, tests = versions.filter(model_type=model_type), tests.filter(model_type=model_type)
    found = [version_scope(version) for version in versions.order_by("model_type__slug")]
    for test in tests.order_by("pk"):
        found.append(Scope(version=test.version_a, since=test.started_at, ab_test=test, arm="a"))
        found.append(Scope(version=test.version_b, since=test.started_at, ab_test=test, arm="b"))
    return found


def _predictions(scope: Scope) -> QuerySet[Prediction]:
    if scope.ab_test is not None:
        rows = Prediction.objects.filter(ab_test=scope.ab_test, arm=scope.arm)
        return rows.filter(shadow_of__isnull=not scope.shadow)
    return Prediction.objects.filter(version=scope.version, shadow_of__isnull=True, created_at__gte=scope.since)


def _labelled(scope: Scope) -> Iterator[tuple[int, str, bool, float]]:
    """``(first feedback id, subject pseudonym, correct, confidence)`` of each labelled prediction."""
    if scope.shadow:
        rows: Iterable[tuple[Any, ...]] = (
            _predictions(scope)
            .filter(shadow_of__feedback__isnull=False)
            .values_list(
                "shadow_of__feedback__id",
                "shadow_of__subject_pseudonym",
                "predicted_code",
                "shadow_of__feedback__diagnosis_code",
                "probabilities",
            )
            .order_by()
            .iterator(chunk_size=2000)
        )
        for feedback_id, subject, code, truth, probabilities in rows:
            yield feedback_id, subject, code == truth, _confidence(probabilities, code)
        return
    feedback = Feedback.objects.filter(prediction__in=_predictions(scope)).values_list(
        "id", "prediction__subject_pseudonym", "correct", "prediction__predicted_code", "prediction__probabilities"
    )
    for feedback_id, subject, correct, code, probabilities in feedback.order_by().iterator(chunk_size=2000):
        yield feedback_id, subject, bool(correct), _confidence(probabilities, code)


def _confidence(probabilities: Any, code: str) -> float:
    value = probabilities.get(code) if isinstance(probabilities, dict) else None
    try:
        number = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        number = 0.0
    return min(1.0, max(0.0, number))


def units_of(labelled: Iterable[tuple[int, str, bool, float]]) -> list[float]:
    """Per unit (a subject, or a prediction without a subject key), its share of correct labelled
    predictions, in the order of its first feedback: what the confidence sequence reads."""
    keyed: dict[str, list[int]] = {}
    units: list[tuple[int, float]] = []
    for feedback_id, subject, correct, _confidence_value in labelled:
        if not subject:
            units.append((feedback_id, float(correct)))
            continue
        found = keyed.setdefault(subject, [feedback_id, 0, 0])
        found[0] = min(found[0], feedback_id)
        found[1] += 1
        found[2] += int(correct)
    units += [(first, right / count) for first, count, right in keyed.values()]
    return [value for _first, value in sorted(units)]


def _offline(version: ModelVersion) -> dict[str, Any]:
    record = PerformanceRecord.objects.filter(version=version, source=PerformanceRecord.Source.OFFLINE).first()
    return dict(record.metrics) if record is not None else dict(version.metrics or {})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def offline_prediction_shares(metrics: dict[str, Any]) -> dict[str, float]:
    """The share of each code the version predicted on its offline test split (its confusion matrix's
    column sums); {} when the evaluation kept no matrix."""
    matrix = metrics.get("confusion_matrix") or {}
    labels, rows = matrix.get("labels") or [], matrix.get("matrix") or []
    try:
        columns = [sum(int(row[index]) for row in rows) for index in range(len(labels))]
    except (TypeError, ValueError, IndexError):
        return {}
    total = sum(columns)
    return {str(code): count / total for code, count in zip(labels, columns, strict=True)} if total else {}


def _drift(
    reference: dict[str, Any] | None, merged: dict[str, Any]
) -> tuple[dict[str, dict[str, float | None]], float | None]:
    count = merged["count"]
    described = (reference or {}).get("features") or {}
    drift: dict[str, dict[str, float | None]] = {}
    for name, bins in merged["bins"].items():
        if not count:
            continue
        expected = described.get(name)
        figure: dict[str, float | None] = {
            "psi": None,
            "missing_rate": bins[-1] / count,
            "reference_missing_rate": None,
            "out_of_range_rate": merged["out_of_range"].get(name, 0) / count,
        }
        if expected is not None:
            distribution = reference_distribution(expected)
            train_size = sum(distribution)
            figure["reference_missing_rate"] = distribution[-1] / train_size if train_size else None
            if len(distribution) == len(bins):
                figure["psi"] = stats.psi(distribution, bins)
        drift[name] = figure
    values = [figure["psi"] for figure in drift.values() if figure["psi"] is not None]
    return drift, (max(values) if values else None)


def compute_snapshot(scope: Scope, *, now: dt.datetime | None = None) -> MonitoringSnapshot:
    """Compute and store the snapshot of ``scope`` (module docstring); announces news (``announce``)."""
    now = now or timezone.now()
    window_start = now - dt.timedelta(hours=float(settings.MONITORING_WINDOW_HOURS))
    tolerance = float(settings.MONITORING_TOLERANCE)
    alpha = float(settings.MONITORING_ALPHA)
    threshold = float(settings.MONITORING_PSI_THRESHOLD)
    version = scope.version

    predictions = _predictions(scope).filter(created_at__lte=now)
    in_window = predictions.filter(created_at__gte=window_start)
    counted = in_window.values("predicted_code").annotate(count=Count("id")).order_by()
    by_code = {row["predicted_code"]: row["count"] for row in counted}
    window_total = sum(by_code.values())
    shares = {code: count / window_total for code, count in sorted(by_code.items())} if window_total else {}

    labelled = list(_labelled(scope))
    correct = sum(1 for _id, _subject, right, _conf in labelled if right)
    offline = _offline(version)
    offline_accuracy = _number(offline.get("accuracy"))
    units = units_of(labelled)
    live = stats.live_accuracy(units, offline=offline_accuracy, tolerance=tolerance, alpha=alpha)
    window = int(settings.MONITORING_DEGRADATION_WINDOW)
    recent = stats.recent_accuracy(units, offline=offline_accuracy, tolerance=tolerance, alpha=alpha, window=window)
    calibrated = stats.calibration([row[3] for row in labelled], [row[2] for row in labelled])

    reference_shares = offline_prediction_shares(offline)
    prediction_psi = None
    if shares and reference_shares:
        codes = sorted(set(reference_shares) | set(shares))
        prediction_psi = stats.psi([reference_shares.get(c, 0.0) for c in codes], [shares.get(c, 0.0) for c in codes])

    tallies = InputTally.objects.filter(version=version, created_at__gte=window_start, created_at__lte=now)
    if scope.ab_test is not None:
        tallies = tallies.filter(ab_test=scope.ab_test, arm=scope.arm)
    merged = merge_tallies(tallies.values_list("tally", flat=True).iterator(chunk_size=500))
    reference = ReferenceProfile.objects.filter(version=version).values_list("profile", flat=True).first()
    drift, max_psi = _drift(reference, merged)
    enough = merged["count"] >= int(settings.MONITORING_MIN_INPUTS)
    drifted = {
        name: figure["psi"]
        for name, figure in drift.items()
        if enough and figure["psi"] is not None and figure["psi"] >= threshold
    }

    previous = (
        MonitoringSnapshot.objects.filter(version=version, ab_test=scope.ab_test, arm=scope.arm)
        .order_by("-computed_at", "-id")
        .first()
    )
    snapshot = MonitoringSnapshot.objects.create(
        model_type_id=version.model_type_id,
        version=version,
        ab_test=scope.ab_test,
        arm=scope.arm,
        computed_at=now,
        since=scope.since,
        window_start=window_start,
        predictions=window_total,
        predictions_total=predictions.count(),
        labelled=len(labelled),
        correct=correct,
        units=live.units,
        live_accuracy=live.estimate,
        accuracy_low=live.low,
        accuracy_high=live.high,
        offline_accuracy=offline_accuracy,
        tolerance=tolerance,
        alpha=alpha,
        degraded=recent.degraded,
        degradation_evidence=recent.evidence,
        degradation_window=window,
        recent_start=recent.start,
        recent_units=recent.units,
        recent_accuracy=recent.estimate,
        recent_low=recent.low,
        recent_high=recent.high,
        recent_alpha=recent.alpha,
        has_reference=reference is not None,
        inputs=merged["count"],
        drift=drift,
        max_psi=max_psi,
        psi_threshold=threshold,
        drifted=drifted,
        prediction_shares=shares,
        reference_prediction_shares=reference_shares,
        prediction_psi=prediction_psi,
        ece=calibrated.ece,
        offline_ece=_number(offline.get("ece")),
        calibration=calibrated.bins if calibrated.count else [],
    )
    announce(snapshot, previous)
    return snapshot


def compute_all(model_type: Any = None, *, now: dt.datetime | None = None) -> list[MonitoringSnapshot]:
    """One snapshot per current scope (``current_scopes``)."""
    return [compute_snapshot(scope, now=now) for scope in current_scopes(model_type)]
