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
- ``accuracy`` with its 95% interval (``models_registry.experiments.stats``) and latency percentiles (of the
  latest ``LATENCY_SAMPLE`` predictions of the arm).

Shadow mode: arm A is every answered request; arm B is B's silent predictions of the same inputs
(``Prediction.shadow_of``). ``agreement`` is the share of requests where both predicted the same
code; on the requests that got feedback, each arm's accuracy is judged against the same confirmed
diagnosis (feedback is given on A's answer; B's silent prediction is scored against it).

The decision is ``ab_stats.evaluate`` on those counts and on the units of assignment with feedback
(``_observations``): per subject (or per request without a subject key), in the order of its first
feedback, the share of its labelled predictions that were correct; in shadow mode, the share B got
right minus the share A got right on the same requests. Computed on every read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from cases.dictionary.labels import version_labels
from models_registry.experiments import stats as ab_stats
from models_registry.serving.models import Feedback, Prediction

if TYPE_CHECKING:
    # Only a type: the model imports this module (``ABTest.evaluate``), so it sits below the model.
    from models_registry.experiments.models import ABTest

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


def per_diagnosis(test: ABTest) -> dict[str, list[dict[str, Any]]]:
    """Per arm and diagnosis code: ``display_name`` (the code's name in the dictionary the versions
    were trained under, B's else A's, else the cohort's current one; empty when none names it),
    ``predicted`` (the arm's predictions of it), ``confirmed`` (its predictions with feedback
    confirming this code) and ``correct`` (those it predicted too), codes in order. Split mode: each
    arm's answers and their feedback; shadow mode: A's answers, and B's silent predictions judged
    against the feedback on A's answer to the same request. Five queries, whatever the number of
    predictions."""
    answered = Prediction.objects.filter(ab_test=test, shadow_of__isnull=True)
    shadows = Prediction.objects.filter(ab_test=test, shadow_of__isnull=False)
    tables: dict[str, dict[str, dict[str, int]]] = {arm: {} for arm in ARMS}

    def add(arm: str, code: str, key: str, count: int) -> None:
        if arm in tables and count:
            row = tables[arm].setdefault(code, {"predicted": 0, "confirmed": 0, "correct": 0})
            row[key] += count

    right = Q(predicted_code=F("shadow_of__feedback__diagnosis_code"))  # B's silent answer vs A's feedback
    for rows in (answered, shadows):
        for arm, code, count in rows.values_list("arm", "predicted_code").annotate(n=Count("id")).order_by():
            add(arm, code, "predicted", count)
    judged: tuple[Any, ...] = (
        answered.filter(feedback__isnull=False)
        .values_list("arm", "feedback__diagnosis_code")
        .annotate(n=Count("id"), right=Count("id", filter=Q(feedback__correct=True)))
        .order_by(),
        shadows.filter(shadow_of__feedback__isnull=False)
        .values_list("arm", "shadow_of__feedback__diagnosis_code")
        .annotate(n=Count("id"), right=Count("id", filter=right))
        .order_by(),
    )
    for rows in judged:
        for arm, code, count, correct in rows:
            add(arm, code, "confirmed", count)
            add(arm, code, "correct", correct)
    dictionary_id = test.version_b.dictionary_id or test.version_a.dictionary_id
    labels = version_labels(dictionary_id, test.model_type.cohort)
    return {
        arm: [
            {"code": code, "display_name": labels.diagnosis_name(code), **tables[arm][code]}
            for code in sorted(tables[arm])
        ]
        for arm in ARMS
    }


def _ordered(units: list[tuple[int, float]]) -> np.ndarray:
    """The values of ``(first feedback id, value)`` units, oldest first feedback first."""
    return np.asarray([value for _, value in sorted(units)], dtype=np.float64)


