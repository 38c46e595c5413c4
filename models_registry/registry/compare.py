"""Two versions of a model type compared on the same test cases.

Both versions predict the test split of one snapshot: their common one, or, when they were
evaluated on different snapshots, the newer of the two (so the older version is re-evaluated on
cases it may never have seen, and both answer for exactly the same cases). On those paired
predictions:

- each version's metrics (``training.evaluation.evaluate``: the definitions of the training issue);
- the difference b - a of accuracy with an exact interval from the discordant pairs
  (``paired_accuracy_interval``), which excludes 0 exactly when McNemar's test rejects; the
  differences of macro-F1 and Brier score with 95% intervals from a paired bootstrap (each resample
  draws test cases with replacement and scores both versions on the same draw), reported only from
  ``MIN_BOOTSTRAP_CASES`` cases up (below that a percentile bootstrap shrinks towards a point);
- McNemar's exact test on the discordant pairs (cases exactly one version gets right): under "no
  difference" each discordant case is equally likely to favour either version, so the count
  favouring b is Binomial(discordant, 1/2) (``scipy.stats.binomtest``, two-sided);
- the verdict at ``ALPHA``: ``a_better`` / ``b_better`` when McNemar's p-value is below it (the
  version with more discordant wins); otherwise ``no_significant_difference`` only when the accuracy
  interval rules out a difference of ``MARGIN`` (5 points) either way, and ``insufficient_evidence``
  when it does not (too few cases, or too few discordant ones: with 5 or fewer McNemar cannot reach
  0.05 at all), with the number of test cases that would detect ``MARGIN`` with 80% power
  (``cases_needed``);
- live accuracy from clinicians' feedback (the latest "live" performance record), when there is some;
- the A/B test of the two versions (either way round): the running one, else the latest, with its
  live figures and current decision (``models_registry.experiments.figures``); None when they never met.

The paired part is expensive (two artifact loads, the snapshot file, two evaluations) and depends
only on the two artifacts and the snapshot, so it is cached under their hashes; live accuracy and
the A/B figures are read fresh every time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from django.core.cache import cache
from scipy.stats import beta, binomtest, norm

from learning_engine.exceptions import DomainError, InvalidRequest
from models_registry.registry.evaluation import evaluate_artifact, holdout_rows
from models_registry.registry.models import ModelVersion, PerformanceRecord, headline_metrics
from training.evaluation import brier_per_case, plain, predict_rows
from training.models import DatasetSnapshot

if TYPE_CHECKING:
    from learning_engine.actors import SystemActor

ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 0
CACHE_SECONDS = 7 * 24 * 3600
CACHE_FORMAT = 2  # bump when the cached shape or the statistics change
MARGIN = 0.05  # the accuracy difference a comparison must be able to detect or rule out
POWER = 0.8  # of the sample size said to be needed for MARGIN
MIN_BOOTSTRAP_CASES = 30
# Bootstrap indices drawn per chunk (resamples x cases): bounds memory on a large test split.
_CHUNK_CELLS = 2_000_000

# (metric, higher is better) of the side-by-side table, in order.
METRICS: tuple[tuple[str, bool], ...] = (
    ("accuracy", True),
    ("f1_macro", True),
    ("f1_weighted", True),
    ("precision_macro", True),
    ("recall_macro", True),
    ("auroc_macro", True),
    ("brier", False),
)
VERDICTS = ("a_better", "b_better", "no_significant_difference", "insufficient_evidence")
ACCURACY_INTERVAL_METHOD = "exact, from the discordant pairs (Clopper-Pearson, projected)"
BOOTSTRAP_INTERVAL_METHOD = "paired percentile bootstrap"


# --- Statistics on paired predictions (pure functions, tested on constructed examples) -----------


@dataclass(frozen=True, slots=True)
class McNemar:
    both_correct: int
    a_only_correct: int
    b_only_correct: int
    both_wrong: int
    p_value: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "both_correct": self.both_correct,
            "a_only_correct": self.a_only_correct,
            "b_only_correct": self.b_only_correct,
            "both_wrong": self.both_wrong,
            "discordant": self.a_only_correct + self.b_only_correct,
            "p_value": self.p_value,
            "test": "exact McNemar (two-sided binomial test on the discordant pairs)",
        }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test on two versions' per-case correctness (same cases, same order)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    discordant = a_only + b_only
    # No discordant pair: the versions agree on every case; nothing favours either.
    p_value = float(binomtest(b_only, discordant, 0.5).pvalue) if discordant else 1.0
    return McNemar(
        both_correct=int(np.sum(a & b)),
        a_only_correct=a_only,
        b_only_correct=b_only,
        both_wrong=int(np.sum(~a & ~b)),
        p_value=p_value,
    )


def clopper_pearson(successes: int, trials: int, *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion; [0, 1] without trials."""
    if trials == 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    low = float(beta.ppf(tail, successes, trials - successes + 1)) if successes > 0 else 0.0
    high = float(beta.ppf(1 - tail, successes + 1, trials - successes)) if successes < trials else 1.0
    return low, high


