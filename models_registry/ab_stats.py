"""The statistics of an A/B test between two model versions: figures in, a decision out. No models.

Arms: A is the production version, B the candidate. ``traffic_split`` is the share of requests
routed to B (A gets ``1 - traffic_split``). In shadow mode every request is answered by A and
predicted silently by B, so there is no split and no sample ratio check.

What ``evaluate`` reports
-------------------------
- Each arm's accuracy on the predictions with clinician feedback, with a 95% Wilson score interval
  (fixed-sample: a description of the arm, not the basis of the decision).
- Sample ratio mismatch (split mode): Pearson's chi-square test of the assigned counts against
  ``(1 - traffic_split, traffic_split)``, one degree of freedom. p < ``SRM_THRESHOLD`` (0.001) means
  the assignment is broken (a bug, a bot, a crash that hits one arm), every comparison is suspect,
  and the decision is ``invalid`` whatever the accuracies say. This check is a fixed-sample test:
  read at every one of 200 reads of an honest test it fires at some read about 2% of the time
  (``benchmarks/bench_ab.py``), so an ``invalid`` that appears once and goes away is weak evidence;
  one that persists is not.
- The difference ``acc_B - acc_A`` with an anytime-valid confidence sequence at level
  ``1 - alpha``: bounds that contain the true difference at *every* read simultaneously with
  probability at least ``1 - alpha``, however often and whenever anybody looks, so a daily (or
  per-feedback) glance at the dashboard does not inflate false positives.

The confidence sequence
-----------------------
A normal-mixture boundary (Robbins' method of mixtures) on the difference of the two accuracies,
the boundary of the mixture sequential probability ratio test in

- Johari, Koomen, Pekelis, Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests",
  Operations Research 70(3), 2022 (arXiv:1512.04922), with the two-sided normal mixture of
- Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence
  sequences", Annals of Statistics 49(2), 2021 (arXiv:1810.08240), and justified for plug-in
  variances as an asymptotic confidence sequence by
- Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas, "Time-uniform central limit theory and asymptotic
  confidence sequences", Annals of Statistics, 2024 (arXiv:2103.06476).

With ``d`` the observed difference, ``v`` its estimated variance (unpaired in split mode:
``p_A(1 - p_A)/n_A + p_B(1 - p_B)/n_B``) and ``tau`` the mixture scale, the bounds are

    d +/- sqrt( v (v + tau^2) / tau^2 * (2 log(1/alpha) + log(1 + tau^2 / v)) )

In the normal approximation ``d ~ N(delta, v)``; the likelihood ratio of "the difference is
``delta + theta``" against "it is ``delta``", mixed over ``theta ~ N(0, tau^2)``, is

    L = sqrt(v / (v + tau^2)) * exp(tau^2 (d - delta)^2 / (2 v (v + tau^2)))

a nonnegative martingale with mean 1 when the difference is ``delta`` (exactly for Gaussian
increments of known variance; asymptotically, with the variance estimated, for Bernoulli ones: the
asymptotic confidence sequences of Waudby-Smith et al.). By Ville's inequality the chance that it
*ever* reaches ``1/alpha`` is at most ``alpha``, and the ``delta`` where it has not are exactly the
interval above. The variances use add-one smoothed accuracies (``(correct + 1) / (labelled + 2)``) so that
an arm at 0% or 100% early on cannot claim zero variance.

``tau`` (``MIXTURE_SCALE``, 0.04 = 4 accuracy points) is the spread of true differences the test
is tuned for: the boundary is tightest when the standard error of the difference is about
``tau / 2.8``, here about 1.4 points, which at 80% accuracy is about 1,500 labelled predictions
per arm. Validity does not depend on
the choice (any ``tau > 0`` gives a valid sequence); only power does, and it is flat between 0.03
and 0.05. ``benchmarks/bench_ab.py`` measures the result: of 1,000 A/A tests read after every 20
feedbacks up to 2,000 per arm, about 1.5% ever reach ``ship_b`` or ``rollback`` (goal at most
alpha = 5%; the boundary is conservative, as it also covers the reads nobody makes); with a true
80% vs 85%, about 92% reach ``ship_b`` by 2,000 per arm (goal at least 80%), at a median of 850.

Shadow mode
-----------
Both versions answer the same requests, so their correctness is paired. Given the discordant
counts (``Agreement``: requests with feedback that only A, or only B, got right) the variance of
the difference is that of the per-request difference ``Y_B - Y_A``, which is far smaller when the
versions mostly agree. Without them the unpaired variance is used: conservative (still valid)
whenever the two versions' errors are positively correlated, as two models of the same cases are.

Decision rule (``evaluate``)
----------------------------
``invalid`` when the sample ratio check fails; else ``hold`` until each arm has ``min_labelled``
predictions with feedback; else ``ship_b`` when the lower bound of the difference is above 0,
``rollback`` when the upper bound is below 0, otherwise ``hold``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import chi2, norm

CONFIDENCE = 0.95  # of the per-arm accuracy intervals
SRM_THRESHOLD = 0.001
MIXTURE_SCALE = 0.04
MODES = ("split", "shadow")


class Decision(StrEnum):
    SHIP_B = "ship_b"
    ROLLBACK = "rollback"
    HOLD = "hold"
    INVALID = "invalid"


# The vectorised decision functions return indices into this tuple.
DECISIONS = (Decision.HOLD, Decision.SHIP_B, Decision.ROLLBACK, Decision.INVALID)
HOLD, SHIP_B, ROLLBACK, INVALID = range(4)


@dataclass(frozen=True)
class ArmFigures:
    """One arm's counts. In shadow mode both arms have the same requests and the same feedback."""

    assigned: int  # requests routed to the arm
    labelled: int  # predictions with clinician feedback
    correct: int  # of those, correct

    def __post_init__(self) -> None:
        if min(self.assigned, self.labelled, self.correct) < 0:
            raise ValueError(f"Counts cannot be negative: {self}.")
        if self.correct > self.labelled:
            raise ValueError(f"More correct than labelled predictions: {self}.")

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass(frozen=True)
class Agreement:
    """Shadow mode's paired figures: both versions' answers to the same requests.

    ``compared``: requests both answered; ``agreed``: of those, the same answer; ``labelled``: of
    the compared, those with feedback; ``only_a_correct`` / ``only_b_correct``: of the labelled,
    those exactly one version got right (the discordant pairs).
    """

    compared: int
    agreed: int
    labelled: int
    only_a_correct: int
    only_b_correct: int

    def __post_init__(self) -> None:
        if min(self.compared, self.agreed, self.labelled, self.only_a_correct, self.only_b_correct) < 0:
            raise ValueError(f"Counts cannot be negative: {self}.")
        if self.agreed > self.compared or self.labelled > self.compared:
            raise ValueError(f"Agreed and labelled are parts of the compared requests: {self}.")
        if self.only_a_correct + self.only_b_correct > self.labelled:
            raise ValueError(f"More discordant pairs than labelled requests: {self}.")

    @property
    def rate(self) -> float | None:
        """The share of compared requests on which both versions gave the same answer."""
        return self.agreed / self.compared if self.compared else None


