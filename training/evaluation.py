"""Evaluation of a fitted pipeline on held-out rows (a snapshot's test split).

``evaluate`` returns plain JSON (no numpy scalars, no NaN: undefined values are ``None``), ready
for a ``JSONField`` and a ``django.tasks`` result. ``predict_rows`` gives the per-row predictions
themselves, which the registry pairs across two versions (McNemar's test).

Conventions:

- The label order is the model's classes, then any test label the model never saw (it cannot
  predict those, but they are errors it made and belong in the confusion matrix).
- Macro and weighted averages follow sklearn's default: over the labels that occur in the truth
  or the predictions; an ill-defined precision or recall counts as 0.
- AUROC is one-vs-rest per label, defined only where the label has both positives and negatives;
  the macro AUROC averages the defined ones (``None`` when there are none). For two classes both
  one-vs-rest curves are the same curve, so the macro equals the usual binary AUROC.
- Brier score: the multiclass form, mean over rows of the squared distance between the probability
  vector and the one-hot truth (0 is perfect, 2 the worst; for two classes, twice the binary form).
- 95% bootstrap intervals (percentile method) for accuracy and macro-F1. Both depend on a
  resample only through its confusion matrix, and resampling rows with replacement is the same as
  drawing the confusion matrix's cells from a multinomial with the observed cell frequencies, so
  1000 resamples cost one ``multinomial`` call of size 1000 x labels^2, whatever the test size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from training.features import feature_dicts, features

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
LATENCY_CALLS = 50
SUBGROUP_FIELDS = ("sex", "age_band")
UNKNOWN = "unknown"


def plain(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars and arrays converted, non-finite floats None."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.str_):
        return str(value)
    return value


@dataclass(frozen=True, slots=True)
class Predictions:
    """Per-row predictions; ``probabilities[i, j]`` is row i's probability of ``classes[j]``."""

    case_ids: list[Any]
    y_true: list[str]
    y_pred: list[str]
    classes: list[str]
    probabilities: np.ndarray


def model_classes(model: Any) -> list[str]:
    return [str(label) for label in model.classes_]


def predict_rows(model: Any, rows: Sequence[Mapping[str, Any]], *, numeric_features: list[str]) -> Predictions:
    """The model's predictions for ``rows`` (dataset-shaped; ``label`` may be absent)."""
    classes = model_classes(model)
    if rows:
        probabilities = np.asarray(model.predict_proba(feature_dicts(rows, numeric_features)), dtype=np.float64)
    else:
        probabilities = np.empty((0, len(classes)))
    predicted = np.argmax(probabilities, axis=1) if len(probabilities) else np.empty(0, dtype=np.int64)
    return Predictions(
        case_ids=[row.get("case_id") for row in rows],
        y_true=[str(row.get("label")) if row.get("label") is not None else "" for row in rows],
        y_pred=[classes[i] for i in predicted],
        classes=classes,
        probabilities=probabilities,
    )


# --- Metrics on index-coded labels ----------------------------------------------------------------