def _observations(test: ABTest) -> ab_stats.Observations:
    """The units of assignment with feedback, as the sequential test reads them (``ab_stats.Observations``).

    A subject is one unit, whatever the number of its predictions: its share of correct ones. A request
    without a subject key was assigned on its own, so it is a unit of one. The order is that of each
    unit's first feedback (the feedback id: it only grows), fixed once the unit exists.
    """
    if test.mode == test.Mode.SHADOW:
        silent = Prediction.objects.filter(ab_test=test, shadow_of__isnull=False, shadow_of__feedback__isnull=False)
        a_right = Q(shadow_of__feedback__correct=True)
        b_right = Q(predicted_code=F("shadow_of__feedback__diagnosis_code"))
        paired: list[tuple[int, float]] = []
        keyed = (
            silent.exclude(shadow_of__subject_pseudonym="")
            .values("shadow_of__subject_pseudonym")
            .annotate(
                first=Min("shadow_of__feedback__id"),
                labelled=Count("id"),
                a_correct=Count("id", filter=a_right),
                b_correct=Count("id", filter=b_right),
            )
            .order_by()
        )
        for shadow_row in keyed:
            row: dict[str, Any] = dict(shadow_row)
            paired.append((row["first"], (row["b_correct"] - row["a_correct"]) / row["labelled"]))
        unkeyed = silent.filter(shadow_of__subject_pseudonym="").values_list(
            "shadow_of__feedback__id",
            "shadow_of__feedback__correct",
            "predicted_code",
            "shadow_of__feedback__diagnosis_code",
        )
        for first, a_correct, code, truth in unkeyed.iterator(chunk_size=2000):
            paired.append((first, float(code == truth) - float(bool(a_correct))))
        return ab_stats.Observations(paired=_ordered(paired))

    answered = Feedback.objects.filter(prediction__ab_test=test, prediction__shadow_of__isnull=True)
    units: dict[str, list[tuple[int, float]]] = {arm: [] for arm in ARMS}
    keyed_rows = (
        answered.exclude(prediction__subject_pseudonym="")
        .values("prediction__arm", "prediction__subject_pseudonym")
        .annotate(first=Min("id"), labelled=Count("id"), correct=Count("id", filter=Q(correct=True)))
        .order_by()
    )
    for keyed_row in keyed_rows:
        found: dict[str, Any] = dict(keyed_row)
        if found["prediction__arm"] in units:
            units[found["prediction__arm"]].append((found["first"], found["correct"] / found["labelled"]))
    unkeyed_rows = answered.filter(prediction__subject_pseudonym="").values_list("prediction__arm", "id", "correct")
    for arm, first, correct in unkeyed_rows.iterator(chunk_size=2000):
        if arm in units:
            units[arm].append((first, float(bool(correct))))
    return ab_stats.Observations(a=_ordered(units["a"]), b=_ordered(units["b"]))


def _interval(interval: ab_stats.Interval) -> list[float] | None:
    """An interval of ``ab_stats`` as plain JSON ``[low, high]`` (None when it has none)."""
    if interval.low is None or interval.high is None:
        return None
    return [float(interval.low), float(interval.high)]


def live_figures(test: ABTest) -> dict[str, Any]:
    """The test's live figures and current decision, as plain JSON (see the module docstring)."""

    counts = _counts(test)
    answered = Prediction.objects.filter(ab_test=test, shadow_of__isnull=True)
    shadow_mode = test.mode == test.Mode.SHADOW
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
        observations=_observations(test),
    )
    arms["a"]["accuracy_interval"] = _interval(evaluation.accuracy_a)
    arms["b"]["accuracy_interval"] = _interval(evaluation.accuracy_b)
    srm_p, srm_e = evaluation.srm_p_value, evaluation.srm_e_value
    return {
        "mode": test.mode,
        "traffic_split": test.traffic_split,
        "arms": arms,
        "shadow": shadow,
        "difference": _interval(evaluation.difference),
        "srm": {
            "p_value": None if srm_p is None or not math.isfinite(float(srm_p)) else float(srm_p),
            "e_value": None if srm_e is None or not math.isfinite(srm_e) else float(srm_e),
            "failed": bool(evaluation.srm_failed),
            "level": ab_stats.SRM_LEVEL,
            "expected_share_b": None if shadow_mode else test.traffic_split,
            "method": None if shadow_mode else ab_stats.SRM_METHOD,
        },
        "min_labelled_reached": bool(evaluation.min_labelled_reached),
        "decision": str(evaluation.decision),
        "reason": str(evaluation.reason),
        "statistics": evaluation.as_dict(),
        "per_diagnosis": per_diagnosis(test),
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
    if test.mode == test.Mode.SHADOW:
        silent = (
            Prediction.objects.filter(ab_test=test, shadow_of__feedback__isnull=False)
            .order_by("shadow_of__feedback__created_at", "id")
            .values_list("shadow_of__feedback__created_at", "predicted_code", "shadow_of__feedback__diagnosis_code")
        )
        by_arm["b"] = [(moment, code == truth) for moment, code, truth in silent.iterator(chunk_size=2000)]
    names = {"a": f"A {test.version_a.version}", "b": f"B {test.version_b.version}"}
    return [(names[arm], _cumulative(by_arm[arm])) for arm in ARMS]