def paired_accuracy_interval(test: McNemar, *, confidence: float = CONFIDENCE) -> list[float]:
    """An interval of acc_b - acc_a that agrees with McNemar's exact test (docs/statistics.md).

    The difference is ``psi (2 pi - 1)``: ``psi`` the share of discordant cases, ``pi`` the share
    of those b gets right. ``pi``'s Clopper-Pearson interval excludes 1/2 exactly when the exact
    test rejects (the two-sided binomial p-value at 1/2 is twice the smaller tail); ``psi``'s
    interval scales it, taking whichever end moves the bound outwards. So the interval excludes 0
    exactly when the verdict is a_better / b_better, and a test set with no discordant case still
    gets a wide interval, never a point. Coverage is at least ``confidence`` squared, and at least
    ``confidence`` in simulation (tests/models_registry/registry/test_compare.py).
    """
    discordant = test.a_only_correct + test.b_only_correct
    n = test.both_correct + test.both_wrong + discordant
    if n == 0:
        return [-1.0, 1.0]
    pi_low, pi_high = clopper_pearson(test.b_only_correct, discordant, confidence=confidence)
    psi_low, psi_high = clopper_pearson(discordant, n, confidence=confidence)
    low, high = 2 * pi_low - 1, 2 * pi_high - 1
    return [low * (psi_high if low < 0 else psi_low), high * (psi_high if high > 0 else psi_low)]


def cases_needed(test: McNemar, *, difference: float = MARGIN, alpha: float = ALPHA, power: float = POWER) -> int:
    """Test cases for McNemar's test to detect ``difference`` with ``power`` (Connor 1987).

    ``n = (z_(1 - alpha/2) sqrt(psi) + z_power sqrt(psi - d^2))^2 / d^2`` with ``psi`` the share of
    discordant cases, taken from this comparison but at least ``d`` (a difference of d needs at
    least that much discordance).
    """
    n = test.both_correct + test.both_wrong + test.a_only_correct + test.b_only_correct
    psi = max((test.a_only_correct + test.b_only_correct) / n if n else 0.0, difference)
    z_alpha, z_power = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    root = z_alpha * (psi**0.5) + z_power * max(psi - difference * difference, 0.0) ** 0.5
    return int(np.ceil(root * root / (difference * difference)))


def verdict(test: McNemar, *, alpha: float = ALPHA, margin: float = MARGIN) -> str:
    """``a_better`` / ``b_better`` when McNemar rejects; else whether the evidence rules out ``margin``."""
    if test.p_value < alpha and test.a_only_correct != test.b_only_correct:
        return "b_better" if test.b_only_correct > test.a_only_correct else "a_better"
    low, high = paired_accuracy_interval(test, confidence=1 - alpha)
    if -margin < low and high < margin:
        return "no_significant_difference"
    return "insufficient_evidence"