def shadow_agreement(pairs: Iterable[tuple[Any, Any, Any]]) -> Agreement:
    """``Agreement`` of ``(answer_a, answer_b, truth)`` triples; ``truth`` is None without feedback."""
    compared = agreed = labelled = only_a = only_b = 0
    for answer_a, answer_b, truth in pairs:
        compared += 1
        agreed += answer_a == answer_b
        if truth is None:
            continue
        labelled += 1
        a_right, b_right = answer_a == truth, answer_b == truth
        only_a += a_right and not b_right
        only_b += b_right and not a_right
    return Agreement(compared, agreed, labelled, only_a, only_b)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bounds; all None when there is nothing to estimate from."""

    estimate: float | None
    low: float | None
    high: float | None

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    reason: str  # one sentence a clinician understands
    accuracy_a: Interval  # point estimate and 95% Wilson interval
    accuracy_b: Interval
    difference: Interval  # acc_B - acc_A with the anytime-valid confidence sequence's bounds
    srm_p_value: float | None  # None in shadow mode or before any assignment
    srm_failed: bool  # srm_p_value < SRM_THRESHOLD
    min_labelled_reached: bool  # both arms have at least min_labelled predictions with feedback
    observed_split: float | None = None  # share of assigned requests that went to B (split mode)
    alpha: float = 0.05
    mode: str = "split"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: str, int, float, bool and None only."""
        data = asdict(self)
        data["decision"] = self.decision.value
        return data