def _confusion(true_index: np.ndarray, pred_index: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(true_index * size + pred_index, minlength=size * size).reshape(size, size)


def _accuracy_and_macro_f1(confusions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and sklearn-style macro-F1 of a stack of confusion matrices (..., L, L)."""
    true_counts = confusions.sum(axis=-1)
    pred_counts = confusions.sum(axis=-2)
    hits = np.diagonal(confusions, axis1=-2, axis2=-1)
    n = true_counts.sum(axis=-1)
    accuracy = hits.sum(axis=-1) / n
    denominator = true_counts + pred_counts  # 2TP + FP + FN
    f1 = np.divide(2 * hits, denominator, out=np.zeros(denominator.shape), where=denominator > 0)
    present = denominator > 0  # the label occurs in the truth or the predictions
    macro_f1 = (f1 * present).sum(axis=-1) / present.sum(axis=-1)
    return accuracy, macro_f1


def _bootstrap(confusion: np.ndarray, *, resamples: int, seed: int) -> tuple[list[float], list[float]]:
    """Percentile intervals of accuracy and macro-F1 over bootstrap resamples of the rows."""
    n = int(confusion.sum())
    size = confusion.shape[0]
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, confusion.ravel() / n, size=resamples).reshape(resamples, size, size)
    accuracy, macro_f1 = _accuracy_and_macro_f1(cells)
    tail = (1 - CONFIDENCE) / 2 * 100
    bounds = [tail, 100 - tail]
    return (
        [float(v) for v in np.percentile(accuracy, bounds)],
        [float(v) for v in np.percentile(macro_f1, bounds)],
    )


def _auroc(true_index: np.ndarray, scores: np.ndarray, labels: list[str]) -> tuple[list[float | None], float | None]:
    per_label: list[float | None] = []
    for j in range(len(labels)):
        positive = true_index == j
        if positive.all() or not positive.any():
            per_label.append(None)  # undefined without both positives and negatives
        else:
            per_label.append(float(roc_auc_score(positive, scores[:, j])))
    defined = [value for value in per_label if value is not None]
    return per_label, (float(np.mean(defined)) if defined else None)


def _brier(true_index: np.ndarray, scores: np.ndarray) -> float:
    onehot = np.zeros_like(scores)
    onehot[np.arange(len(true_index)), true_index] = 1.0
    return float(np.mean(np.sum((scores - onehot) ** 2, axis=1)))


def _headline(
    true_index: np.ndarray,
    pred_index: np.ndarray,
    scores: np.ndarray,
    labels: list[str],
    *,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The metrics reported for the whole test set and for each subgroup."""
    true_labels = [labels[i] for i in true_index]
    pred_labels = [labels[i] for i in pred_index]
    averages: dict[str, Any] = {}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true_labels, pred_labels, average=average, zero_division=0
        )
        averages |= {f"precision_{average}": precision, f"recall_{average}": recall, f"f1_{average}": f1}
    confusion = _confusion(true_index, pred_index, len(labels))
    accuracy_ci, f1_ci = _bootstrap(confusion, resamples=resamples, seed=seed)
    _, auroc_macro = _auroc(true_index, scores, labels)
    return {
        "n": len(true_index),
        "accuracy": float(np.mean(true_index == pred_index)),
        "accuracy_ci": accuracy_ci,
        **averages,
        "f1_macro_ci": f1_ci,
        "auroc_macro": auroc_macro,
        "brier": _brier(true_index, scores),
    }


def _latency_ms(model: Any, rows: Sequence[Mapping[str, Any]], numeric_features: list[str], calls: int) -> dict:
    """Single-row prediction latency, featurisation included (what a predict request pays)."""
    model.predict_proba([features(rows[0], numeric_features)])  # warm-up, not counted
    timings = []
    for i in range(calls):
        row = rows[i % len(rows)]
        start = time.perf_counter()
        model.predict_proba([features(row, numeric_features)])
        timings.append((time.perf_counter() - start) * 1000)
    return {
        "median": float(np.median(timings)),
        "p95": float(np.percentile(timings, 95)),
        "calls": calls,
    }


def evaluate(
    model: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    numeric_features: list[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    latency_calls: int = LATENCY_CALLS,
) -> dict[str, Any]:
    """Test-set metrics of a fitted pipeline (see the module docstring), as plain JSON."""
    if not rows:
        raise ValueError("There are no rows to evaluate on.")
    predictions = predict_rows(model, rows, numeric_features=numeric_features)
    classes = predictions.classes
    labels = classes + sorted(set(predictions.y_true) - set(classes))
    position = {label: i for i, label in enumerate(labels)}
    true_index = np.array([position[label] for label in predictions.y_true], dtype=np.int64)
    pred_index = np.array([position[label] for label in predictions.y_pred], dtype=np.int64)
    # Columns for labels the model does not know: probability 0.
    scores = np.zeros((len(rows), len(labels)))
    scores[:, : len(classes)] = predictions.probabilities

    overall = _headline(true_index, pred_index, scores, labels, resamples=resamples, seed=seed)
    precision, recall, f1, support = precision_recall_fscore_support(
        predictions.y_true, predictions.y_pred, labels=labels, average=None, zero_division=0
    )
    auroc_per_label, _ = _auroc(true_index, scores, labels)
    per_class = [
        {
            "label": label,
            "precision": precision[j],
            "recall": recall[j],
            "f1": f1[j],
            "support": support[j],
            "auroc": auroc_per_label[j],
        }
        for j, label in enumerate(labels)
    ]

    subgroups: dict[str, list[dict[str, Any]]] = {}
    for field_name in SUBGROUP_FIELDS:
        values = np.array([str(row.get(field_name) or UNKNOWN) for row in rows], dtype=object)
        groups = []
        for value in sorted(set(values)):
            member = values == value
            metrics = _headline(
                true_index[member], pred_index[member], scores[member], labels, resamples=resamples, seed=seed
            )
            groups.append({"value": value, **metrics})
        subgroups[field_name] = groups

    return plain(
        {
            "test_size": overall.pop("n"),
            "labels": labels,
            **overall,
            "per_class": per_class,
            "confusion_matrix": {"labels": labels, "matrix": _confusion(true_index, pred_index, len(labels))},
            "subgroups": subgroups,
            "bootstrap": {"resamples": resamples, "seed": seed, "confidence": CONFIDENCE, "method": "percentile"},
            "latency_ms": _latency_ms(model, rows, numeric_features, latency_calls),
        }
    )
