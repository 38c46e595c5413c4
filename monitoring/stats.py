"""The statistics of monitoring: PSI, expected calibration error, and the degradation rule. No models.

- **PSI** (population stability index) of a live distribution against the reference over the same
  bins: ``sum((a_i - e_i) * ln(a_i / e_i))`` over the shares ``a`` (live) and ``e`` (reference),
  each share floored at ``PSI_EPSILON`` so an empty bin costs a large but finite amount. The usual
  reading (Siddiqi, *Credit Risk Scorecards*, 2006): below 0.1 stable, 0.1-0.25 a shift worth a
  look, above 0.25 a major shift; ``MONITORING_PSI_THRESHOLD`` (0.2) marks a feature drifted.
- **ECE**: the confidence of a prediction is the probability of the label it predicted; ten
  equal-width bins (``[b/10, (b+1)/10)``, the last with 1.0), ``sum_b n_b / n * |acc_b - conf_b|``:
  the same definition as the offline evaluation's (``training.evaluation.calibration``), so the two
  figures compare.
- **Live accuracy and degradation**: the units (a subject's share of correct labelled predictions,
  or one unkeyed prediction, in the order of their first feedback: as the A/B tests count) get the
  betting confidence sequence of ``models_registry.experiments.stats`` (Waudby-Smith and Ramdas
  2024), valid at every read however often anybody looks. The version is **degraded** when the
  sequence's upper end lies below ``offline accuracy - tolerance``: decided by the wealth of the bet
  "the mean is below that bar" reaching ``2 / alpha``, the same test the bound inverts, so a model
  whose live accuracy is at least the bar is ever flagged with probability at most ``alpha / 2``
  over its whole life (tests/monitoring/test_stats.py shows it by simulation).
- **Recent window** (``recent_accuracy``): a sequence that reads everything since activation
  notices a late drop slowly (thousands of good units outweigh it). So the degradation rule reads a
  fresh sequence restarted every ``window`` units (epoch ``j`` starts at unit ``j * window`` and
  runs on to the present), and at each read looks at the two epochs still running (the current one
  and the one before: between ``window`` and ``2 * window`` units, so a drop just after a restart is
  not missed). Each epoch spends its own share of alpha, ``alpha_j = alpha / ((j + 1)(j + 2))``,
  which sums to alpha over all epochs: by Ville's inequality for each epoch's wealth and a union
  bound over epochs, a model at least as good as the bar is ever flagged with probability at most
  ``alpha / 2`` over its whole life, as before. The price: later epochs need more evidence (epoch
  10 needs a wealth of ``2 / alpha_10``, 132 times ``2 / alpha``). The interval shown beside the
  flag is the deciding epoch's sequence at ``alpha_j``, valid for the units it reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from models_registry.experiments import stats as ab_stats

PSI_EPSILON = 1e-4
CALIBRATION_BINS = 10
ACCURACY_METHOD = "betting confidence sequence (Waudby-Smith and Ramdas 2024) over per-subject units; anytime-valid"


def psi(reference: ArrayLike, live: ArrayLike, *, epsilon: float = PSI_EPSILON) -> float | None:
    """The PSI of ``live`` counts against ``reference`` counts over the same bins (None when either is empty)."""
    expected = np.asarray(reference, dtype=np.float64)
    actual = np.asarray(live, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"PSI compares the same bins: {expected.shape[0]} reference against {actual.shape[0]} live.")
    if np.any(expected < 0) or np.any(actual < 0):
        raise ValueError("PSI reads counts, which are not negative.")
    if expected.sum() <= 0 or actual.sum() <= 0:
        return None
    e = np.maximum(expected / expected.sum(), epsilon)
    a = np.maximum(actual / actual.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Calibration:
    ece: float | None
    count: int
    bins: list[dict[str, float | int | None]]


def calibration(confidence: ArrayLike, correct: ArrayLike) -> Calibration:
    """ECE and the reliability bins of predictions with ``confidence`` (the top probability) and ``correct``."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    right = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != right.shape:
        raise ValueError("One confidence per prediction, one correctness per prediction.")
    if not np.all((conf >= 0) & (conf <= 1)):
        raise ValueError("A confidence is a probability in [0, 1].")
    bins = np.minimum((conf * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS).astype(np.float64)
    sum_conf = np.bincount(bins, weights=conf, minlength=CALIBRATION_BINS)
    sum_right = np.bincount(bins, weights=right, minlength=CALIBRATION_BINS)
    n = len(conf)
    ece = float(np.abs(sum_right - sum_conf).sum() / n) if n else None
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    table: list[dict[str, float | int | None]] = [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int(counts[b]),
            "confidence": float(sum_conf[b] / counts[b]) if counts[b] else None,
            "accuracy": float(sum_right[b] / counts[b]) if counts[b] else None,
        }
        for b in range(CALIBRATION_BINS)
    ]
    return Calibration(ece=ece, count=n, bins=table)


@dataclass(frozen=True)
class LiveAccuracy:
    """Live accuracy of the units with feedback, its anytime-valid interval, and the degradation rule."""

    units: int
    estimate: float | None  # the mean of the units
    low: float | None
    high: float | None
    bar: float | None  # offline accuracy - tolerance (None without an offline accuracy)
    degraded: bool
    evidence: float | None  # the wealth of the bet "below the bar" (degraded at 2 / alpha)
    alpha: float