def wilson_interval(correct: int, labelled: int, *, confidence: float = CONFIDENCE) -> Interval:
    """The accuracy and its Wilson score interval (Wilson 1927): sound near 0 and 1 and for small n."""
    if labelled == 0:
        return Interval(None, None, None)
    z = float(norm.ppf(0.5 + confidence / 2))
    p = correct / labelled
    denominator = 1 + z * z / labelled
    centre = (p + z * z / (2 * labelled)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / labelled + z * z / (4 * labelled * labelled))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def srm_p_values(assigned_a: ArrayLike, assigned_b: ArrayLike, traffic_split: float) -> NDArray[np.float64]:
    """Chi-square p-values of the assigned counts against the split (NaN where nothing is assigned).

    With a split of 0 or 1 one arm expects nothing: any request there is a mismatch (p = 0).
    """
    a = np.asarray(assigned_a, dtype=np.float64)
    b = np.asarray(assigned_b, dtype=np.float64)
    total = a + b
    expected_a, expected_b = total * (1 - traffic_split), total * traffic_split
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = (a - expected_a) ** 2 / expected_a + (b - expected_b) ** 2 / expected_b
    p = chi2.sf(statistic, df=1)
    if traffic_split in (0.0, 1.0):
        stray = b if traffic_split == 0.0 else a
        p = np.where(stray > 0, 0.0, 1.0)
    return np.where(total > 0, p, np.nan)


def unpaired_variance(
    correct_a: ArrayLike, labelled_a: ArrayLike, correct_b: ArrayLike, labelled_b: ArrayLike
) -> NDArray[np.float64]:
    """Estimated variance of ``acc_B - acc_A`` from two independent arms (add-one smoothed)."""

    def arm(correct: ArrayLike, labelled: ArrayLike) -> NDArray[np.float64]:
        n = np.asarray(labelled, dtype=np.float64)
        p = (np.asarray(correct, dtype=np.float64) + 1) / (n + 2)
        return np.asarray(p * (1 - p) / np.maximum(n, 1), dtype=np.float64)

    return arm(correct_a, labelled_a) + arm(correct_b, labelled_b)


def paired_variance(agreement: Agreement) -> float:
    """Estimated variance of ``acc_B - acc_A`` from paired answers: var(Y_B - Y_A) / n.

    Floored at one discordant pair's worth (1 / (n + 2) per request), the paired analogue of the
    add-one smoothing: no discordance yet is not proof that there never will be any.
    """
    n = agreement.labelled
    discordant = (agreement.only_a_correct + agreement.only_b_correct) / max(n, 1)
    difference = (agreement.only_b_correct - agreement.only_a_correct) / max(n, 1)
    per_request = max(discordant - difference * difference, 1 / (n + 2))
    return per_request / max(n, 1)


def cs_radius(variance: ArrayLike, *, alpha: float, mixture_scale: float = MIXTURE_SCALE) -> NDArray[np.float64]:
    """Half-width of the two-sided normal-mixture confidence sequence (see the module docstring)."""
    v = np.asarray(variance, dtype=np.float64)
    t2 = mixture_scale * mixture_scale
    return np.asarray(np.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + np.log1p(t2 / v))), dtype=np.float64)


def decide(
    difference: ArrayLike,
    radius: ArrayLike,
    *,
    ready: ArrayLike,
    srm_failed: ArrayLike = False,
) -> NDArray[np.int8]:
    """The decision rule, vectorised: indices into ``DECISIONS``.

    ``ready``: both arms have the minimum labelled count; ``srm_failed``: the split check failed.
    """
    d, r = np.asarray(difference, dtype=np.float64), np.asarray(radius, dtype=np.float64)
    codes = np.where(d - r > 0, SHIP_B, np.where(d + r < 0, ROLLBACK, HOLD))
    codes = np.where(np.asarray(ready, dtype=bool), codes, HOLD)
    return np.where(np.asarray(srm_failed, dtype=bool), INVALID, codes).astype(np.int8)


