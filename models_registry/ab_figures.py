"""The live figures of an A/B test, read from the prediction log, and the current decision.

What is counted
---------------
Split mode, per arm (the predictions the test routed to it, ``Prediction.ab_test``):

- ``assigned``: the units of assignment (``ab_stats.ArmFigures.assigned``): distinct subject
  pseudonyms plus the requests without a subject key (each of those was assigned on its own, at
  random; ``unkeyed`` counts them). The sample
  ratio check compares these with the configured split: one subject asking a hundred times is one
  assignment, not a hundred, so a busy subject cannot fake a mismatch;
- ``predicted``: prediction rows (answers given);
- ``labelled`` / ``correct``: predictions with clinicians' feedback, and the right ones among them;
- ``accuracy`` with its 95% interval (``models_registry.ab_stats``) and latency percentiles (of the
  latest ``LATENCY_SAMPLE`` predictions of the arm).

Shadow mode: arm A is every answered request; arm B is B's silent predictions of the same inputs
(``Prediction.shadow_of``). ``agreement`` is the share of requests where both predicted the same
code; on the requests that got feedback, each arm's accuracy is judged against the same confirmed
diagnosis (feedback is given on A's answer; B's silent prediction is scored against it).

The decision is ``ab_stats.evaluate`` on those counts, computed on every read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from django.db.models import Count, F, Q
from django.utils import timezone

from models_registry import ab_stats
from models_registry.models import ABTest, Feedback, Prediction

# Latency percentiles are computed on at most this many recent predictions per arm.
LATENCY_SAMPLE = 20_000
PERCENTILES = (50, 90, 99)
ARMS = ("a", "b")
# Points per arm in the accuracy-over-time chart (cumulative; thinned evenly beyond this).
MAX_CHART_POINTS = 200


def _latency(queryset: Any) -> dict[str, float | None]:
    values = list(queryset.order_by("-created_at").values_list("latency_ms", flat=True)[:LATENCY_SAMPLE])
    if not values:
        return {f"p{p}": None for p in PERCENTILES}
    found = np.percentile(np.asarray(values, dtype=float), PERCENTILES)
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, found, strict=True)}


def _counts(test: ABTest) -> dict[str, dict[str, int]]:
    """Per arm: predicted, unkeyed, subjects, labelled, correct (answered predictions only)."""
    rows = (
        Prediction.objects.filter(ab_test=test, shadow_of__isnull=True)
        .values("arm")
        .annotate(
            predicted=Count("id"),
            unkeyed=Count("id", filter=Q(subject_pseudonym="")),
            subjects=Count("subject_pseudonym", distinct=True, filter=~Q(subject_pseudonym="")),
            labelled=Count("feedback"),
            correct=Count("feedback", filter=Q(feedback__correct=True)),
        )
        .order_by("arm")
    )
    empty = {"predicted": 0, "unkeyed": 0, "subjects": 0, "labelled": 0, "correct": 0}
    counts = {arm: dict(empty) for arm in ARMS}
    for row in rows:
        found: dict[str, Any] = dict(row)
        if found["arm"] in counts:
            counts[found["arm"]] = {key: int(found[key]) for key in empty}
    return counts


def _shadow_counts(test: ABTest) -> dict[str, int]:
    """B's silent predictions paired with A's answers (``ab_stats.Agreement``'s counts)."""
    b_right = Q(predicted_code=F("shadow_of__feedback__diagnosis_code"))
    a_right = Q(shadow_of__feedback__correct=True)
    found = Prediction.objects.filter(ab_test=test, shadow_of__isnull=False).aggregate(
        compared=Count("id"),
        agreed=Count("id", filter=Q(predicted_code=F("shadow_of__predicted_code"))),
        labelled=Count("shadow_of__feedback"),
        a_correct=Count("id", filter=a_right),
        b_correct=Count("id", filter=b_right),
        only_a_correct=Count("id", filter=a_right & ~b_right),
        only_b_correct=Count("id", filter=b_right & ~a_right),
    )
    return {key: int(value or 0) for key, value in found.items()}


def _interval(interval: ab_stats.Interval) -> list[float] | None:
    """An interval of ``ab_stats`` as plain JSON ``[low, high]`` (None when it has none)."""
    if interval.low is None or interval.high is None:
        return None
    return [float(interval.low), float(interval.high)]


def live_figures(test: ABTest) -> dict[str, Any]:
    """The test's live figures and current decision, as plain JSON (see the module docstring)."""

    counts = _counts(test)
    answered = Prediction.objects.filter(ab_test=test, shadow_of__isnull=True)
    shadow_mode = test.mode == ABTest.Mode.SHADOW
    arms: dict[str, dict[str, Any]] = {}
    for arm, version in (("a", test.version_a), ("b", test.version_b)):
        row = counts[arm]
        arms[arm] = {
            "version": version.version,
            "assigned": row["subjects"] + row["unkeyed"],
            "predicted": row["predicted"],
            "unkeyed": row["unkeyed"],
            "labelled": row["labelled"],
            "correct": row["correct"],
            "latency_ms": _latency(answered.filter(arm=arm)),
        }
    shadow = None
    agreement = None
    if shadow_mode:
        found = _shadow_counts(test)
        agreement = ab_stats.Agreement(
            compared=found["compared"],
            agreed=found["agreed"],
            labelled=found["labelled"],
            only_a_correct=found["only_a_correct"],
            only_b_correct=found["only_b_correct"],
        )
        # Both arms are judged on the same requests: those B predicted too, with feedback on A's answer.
        arms["a"].update({"assigned": found["compared"], "labelled": found["labelled"], "correct": found["a_correct"]})
        arms["b"].update(
            {
                "assigned": found["compared"],
                "predicted": found["compared"],
                "unkeyed": 0,
                "labelled": found["labelled"],
                "correct": found["b_correct"],
                "latency_ms": _latency(Prediction.objects.filter(ab_test=test, shadow_of__isnull=False)),
            }
        )
        shadow = {
            "compared": found["compared"],
            "agreed": found["agreed"],
            "agreement": agreement.rate,
            "labelled": found["labelled"],
            "only_a_correct": found["only_a_correct"],
            "only_b_correct": found["only_b_correct"],
        }
    for figures in arms.values():
        figures["accuracy"] = figures["correct"] / figures["labelled"] if figures["labelled"] else None

    evaluation = ab_stats.evaluate(
        ab_stats.ArmFigures(
            assigned=arms["a"]["assigned"], labelled=arms["a"]["labelled"], correct=arms["a"]["correct"]
        ),
        ab_stats.ArmFigures(
            assigned=arms["b"]["assigned"], labelled=arms["b"]["labelled"], correct=arms["b"]["correct"]
        ),
        traffic_split=test.traffic_split,
        alpha=test.significance_level,
        min_labelled=test.min_labelled_per_arm,
        mode=test.mode,
        agreement=agreement,
    )
    arms["a"]["accuracy_interval"] = _interval(evaluation.accuracy_a)
    arms["b"]["accuracy_interval"] = _interval(evaluation.accuracy_b)
    srm_p = evaluation.srm_p_value
    return {
        "mode": test.mode,
        "traffic_split": test.traffic_split,
        "arms": arms,
        "shadow": shadow,
        "difference": _interval(evaluation.difference),
        "srm": {
            "p_value": None if srm_p is None or not math.isfinite(float(srm_p)) else float(srm_p),
            "failed": bool(evaluation.srm_failed),
            "expected_share_b": None if shadow_mode else test.traffic_split,
        },
        "min_labelled_reached": bool(evaluation.min_labelled_reached),
        "decision": str(evaluation.decision),
        "reason": str(evaluation.reason),
        "statistics": evaluation.as_dict(),
        "computed_at": timezone.now().isoformat(),
    }


# --- Accuracy over time (the admin chart) -----------------------------------------------------------


def _cumulative(events: Iterable[tuple[Any, bool]]) -> list[tuple[float, float]]:
    # The x axis is the arm's labelled count, not wall time: it is what the sequential test reads
    # after each feedback, and it stays legible when feedback arrives in bursts.
    points: list[tuple[float, float]] = []
    correct = 0
    for labelled, (_moment, right) in enumerate(events, start=1):
        correct += int(bool(right))
        points.append((float(labelled), correct / labelled))
    if len(points) > MAX_CHART_POINTS:
        step = len(points) / MAX_CHART_POINTS
        thinned = [points[int(i * step)] for i in range(MAX_CHART_POINTS - 1)]
        points = [*thinned, points[-1]]
    return points


def accuracy_over_time(test: ABTest) -> list[tuple[str, list[tuple[float, float]]]]:
    """Per arm, ``(labelled predictions so far, cumulative accuracy)`` at each feedback, oldest first."""
    answered = (
        Feedback.objects.filter(prediction__ab_test=test, prediction__shadow_of__isnull=True)
        .order_by("created_at", "id")
        .values_list("created_at", "prediction__arm", "correct")
    )
    by_arm: dict[str, list[tuple[Any, bool]]] = {arm: [] for arm in ARMS}
    for moment, arm, correct in answered.iterator(chunk_size=2000):
        if arm in by_arm:
            by_arm[arm].append((moment, correct))
    if test.mode == ABTest.Mode.SHADOW:
        silent = (
            Prediction.objects.filter(ab_test=test, shadow_of__feedback__isnull=False)
            .order_by("shadow_of__feedback__created_at", "id")
            .values_list("shadow_of__feedback__created_at", "predicted_code", "shadow_of__feedback__diagnosis_code")
        )
        by_arm["b"] = [(moment, code == truth) for moment, code, truth in silent.iterator(chunk_size=2000)]
    names = {"a": f"A {test.version_a.version}", "b": f"B {test.version_b.version}"}
    return [(names[arm], _cumulative(by_arm[arm])) for arm in ARMS]