def live_accuracy(units: ArrayLike, *, offline: float | None, tolerance: float, alpha: float) -> LiveAccuracy:
    """The confidence sequence of the units' mean and whether it lies entirely below ``offline - tolerance``."""
    values = np.asarray(units, dtype=np.float64).reshape(-1)
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError("A unit's value is its share of correct predictions, in [0, 1].")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha is in (0, 1), got {alpha}.")
    interval = ab_stats.confidence_sequence(values, alpha=alpha)
    bar = None if offline is None else offline - tolerance
    degraded, evidence = False, None
    if bar is not None and len(values) and bar > 0:
        log_wealth = float(ab_stats.log_wealth(values, m=bar, side=-1)[-1])
        evidence = math.exp(min(log_wealth, 700.0))
        degraded = log_wealth >= ab_stats.threshold(alpha)
    # The sequence is built for a difference in [-1, 1] (the A/B tests'); a mean of units lies in
    # [0, 1], so its ends are cut there (still valid: the mean is in the intersection). Uncut, a
    # few labelled answers showed an interval reaching -100 %.
    low = None if interval.low is None else max(interval.low, 0.0)
    high = None if interval.high is None else min(interval.high, 1.0)
    if degraded and high is not None and bar is not None:
        # The bound is found by bisection to 1e-4; the decision reads the wealth itself. Never show
        # an upper end above the bar beside a "degraded".
        high = min(high, bar)
    return LiveAccuracy(
        units=len(values),
        estimate=interval.estimate,
        low=low,
        high=high,
        bar=bar,
        degraded=degraded,
        evidence=evidence,
        alpha=alpha,
    )


def degraded_paths(units: ArrayLike, *, bar: float, alpha: float) -> np.ndarray:
    """For many sequences of units at once (rows), whether each is flagged degraded at each read
    (columns): the rule of ``live_accuracy`` vectorised, for the simulations."""
    return np.asarray(ab_stats.log_wealth(units, m=bar, side=-1) >= ab_stats.threshold(alpha))


def epoch_alpha(alpha: float, epoch: int) -> float:
    """The share of ``alpha`` spent on the sequence restarted at ``epoch`` (they sum to ``alpha``)."""
    return alpha / ((epoch + 1) * (epoch + 2))


@dataclass(frozen=True)
class RecentAccuracy:
    """The degradation rule over the recent units (module docstring, "Recent window")."""

    window: int  # units per epoch; 0: one sequence over everything since activation
    start: int  # index of the first unit the reported sequence reads
    units: int
    estimate: float | None
    low: float | None
    high: float | None
    alpha: float  # the alpha spent on the reported sequence
    degraded: bool
    evidence: float | None  # the largest wealth scaled by alpha_j / alpha: degraded at 2 / alpha, as before


def recent_accuracy(
    units: ArrayLike, *, offline: float | None, tolerance: float, alpha: float, window: int
) -> RecentAccuracy:
    """Whether the recent units (``window`` per epoch) lie below ``offline - tolerance``, alpha spent over epochs."""
    values = np.asarray(units, dtype=np.float64).reshape(-1)
    if window <= 0:
        whole = live_accuracy(values, offline=offline, tolerance=tolerance, alpha=alpha)
        return RecentAccuracy(
            0, 0, whole.units, whole.estimate, whole.low, whole.high, alpha, whole.degraded, whole.evidence
        )
    current = len(values) // window
    epochs = [j for j in (current - 1, current) if j >= 0 and j * window < len(values)] or [0]
    readings = []
    for epoch in epochs:
        spent = epoch_alpha(alpha, epoch)
        reading = live_accuracy(values[epoch * window :], offline=offline, tolerance=tolerance, alpha=spent)
        readings.append((epoch, spent, reading))
    # The epoch that flags, else the older running one (the longer view of the recent units).
    epoch, spent, shown = next((found for found in readings if found[2].degraded), readings[0])
    scaled = [reading.evidence * used / alpha for _epoch, used, reading in readings if reading.evidence is not None]
    return RecentAccuracy(
        window=window,
        start=epoch * window,
        units=shown.units,
        estimate=shown.estimate,
        low=shown.low,
        high=shown.high,
        alpha=spent,
        degraded=any(reading.degraded for _epoch, _used, reading in readings),
        evidence=max(scaled) if scaled else None,
    )


def recent_degraded_paths(units: ArrayLike, *, bar: float, alpha: float, window: int) -> np.ndarray:
    """For many sequences of units at once (rows), whether ``recent_accuracy`` flags each at each read
    (column ``c - 1`` after ``c`` units): the recent rule vectorised, for the simulations."""
    values = np.asarray(units, dtype=np.float64)
    values = values.reshape(1, -1) if values.ndim == 1 else values
    if window <= 0:
        return degraded_paths(values, bar=bar, alpha=alpha)
    count = values.shape[1]
    flagged = np.zeros(values.shape, dtype=bool)
    for epoch in range((count - 1) // window + 1 if count else 0):
        start = epoch * window
        # Epoch j is read after c units for c in [j * window + 1, (j + 2) * window - 1].
        stop = min(count, (epoch + 2) * window - 1)
        wealth = ab_stats.log_wealth(values[:, start:stop], m=bar, side=-1)
        flagged[:, start:stop] |= wealth >= ab_stats.threshold(epoch_alpha(alpha, epoch))
    return flagged