def _check(traffic_split: float, alpha: float, min_labelled: int, mode: str, mixture_scale: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if not 0 <= traffic_split <= 1:
        raise ValueError(f"traffic_split is the share of traffic to B, in [0, 1]; got {traffic_split}.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    if min_labelled < 1:
        raise ValueError(f"min_labelled must be at least 1, got {min_labelled}.")
    if not mixture_scale > 0:
        raise ValueError(f"mixture_scale must be positive, got {mixture_scale}.")


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _reason(
    decision: Decision,
    *,
    a: ArmFigures,
    b: ArmFigures,
    difference: Interval,
    min_labelled: int,
    traffic_split: float,
    observed_split: float | None,
    alpha: float,
) -> str:
    if decision is Decision.INVALID:
        assert observed_split is not None
        return (
            f"The test is invalid: the candidate (B) received {observed_split:.1%} of requests where "
            f"{traffic_split:.1%} were configured, more than chance explains (p < {SRM_THRESHOLD:g}), "
            "so the arms may not see comparable patients; fix the assignment before trusting any result."
        )
    if difference.estimate is None or min(a.labelled, b.labelled) < min_labelled:
        return (
            f"Not enough feedback yet: each version needs at least {min_labelled} predictions checked by "
            f"a clinician before any decision (A has {a.labelled}, B has {b.labelled})."
        )
    assert difference.low is not None
    assert difference.high is not None
    assert a.accuracy is not None
    assert b.accuracy is not None
    accuracies = (
        f"{b.accuracy:.1%} of its checked predictions were correct against {a.accuracy:.1%} for the current version (A)"
    )
    bounds = f"between {_points(difference.low)} and {_points(difference.high)} percentage points"
    confidence = f"{1 - alpha:.0%} confidence that holds however often the results are checked"
    if decision is Decision.SHIP_B:
        return f"The candidate (B) is more accurate: {accuracies}; the true difference lies {bounds} ({confidence})."
    if decision is Decision.ROLLBACK:
        return f"The candidate (B) is less accurate: {accuracies}; the true difference lies {bounds} ({confidence})."
    return (
        f"No clear difference yet: for the candidate (B) {accuracies}, and the true difference could lie "
        f"anywhere {bounds}, which includes no difference at all."
    )


def evaluate(
    a: ArmFigures,
    b: ArmFigures,
    *,
    traffic_split: float,
    alpha: float = 0.05,
    min_labelled: int = 100,
    mode: str = "split",
    agreement: Agreement | None = None,
    mixture_scale: float = MIXTURE_SCALE,
) -> Evaluation:
    """The figures and decision of an A/B test (see the module docstring for the method).

    ``traffic_split``: the configured share of requests routed to B (ignored in shadow mode).
    ``agreement``: shadow mode's paired figures; when given, the difference uses the paired variance.
    Raises ValueError on an unknown mode or a parameter out of range.
    """
    _check(traffic_split, alpha, min_labelled, mode, mixture_scale)
    srm_p: float | None = None
    observed_split: float | None = None
    if mode == "split" and a.assigned + b.assigned > 0:
        srm_p = float(srm_p_values(a.assigned, b.assigned, traffic_split))
        observed_split = b.assigned / (a.assigned + b.assigned)
    srm_failed = srm_p is not None and srm_p < SRM_THRESHOLD

    difference = Interval(None, None, None)
    estimate, radius = 0.0, math.inf
    if a.labelled and b.labelled:
        estimate = b.correct / b.labelled - a.correct / a.labelled
        if mode == "shadow" and agreement is not None and agreement.labelled:
            variance = paired_variance(agreement)
        else:
            variance = float(unpaired_variance(a.correct, a.labelled, b.correct, b.labelled))
        radius = float(cs_radius(variance, alpha=alpha, mixture_scale=mixture_scale))
        difference = Interval(estimate, max(-1.0, estimate - radius), min(1.0, estimate + radius))

    ready = min(a.labelled, b.labelled) >= min_labelled
    # The same vectorised rule the benchmark's simulations apply.
    code = decide(estimate, radius, ready=ready and a.labelled > 0 and b.labelled > 0, srm_failed=srm_failed)
    decision = DECISIONS[int(code)]

    return Evaluation(
        decision=decision,
        reason=_reason(
            decision,
            a=a,
            b=b,
            difference=difference,
            min_labelled=min_labelled,
            traffic_split=traffic_split,
            observed_split=observed_split,
            alpha=alpha,
        ),
        accuracy_a=wilson_interval(a.correct, a.labelled),
        accuracy_b=wilson_interval(b.correct, b.labelled),
        difference=difference,
        srm_p_value=srm_p,
        srm_failed=srm_failed,
        min_labelled_reached=ready,
        observed_split=observed_split,
        alpha=alpha,
        mode=mode,
    )