def _macro_f1(confusions: np.ndarray) -> np.ndarray:
    """Macro-F1 of a stack of confusion matrices (..., L, L), over the labels in truth or predictions.

    sklearn's definition (``f1_score(average="macro", zero_division=0)``), as the training
    evaluation computes it.
    """
    hits = np.diagonal(confusions, axis1=-2, axis2=-1)
    denominator = confusions.sum(axis=-1) + confusions.sum(axis=-2)  # 2TP + FP + FN
    f1 = np.divide(2 * hits, denominator, out=np.zeros(denominator.shape), where=denominator > 0)
    present = denominator > 0
    macro: np.ndarray = (f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
    return macro


def _confusions(true_index: np.ndarray, pred_index: np.ndarray, size: int) -> np.ndarray:
    """Confusion matrices of each row of index arrays (R, n) -> (R, size, size)."""
    resamples = true_index.shape[0]
    offsets = (np.arange(resamples) * size * size)[:, None]
    codes = (offsets + true_index * size + pred_index).ravel()
    return np.bincount(codes, minlength=resamples * size * size).reshape(resamples, size, size)


@dataclass(frozen=True, slots=True)
class PairedCases:
    """Index-coded truth and both versions' predictions, and per-case Brier scores."""

    true_index: np.ndarray
    pred_a: np.ndarray
    pred_b: np.ndarray
    brier_a: np.ndarray
    brier_b: np.ndarray
    labels: list[str]

    @property
    def n(self) -> int:
        return len(self.true_index)


def paired_bootstrap(cases: PairedCases, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict[str, Any]]:
    """Differences b - a (accuracy, macro-F1, Brier) with paired percentile bootstrap intervals."""
    n, size = cases.n, len(cases.labels)
    correct_diff = (cases.pred_b == cases.true_index).astype(np.float64) - (cases.pred_a == cases.true_index)
    brier_diff = cases.brier_b - cases.brier_a
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK_CELLS // max(n, 1)))
    diffs: dict[str, list[np.ndarray]] = {"accuracy": [], "f1_macro": [], "brier": []}
    done = 0
    while done < resamples:
        count = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(count, n))
        diffs["accuracy"].append(correct_diff[idx].mean(axis=1))
        diffs["brier"].append(brier_diff[idx].mean(axis=1))
        truth = cases.true_index[idx]
        f1_a = _macro_f1(_confusions(truth, cases.pred_a[idx], size))
        f1_b = _macro_f1(_confusions(truth, cases.pred_b[idx], size))
        diffs["f1_macro"].append(f1_b - f1_a)
        done += count

    full = _confusions(cases.true_index[None, :], cases.pred_a[None, :], size)
    full_b = _confusions(cases.true_index[None, :], cases.pred_b[None, :], size)
    point = {
        "accuracy": float(correct_diff.mean()),
        "f1_macro": float(_macro_f1(full_b)[0] - _macro_f1(full)[0]),
        "brier": float(brier_diff.mean()),
    }
    tail = (1 - CONFIDENCE) / 2 * 100
    result = {}
    for metric, chunks in diffs.items():
        values = np.concatenate(chunks)
        low, high = np.percentile(values, [tail, 100 - tail])
        result[metric] = {"difference": point[metric], "ci": [float(low), float(high)]}
    return result


