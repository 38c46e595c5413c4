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
- Brier score as scikit-learn's ``brier_score_loss`` defines it (``BRIER_DEFINITION``): for two
  labels the conventional binary form, the mean squared error of the probability of the outcome
  (0 is perfect, 1 the worst); for more, Brier's original sum over the labels of the squared
  error, averaged over rows (0 to 2).
- Calibration (``calibration``): top-label reliability, the rows grouped into 10 equal-width bins of
  the predicted label's probability, each bin's mean probability against its accuracy, and the
  expected calibration error (ECE: the bins' |accuracy - mean probability| weighted by their share of
  rows; Guo et al. 2017) with a 95% percentile bootstrap interval over resampled rows.
- 95% bootstrap intervals (percentile method) for accuracy and macro-F1. Both depend on a
  resample only through its confusion matrix, and resampling rows with replacement is the same as
  drawing the confusion matrix's cells from a multinomial with the observed cell frequencies, so
  1000 resamples cost one ``multinomial`` call of size 1000 x labels^2, whatever the test size.

Cost: the whole test set and every subgroup are scored from index-coded labels with numpy:
precision, recall and F1 from the confusion matrix, AUROC from ranks (one sort per label for the
whole set, which the subgroups reuse), rather than through sklearn's metric functions, whose
input checks cost more than the arithmetic. The tests compare every figure with sklearn's. Our
pipelines get their matrix from the rows' columns (``training.features.feature_matrix``), not a
feature dict per row; the single-row latency does go through ``features`` and the whole pipeline,
as a prediction request does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline

from training.features import RowColumns, columns_of, feature_dicts, feature_matrix, features

Rows = Sequence[Mapping[str, Any]] | RowColumns

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
# Single-row predictions timed for the latency (about 1 ms each): enough for a median and a p95.
LATENCY_CALLS = 20
SUBGROUP_FIELDS = ("sex", "age_band")


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


def _dense_vectorizer(model: Any) -> DictVectorizer | None:
    """The leading dense ``DictVectorizer`` of a pipeline (ours all have one), else None."""
    if isinstance(model, Pipeline) and model.steps:
        first = model.steps[0][1]
        if isinstance(first, DictVectorizer) and not first.sparse:
            return first
    return None


def probabilities_of(model: Any, rows: Rows, *, numeric_features: list[str]) -> np.ndarray:
    """``model.predict_proba`` of the rows' feature dicts, as float64.

    For our pipelines the vectorizer's matrix is built from the rows' columns instead
    (``training.features.feature_matrix``: the same matrix, without a dict per row), then passed
    through the remaining steps as ``Pipeline.predict_proba`` would.
    """
    classes = model_classes(model)
    if not len(rows):
        return np.empty((0, len(classes)))
    vectorizer = _dense_vectorizer(model)
    if vectorizer is None:
        if isinstance(rows, RowColumns):
            raise TypeError("Only a pipeline led by a dense DictVectorizer predicts from columns; pass row dicts.")
        return np.asarray(model.predict_proba(feature_dicts(rows, numeric_features)), dtype=np.float64)
    X = feature_matrix(columns_of(rows), vectorizer, numeric_features)
    for _, step in model.steps[1:-1]:
        if step is not None and step != "passthrough":
            X = step.transform(X)
    return np.asarray(model.steps[-1][1].predict_proba(X), dtype=np.float64)


def _truth(label: Any) -> str:
    return str(label) if label is not None else ""


def predict_rows(model: Any, rows: Rows, *, numeric_features: list[str]) -> Predictions:
    """The model's predictions for ``rows`` (dataset-shaped; ``label`` may be absent).

    ``rows`` are row dicts, a dataset file's split (``read_rows_by_split``), or, for our
    pipelines, ``RowColumns`` made once by the caller.
    """
    classes = model_classes(model)
    columns = columns_of(rows)  # once: the matrix and the labels both come from it
    source = columns if _dense_vectorizer(model) is not None else rows
    probabilities = probabilities_of(model, source, numeric_features=numeric_features)
    predicted = np.argmax(probabilities, axis=1) if len(probabilities) else np.empty(0, dtype=np.int64)
    return Predictions(
        case_ids=columns.case_ids.tolist(),
        y_true=columns.labels.mapped([_truth(value) for value in columns.labels.values]).tolist(),
        y_pred=[classes[i] for i in predicted],
        classes=classes,
        probabilities=probabilities,
    )


# --- Metrics on index-coded labels ----------------------------------------------------------------


