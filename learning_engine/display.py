"""How numbers and names read on the admin's pages: one set of metric names, one number format.

Metrics are stored under machine keys (``f1_macro``, ``accuracy_ci``, ``test_size``) by the
trainer, the registry and external trainers alike; every page that shows them names them with
``metric_name`` and writes their values with ``metric_value``, so the job's latest metrics, its
evaluation, the version page and the comparison agree. Counts get thousands separators; shares of
cases people read as percentages (accuracy, F1, precision, recall) one decimal ("91.3%", a
difference in points); other scores (AUROC, Brier, log loss) three decimals (never "-0.000");
sizes in KB/MB. The API keeps the raw numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.contrib.humanize.templatetags.humanize import intcomma
from django.template.defaultfilters import filesizeformat

# Display names of the metric keys (training.evaluation, models_registry, the SGD/MLP history).
METRIC_NAMES: dict[str, str] = {
    "accuracy": "Accuracy",
    "f1_macro": "F1 (macro)",
    "f1_weighted": "F1 (weighted)",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)",
    "precision_weighted": "Precision (weighted)",
    "recall_weighted": "Recall (weighted)",
    "auroc_macro": "AUROC (macro, one-vs-rest)",
    "brier": "Brier score",
    "ece": "Expected calibration error",
    "log_loss": "Log loss",
    "test_size": "Test-set size",
    "train_size": "Training-set size",
    "validation_size": "Validation-set size",
    "train_loss": "Training loss",
    "val_loss": "Validation loss",
    "val_accuracy": "Validation accuracy",
    "epoch": "Epoch",
    "brier_definition": "Brier score definition",
}
# Keys whose values are counts (whole numbers with separators).
COUNT_KEYS = frozenset({"test_size", "train_size", "validation_size", "epoch", "n", "support", "cases", "calls"})
INTERVAL_SUFFIX = "_ci"
# Keys whose values are shares of cases, read as percentages (AUROC, Brier and ECE are not).
PERCENT_KEYS = frozenset(
    {
        "accuracy",
        "val_accuracy",
        "f1_macro",
        "f1_weighted",
        "precision_macro",
        "recall_macro",
        "precision_weighted",
        "recall_weighted",
        "precision",
        "recall",
        "f1",
    }
)


def metric_name(key: str) -> str:
    """``f1_macro`` -> "F1 (macro)"; ``accuracy_ci`` -> "Accuracy, 95% interval"; unknown keys in words."""
    if key.endswith(INTERVAL_SUFFIX):
        return f"{metric_name(key[: -len(INTERVAL_SUFFIX)])}, 95% interval"
    return METRIC_NAMES.get(key) or key.replace("_", " ").capitalize()


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None.

    Metrics come from JSON columns that external trainers also write, so anything may be there.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return number if math.isfinite(number) else None


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: integers with thousands separators, floats with ``digits`` decimals
    (no "-0.000": a value that rounds to zero has no sign), "—" for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return intcomma(value, use_l10n=False)
    number = finite_number(value)
    if number is None:
        return "—"
    text = f"{number:,.{digits}f}"
    return text[1:] if text.startswith("-") and float(text[1:].replace(",", "")) == 0 else text


def fmt_interval(value: Any, digits: int = 3, *, missing: str = "") -> str:
    """A ``[low, high]`` interval as "low to high"; ``missing`` when it is not two numbers."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(finite_number(v) is not None for v in value):
        return f"{fmt(value[0], digits)} to {fmt(value[1], digits)}"
    return missing


def fmt_count(value: Any) -> str:
    """A count: "3,572"; a whole float (from JSON) as a whole number."""
    number = finite_number(value)
    if number is None:
        return "—"
    return fmt(int(number)) if number.is_integer() else fmt(number)


def fmt_percent(value: Any, digits: int = 1) -> str:
    """A share (0..1) as people read it: 0.15 -> "15%", 0.125 -> "12.5%"."""
    number = finite_number(value)
    if number is None:
        return "—"
    text = f"{number * 100:.{digits}f}".rstrip("0").rstrip(".")
    return f"{'0' if text in ('-0', '') else text}%"


def fmt_score_percent(value: Any) -> str:
    """A score that is a share of cases, with one decimal: 0.9134 -> "91.3%", 1 -> "100.0%"."""
    number = finite_number(value)
    if number is None:
        return "—"
    text = f"{number * 100:.1f}"
    return f"{text[1:] if text == '-0.0' else text}%"


def fmt_points(value: Any) -> str:
    """A difference of two such scores in percentage points: 0.012 -> "+1.2 points"."""
    number = finite_number(value)
    if number is None:
        return "—"
    text = f"{number * 100:+.1f}"
    return f"{'0.0' if text in ('+0.0', '-0.0') else text} points"


def fmt_difference(key: str, value: Any, digits: int = 3) -> str:
    """The difference of two values of metric ``key``: points for percentages, else a decimal."""
    return fmt_points(value) if key in PERCENT_KEYS else fmt(value, digits)


def fmt_difference_interval(key: str, value: Any, digits: int = 3) -> str:
    """The 95% interval of such a difference: "-1.2 to +3.4 points", or decimals; "" without one."""
    if not fmt_interval(value):
        return ""
    if key in PERCENT_KEYS:
        low, high = (fmt_points(bound).removesuffix(" points") for bound in value)
        return f"{low} to {high} points"
    return fmt_interval(value, digits)


def fmt_bytes(value: Any) -> str:
    """A size: "137.5 KB (140,825 bytes)"."""
    number = finite_number(value)
    if number is None:
        return "—"
    return f"{filesizeformat(int(number))} ({fmt(int(number))} bytes)"


def metric_value(key: str, value: Any, digits: int = 3) -> str:
    """A metric's value as its key says: intervals as "low to high", counts whole, scores decimal."""
    if key.endswith(INTERVAL_SUFFIX):
        if key[: -len(INTERVAL_SUFFIX)] in PERCENT_KEYS:
            if (
                isinstance(value, (list, tuple))
                and len(value) == 2
                and all(finite_number(v) is not None for v in value)
            ):
                return f"{fmt_score_percent(value[0])} to {fmt_score_percent(value[1])}"
            return "—"
        return fmt_interval(value, digits, missing="—")
    if key in COUNT_KEYS:
        return fmt_count(value)
    if isinstance(value, str):
        return value
    if key in PERCENT_KEYS:
        return fmt_score_percent(value)
    return fmt(value, digits)


def metric_rows(metrics: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """A metrics mapping as (display name, value) rows: numbers, words and intervals; nested values
    (curves, bins, tables, label lists) are left out for the tables that draw them."""

    def shown(key: str, value: Any) -> bool:
        if key.endswith(INTERVAL_SUFFIX):
            return isinstance(value, (list, tuple))
        return isinstance(value, (int, float, str)) and not isinstance(value, bool)

    return [
        (metric_name(key), metric_value(key, value))
        for key, value in metrics.items()
        if key not in skip and shown(key, value)
    ]