def difference_rows(
    cases: PairedCases, test: McNemar, metrics_a: Mapping[str, Any], metrics_b: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The side-by-side rows: each metric of a and b, b - a, and its interval where there is one.

    Accuracy: the exact interval of ``paired_accuracy_interval``. Macro-F1 and Brier: the paired
    bootstrap, from ``MIN_BOOTSTRAP_CASES`` cases up. Other metrics: no interval.
    """
    intervals = paired_bootstrap(cases) if cases.n >= MIN_BOOTSTRAP_CASES else {}
    rows = []
    for metric, higher_is_better in METRICS:
        value_a, value_b = metrics_a.get(metric), metrics_b.get(metric)
        difference = value_b - value_a if value_a is not None and value_b is not None else None
        ci, method = None, None
        if metric == "accuracy":
            difference = (test.b_only_correct - test.a_only_correct) / cases.n if cases.n else None
            ci, method = paired_accuracy_interval(test), ACCURACY_INTERVAL_METHOD
        elif metric in intervals:
            difference, ci, method = intervals[metric]["difference"], intervals[metric]["ci"], BOOTSTRAP_INTERVAL_METHOD
        rows.append(
            {
                "metric": metric,
                "a": value_a,
                "b": value_b,
                "difference": difference,
                "ci": ci,
                "interval_method": method,
                "higher_is_better": higher_is_better,
            }
        )
    return rows


def pair(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    classes_a: Sequence[str],
    probabilities_a: np.ndarray,
    pred_b: Sequence[str],
    classes_b: Sequence[str],
    probabilities_b: np.ndarray,
) -> PairedCases:
    """Code both versions' predictions over one label list (truth and both models' classes)."""
    labels = sorted(set(y_true) | set(classes_a) | set(classes_b))
    position = {label: i for i, label in enumerate(labels)}
    true_index = np.array([position[label] for label in y_true], dtype=np.int64)

    def brier(classes: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
        # Per case over all labels (a label the model lacks has probability 0), as the evaluation
        # defines it (training.evaluation.BRIER_DEFINITION).
        scores = np.zeros((len(true_index), len(labels)))
        scores[:, [position[label] for label in classes]] = probabilities
        return brier_per_case(true_index, scores)

    return PairedCases(
        true_index=true_index,
        pred_a=np.array([position[label] for label in pred_a], dtype=np.int64),
        pred_b=np.array([position[label] for label in pred_b], dtype=np.int64),
        brier_a=brier(classes_a, probabilities_a),
        brier_b=brier(classes_b, probabilities_b),
        labels=labels,
    )


# --- The comparison of two versions ----------------------------------------------------------------
# Loading, caching and looking things up in the database: not statistics, and covered by the endpoint
# tests, which need a database; `make mutation` leaves this part out.
# pragma: no mutate start


def comparison_snapshot(a: ModelVersion, b: ModelVersion) -> DatasetSnapshot:
    """The snapshot both versions are scored on: the shared one, else the newer of their two."""
    snapshots = [s for s in (a.dataset, b.dataset) if s is not None]
    if not snapshots:
        raise DomainError(
            f"Neither {a.version} nor {b.version} names the dataset it was evaluated on; there is no test set "
            "to compare them on.",
            code="no_test_set",
        )
    return max(snapshots, key=lambda snapshot: (snapshot.created_at, snapshot.pk))


def cache_key(a: ModelVersion, b: ModelVersion, snapshot: DatasetSnapshot) -> str:
    return (
        f"models_registry:compare:{CACHE_FORMAT}:{a.artifact_sha256}:{b.artifact_sha256}:"
        f"{snapshot.pk}:{snapshot.file_sha256}:{RESAMPLES}:{SEED}"
    )


def _paired_evaluation(
    a: ModelVersion, b: ModelVersion, snapshot: DatasetSnapshot, *, by: SystemActor
) -> dict[str, Any]:
    rows = holdout_rows(snapshot)
    artifact_a = a.load_artifact(by=by, purpose="compare")
    artifact_b = b.load_artifact(by=by, purpose="compare")
    metrics = {}
    predictions = {}
    for key, artifact in (("a", artifact_a), ("b", artifact_b)):
        evaluation = evaluate_artifact(artifact, snapshot, rows=rows)
        metrics[key] = {
            **headline_metrics(evaluation),
            "accuracy_ci": evaluation.get("accuracy_ci"),
            "f1_macro_ci": evaluation.get("f1_macro_ci"),
        }
        predictions[key] = predict_rows(artifact.pipeline, rows, numeric_features=artifact.numeric_features)
    pa, pb = predictions["a"], predictions["b"]
    cases = pair(pa.y_true, pa.y_pred, pa.classes, pa.probabilities, pb.y_pred, pb.classes, pb.probabilities)
    test = mcnemar(cases.pred_a == cases.true_index, cases.pred_b == cases.true_index)
    differences = difference_rows(cases, test, metrics["a"], metrics["b"])
    comparison: dict[str, Any] = plain(
        {
            "test_set": {
                "dataset": snapshot.pk,
                "cases": cases.n,
                "labels": cases.labels,
            },
            "metrics": metrics,
            "differences": differences,
            "mcnemar": test.as_dict(),
            "verdict": verdict(test),
            "sample_size": {
                "difference": MARGIN,
                "power": POWER,
                "cases_needed": cases_needed(test),
                "method": "McNemar's test, Connor (1987), at the observed share of discordant cases",
            },
            "alpha": ALPHA,
            "bootstrap": {
                "resamples": RESAMPLES,
                "seed": SEED,
                "confidence": CONFIDENCE,
                "method": "paired percentile",
            },
        }
    )
    return comparison


def live_accuracy(version: ModelVersion) -> dict[str, Any] | None:
    """The latest live performance record of ``version`` (from clinicians' feedback), if any."""
    record = (
        PerformanceRecord.objects.filter(version=version, source=PerformanceRecord.Source.LIVE)
        .order_by("-created_at", "-id")
        .first()
    )
    if record is None:
        return None
    metrics: Mapping[str, Any] = record.metrics if isinstance(record.metrics, dict) else {}
    live: dict[str, Any] = plain(
        {
            "accuracy": metrics.get("accuracy"),
            "n": record.test_set_size,
            "recorded_at": record.created_at.isoformat(),
        }
    )
    return live


def _side(version: ModelVersion, metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "version": version.version,
        "approval_status": version.approval_status,
        "deployment_status": version.deployment_status,
        "algorithm": version.algorithm,
        "dataset": version.dataset_id,
        "artifact_sha256": version.artifact_sha256,
        "metrics": dict(metrics),
        "registered_metrics": version.metrics,
        "live": live_accuracy(version),
    }


def compare_versions(a: ModelVersion, b: ModelVersion, *, by: SystemActor = None) -> dict[str, Any]:
    """The comparison of ``a`` and ``b`` (see the module docstring), as plain JSON.

    Raises ``InvalidRequest`` (400, ``same_version``) for a version compared with itself, and the
    domain errors of a snapshot or an artifact that cannot serve (409).
    """
    if a.pk == b.pk:
        raise InvalidRequest(f"{a.version} compared with itself: name two different versions.", code="same_version")
    if a.model_type_id != b.model_type_id:
        raise InvalidRequest("Both versions must belong to the same model type.", code="model_type_mismatch")
    snapshot = comparison_snapshot(a, b)
    key = cache_key(a, b, snapshot)
    paired = cache.get(key)
    cached = paired is not None
    if paired is None:
        paired = _paired_evaluation(a, b, snapshot, by=by)
        cache.set(key, paired, CACHE_SECONDS)
    test_set = {
        **paired["test_set"],
        "same_snapshot": a.dataset_id == b.dataset_id,
        # A version scored on a snapshot other than its own was re-evaluated for this comparison.
        "reevaluated": [v.version for v in (a, b) if v.dataset_id != snapshot.pk],
    }
    return {
        "model_type": a.model_type.slug,
        "a": _side(a, paired["metrics"]["a"]),
        "b": _side(b, paired["metrics"]["b"]),
        "test_set": test_set,
        "differences": paired["differences"],
        "mcnemar": paired["mcnemar"],
        "verdict": paired["verdict"],
        "sample_size": paired["sample_size"],
        "alpha": paired["alpha"],
        "bootstrap": paired["bootstrap"],
        "cached": cached,
        "ab_test": ab_test_of(a, b),
    }


# The A/B test of the two versions comes from the layer above (``models_registry.experiments``),
# which registers its lookup from ``AppConfig.ready()``: a callback this layer declares, so the
# registry never imports the experiments. None registered: no test.
ABTestLookup = Callable[[ModelVersion, ModelVersion], dict[str, Any] | None]
_ab_test_lookup: ABTestLookup | None = None


def register_ab_test_lookup(lookup: ABTestLookup) -> None:
    """Set what ``ab_test_of`` asks (one lookup, replaced on a new call)."""
    global _ab_test_lookup
    _ab_test_lookup = lookup


def ab_test_of(a: ModelVersion, b: ModelVersion) -> dict[str, Any] | None:
    """The running (else the latest) A/B test between ``a`` and ``b``, with its live figures."""
    return _ab_test_lookup(a, b) if _ab_test_lookup is not None else None


# pragma: no mutate end