def _confusion(true_index: np.ndarray, pred_index: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(true_index * size + pred_index, minlength=size * size).reshape(size, size)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's ``zero_division=0``)."""
    ratio: np.ndarray = np.divide(numerator, denominator, out=np.zeros(np.shape(denominator)), where=denominator > 0)
    return ratio


def _per_label(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per label of a confusion matrix (truth in rows).

    As sklearn's ``precision_recall_fscore_support(zero_division=0)``: F1 is 2TP / (2TP + FP + FN),
    and each is 0 where undefined.
    """
    true_counts = confusion.sum(axis=1)
    pred_counts = confusion.sum(axis=0)
    hits = np.diagonal(confusion)
    return (
        _ratio(hits, pred_counts),
        _ratio(hits, true_counts),
        _ratio(2 * hits, true_counts + pred_counts),
        true_counts,
    )


def _averages(confusion: np.ndarray) -> dict[str, float]:
    """Macro and weighted precision, recall and F1 over the labels in the truth or predictions."""
    precision, recall, f1, support = _per_label(confusion)
    present = (support + confusion.sum(axis=0)) > 0
    result: dict[str, float] = {}
    for average in ("macro", "weighted"):
        weights = present.astype(np.float64) if average == "macro" else support.astype(np.float64)
        for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            result[f"{name}_{average}"] = float(np.sum(values * weights) / np.sum(weights))
    return result


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


def _auroc(true_index: np.ndarray, scores: np.ndarray, order: np.ndarray) -> tuple[list[float | None], float | None]:
    """One-vs-rest AUROC per label (None where undefined) and their mean.

    The Mann-Whitney form: the chance that a random positive scores above a random negative, a
    tie counting one half, which is the area under the ROC curve (``roc_auc_score``; tests
    compare). From the positives' average ranks, ties sharing theirs. ``order[:, j]`` lists the
    rows by ascending score of label j (``_score_order``).
    """
    n, size = scores.shape
    positives = np.bincount(true_index, minlength=size)[:size]
    per_label: list[float | None] = [None] * size  # undefined without both positives and negatives
    for j in np.flatnonzero((positives > 0) & (positives < n)):
        rows = order[:, j]
        ordered = scores[rows, j]
        # Runs of equal scores: each run's rows share the average of the run's ranks (1-based).
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        ends = np.append(starts[1:], n)
        positives_per_run = np.add.reduceat((true_index[rows] == j).astype(np.float64), starts)
        rank_sum = float(np.dot((starts + ends + 1) / 2, positives_per_run))
        pos = float(positives[j])
        per_label[j] = (rank_sum - pos * (pos + 1) / 2) / (pos * (n - pos))
    values = [value for value in per_label if value is not None]
    return per_label, (float(np.mean(values)) if values else None)


def _score_order(scores: np.ndarray) -> np.ndarray:
    """Each label's rows by ascending score (a column per label)."""
    return np.argsort(scores, axis=0)


def _order_within(order: np.ndarray, member: np.ndarray) -> np.ndarray:
    """``_score_order`` of the member rows, from the whole set's: no sort, the order is kept."""
    position = np.cumsum(member) - 1  # a member's row within the subgroup
    kept = member[order].T  # per label, which rows of its order are members
    within: np.ndarray = position[order.T[kept].reshape(order.shape[1], -1).T]
    return within


BRIER_DEFINITION = (
    "scikit-learn's brier_score_loss: for two labels the mean squared error of the outcome's probability "
    "(0 to 1); for more, the sum over labels of the squared error, averaged over cases (0 to 2)"
)
CALIBRATION_BINS = 10
CALIBRATION_METHOD = "top-label reliability, 10 equal-width bins; ECE (Guo et al. 2017), 95% bootstrap interval"
# Bootstrap draws per chunk (resamples x rows): bounds memory on a large test split.
_CHUNK_CELLS = 2_000_000


def brier_per_case(true_index: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each row's Brier score (``BRIER_DEFINITION``); their mean is ``brier_score_loss``."""
    onehot = np.zeros_like(scores)
    onehot[np.arange(len(true_index)), true_index] = 1.0
    squared = np.sum((scores - onehot) ** 2, axis=1)
    # Two labels: both columns carry the same error, so the sum is twice the binary form.
    return squared / 2 if scores.shape[1] == 2 else squared


def _brier(true_index: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(brier_per_case(true_index, scores)))


def _ece(counts: np.ndarray, confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """ECE from per-bin row counts, sums of confidence and sums of correct ones (..., bins)."""
    total = counts.sum(axis=-1)
    ece: np.ndarray = np.abs(correct - confidence).sum(axis=-1) / np.maximum(total, 1)
    return ece


def calibration(
    true_index: np.ndarray, scores: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, Any]:
    """The reliability diagram (``CALIBRATION_BINS`` bins) and the ECE with its bootstrap interval.

    A row's confidence is the probability of the label predicted (the highest); it is right when
    that label is the truth. Bin ``b`` holds confidences in [b/10, (b+1)/10), the last bin 1.0 too.
    """
    n = len(true_index)
    confidence = scores.max(axis=1)
    correct = (np.argmax(scores, axis=1) == true_index).astype(np.float64)
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS).astype(np.float64)
    sum_confidence = np.bincount(bins, weights=confidence, minlength=CALIBRATION_BINS)
    sum_correct = np.bincount(bins, weights=correct, minlength=CALIBRATION_BINS)
    ece = float(_ece(counts, sum_confidence, sum_correct))
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK_CELLS // max(n, 1)))
    values: list[np.ndarray] = []
    done = 0
    while done < resamples:
        count = min(chunk, resamples - done)
        drawn = rng.integers(0, n, size=(count, n))
        offsets = (np.arange(count) * CALIBRATION_BINS)[:, None]
        codes = (offsets + bins[drawn]).ravel()
        size = count * CALIBRATION_BINS
        sums = [
            np.bincount(codes, weights=weights, minlength=size).reshape(count, CALIBRATION_BINS)
            for weights in (None, confidence[drawn].ravel(), correct[drawn].ravel())
        ]
        values.append(_ece(*sums))
        done += count
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(np.concatenate(values), [tail, 100 - tail])
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    return {
        "bins": [
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(counts[b]),
                "confidence": float(sum_confidence[b] / counts[b]) if counts[b] else None,
                "accuracy": float(sum_correct[b] / counts[b]) if counts[b] else None,
            }
            for b in range(CALIBRATION_BINS)
        ],
        "ece": ece,
        "ece_ci": [float(low), float(high)],
        "method": CALIBRATION_METHOD,
    }


def _headline(
    true_index: np.ndarray,
    pred_index: np.ndarray,
    scores: np.ndarray,
    labels: list[str],
    *,
    order: np.ndarray,
    resamples: int,
    seed: int,
) -> tuple[list[float | None], dict[str, Any]]:
    """The metrics reported for the whole test set and for each subgroup, and the AUROC per label."""
    confusion = _confusion(true_index, pred_index, len(labels))
    accuracy_ci, f1_ci = _bootstrap(confusion, resamples=resamples, seed=seed)
    auroc_per_label, auroc_macro = _auroc(true_index, scores, order)
    return auroc_per_label, {
        "n": len(true_index),
        "accuracy": float(np.trace(confusion) / len(true_index)),
        "accuracy_ci": accuracy_ci,
        **_averages(confusion),
        "f1_macro_ci": f1_ci,
        "auroc_macro": auroc_macro,
        "brier": _brier(true_index, scores),
    }


# A timing, not a statistic of the predictions: `make mutation` leaves it out.
# pragma: no mutate start
def _latency_ms(
    model: Any, rows: Sequence[Mapping[str, Any]], numeric_features: list[str], calls: int
) -> dict[str, Any]:
    """Single-row prediction latency, featurisation included (what a predict request pays)."""
    sample = list(rows[: max(1, calls)])  # the row dicts exist before the clock runs, as in a request
    model.predict_proba([features(sample[0], numeric_features)])  # warm-up, not counted
    timings = []
    for i in range(calls):
        row = sample[i % len(sample)]
        start = time.perf_counter()
        model.predict_proba([features(row, numeric_features)])
        timings.append((time.perf_counter() - start) * 1000)
    return {
        "median": float(np.median(timings)),
        "p95": float(np.percentile(timings, 95)),
        "calls": calls,
    }


# pragma: no mutate end


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
    if not len(rows):
        raise ValueError("There are no rows to evaluate on.")
    columns = columns_of(rows)
    classes = model_classes(model)
    probabilities = probabilities_of(model, rows, numeric_features=numeric_features)
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("The model's probabilities are not all finite.")
    truths = [_truth(value) for value in columns.labels.values]
    used_truths = {_truth(value) for value in columns.labels.used_values()}
    labels = classes + sorted(used_truths - set(classes))
    position = {label: i for i, label in enumerate(labels)}
    true_index = columns.labels.mapped([position.get(truth, -1) for truth in truths], dtype=np.int64)
    pred_index = np.argmax(probabilities, axis=1).astype(np.int64)
    # Columns for labels the model does not know: probability 0.
    scores = np.zeros((len(columns), len(labels)))
    scores[:, : len(classes)] = probabilities

    order = _score_order(scores)
    auroc_per_label, overall = _headline(
        true_index, pred_index, scores, labels, order=order, resamples=resamples, seed=seed
    )
    confusion = _confusion(true_index, pred_index, len(labels))
    precision, recall, f1, support = _per_label(confusion)
    calibrated = calibration(true_index, scores, resamples=resamples, seed=seed)
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
        coded = getattr(columns, field_name)  # str(value or "unknown") per row, coded
        groups = []
        for value in sorted(coded.used_values()):
            member = coded.codes == coded.values.index(value)
            _, metrics = _headline(
                true_index[member],
                pred_index[member],
                scores[member],
                labels,
                order=_order_within(order, member),
                resamples=resamples,
                seed=seed,
            )
            groups.append({"value": value, **metrics})
        subgroups[field_name] = groups

    evaluation: dict[str, Any] = plain(
        {
            "test_size": overall.pop("n"),
            "labels": labels,
            **overall,
            "brier_definition": BRIER_DEFINITION,
            "ece": calibrated["ece"],
            "ece_ci": calibrated["ece_ci"],
            "calibration": calibrated,
            "per_class": per_class,
            "confusion_matrix": {"labels": labels, "matrix": confusion},
            "subgroups": subgroups,
            "bootstrap": {"resamples": resamples, "seed": seed, "confidence": CONFIDENCE, "method": "percentile"},
            "latency_ms": _latency_ms(model, rows, numeric_features, latency_calls),
        }
    )
    return evaluation
