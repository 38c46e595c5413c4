"""The statistics of an A/B test between two model versions: observations in, a decision out. No models.

Arms: A is the production version, B the candidate. ``traffic_split`` is the share of requests
routed to B. In shadow mode every request is answered by A and predicted silently by B, so there is
no split and no sample ratio check. The reasoning, the assumptions and the simulation figures are in
``docs/statistics.md``; in short:

- The unit of analysis is the unit of assignment: a subject (all its predictions go to one arm), or a
  request without a subject key. Each unit with feedback contributes the share of its labelled
  predictions that were correct (``Observations``), in the order of its first feedback, so a patient
  seen twenty times counts once and their correlated answers cannot pass for twenty independent ones.
- Split mode groups the two arms' units into blocks, each one unit of the smaller arm with the
  split's ratio of units of the larger one (``blocks``): a block's difference ``Z`` lies in [-1, 1]
  and has mean ``acc_B - acc_A`` whatever the split. Shadow mode's ``Z`` is the unit's paired
  difference (B's share right minus A's, on the same requests).
- The difference gets a confidence sequence by betting (Waudby-Smith and Ramdas, JRSS-B 2024): for
  each candidate mean ``m``, a gambler bets against ``m`` on every block, with a stake set from the
  blocks before it only (predictable), mixed over a prior on the effect size (``log_wealth``). Under
  ``m`` the wealth is a nonnegative martingale, so by Ville's inequality it ever reaches ``2/alpha``
  with probability at most ``alpha/2``: that holds exactly for bounded outcomes, at every read,
  however often anybody looks, whatever the split and the accuracy (no normal approximation).
- ``ship_b`` when the wealth betting on "B is better" reaches ``2/alpha`` at ``m = 0`` (the lower
  bound is above 0), ``rollback`` for the mirror bet; each direction errs at most ``alpha/2``.
- Sample ratio mismatch: the Dirichlet-multinomial mixture of Lindon and Malek (NeurIPS 2022) on the
  assignment counts, an e-value whose reciprocal is an anytime-valid p-value: at ``SRM_LEVEL`` (0.01)
  an honest test is flagged with probability at most 1% over its whole life, however often it is read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln
from scipy.stats import norm

CONFIDENCE = 0.95  # of the per-arm accuracy intervals
MODES = ("split", "shadow")

# Sample ratio check: the level of the anytime-valid test, and the Dirichlet prior's concentration
# (the prior is Beta(k (1 - split), k split): centred on the configured split; k = 100 as in Lindon
# and Malek's examples). Caught: 0.47 against 0.50 by 10,000 units in about 99% of tests.
SRM_LEVEL = 0.01
SRM_CONCENTRATION = 100.0

# The betting confidence sequence. EFFECT_SCALE: the prior's spread of the standardised effect
# (difference / sd of a block); the boundary is tightest near 8 / EFFECT_SCALE^2 = 1,600 blocks.
# Validity holds for any choice; these set where the power goes (docs/statistics.md).
EFFECT_SCALE = 0.07
PRIOR_POINTS = 32  # the half-normal prior, discretised
PRIOR_SPAN = 5.0  # up to this many EFFECT_SCALEs
BET_CAP = 0.75  # the most of its wealth one block can cost a bet
PRIOR_VARIANCE = 0.25  # one pseudo-block of this variance starts the predictable variance
BOUND_TOLERANCE = 1e-4  # bisection of the bounds, in accuracy (0.01 percentage points)

# The methods as the API states them.
DIFFERENCE_METHOD = "betting confidence sequence (Waudby-Smith and Ramdas 2024) over per-subject blocks"
SRM_METHOD = "Dirichlet-multinomial mixture (Lindon and Malek 2022): anytime-valid p-value"


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

    assigned: int  # units of assignment routed to the arm (subjects, plus requests without a key)
    labelled: int  # predictions with clinician feedback
    correct: int  # of those, correct

    def __post_init__(self) -> None:
        if self.assigned < 0 or self.labelled < 0 or self.correct < 0:
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
        counts = (self.compared, self.agreed, self.labelled, self.only_a_correct, self.only_b_correct)
        if any(count < 0 for count in counts):
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


def _unit_values(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all((array >= -1.0) & (array <= 1.0)):  # also refuses NaN
        raise ValueError(f"{name}: every unit's value must be a number in [0, 1] ([-1, 1] for paired differences).")
    return array


@dataclass(frozen=True)
class Observations:
    """What the sequential test reads, per unit of assignment with feedback, oldest first feedback first.

    Split mode: ``a`` and ``b``, each unit's share of correct labelled predictions in that arm (a
    subject's mean; a request without a subject key is a unit of one). Shadow mode: ``paired``, each
    unit's share B got right minus the share A got right on the same requests.
    """

    a: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    b: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    paired: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        for name in ("a", "b", "paired"):
            values = _unit_values(getattr(self, name), name)
            if name != "paired" and np.any(values < 0):
                raise ValueError(f"{name}: a share of correct predictions is in [0, 1].")
            object.__setattr__(self, name, values)

    @classmethod
    def of_predictions(cls, correct_a: Iterable[bool], correct_b: Iterable[bool]) -> Observations:
        """Split mode with one prediction per unit (no repeat subjects): each answer is a unit."""
        return cls(
            a=np.fromiter((float(bool(v)) for v in correct_a), dtype=np.float64),
            b=np.fromiter((float(bool(v)) for v in correct_b), dtype=np.float64),
        )


def spread(labelled: int, correct: int) -> NDArray[np.float64]:
    """``labelled`` single-prediction units with ``correct`` ones spread evenly (for constructed examples)."""
    if not 0 <= correct <= labelled:
        raise ValueError(f"{correct} correct of {labelled} labelled is impossible.")
    positions = np.arange(1, labelled + 1)
    return np.diff(np.floor(positions * correct / labelled), prepend=0.0) if labelled else np.zeros(0)


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
    accuracy_a: Interval  # point estimate and 95% Wilson interval (per prediction)
    accuracy_b: Interval
    difference: Interval  # mean block difference with the confidence sequence's bounds
    srm_p_value: float | None  # anytime-valid; None in shadow mode or before any assignment
    srm_failed: bool  # srm_p_value <= SRM_LEVEL
    min_labelled_reached: bool  # both arms have at least min_labelled predictions with feedback
    observed_split: float | None = None  # share of assigned units that went to B (split mode)
    alpha: float = 0.05
    mode: str = "split"
    srm_e_value: float | None = None  # the mixture's e-value (1 / p-value before the cap at 1)
    units_a: int = 0  # units of assignment with feedback in each arm (split mode) or paired units
    units_b: int = 0
    blocks: int = 0  # complete blocks the confidence sequence has read
    evidence_for_b: float = 1.0  # the wealth of the bet "B is better" at 0; ship_b at 2 / alpha
    evidence_for_a: float = 1.0  # the wealth of the bet "A is better" at 0; rollback at 2 / alpha
    method: str = DIFFERENCE_METHOD

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: str, int, float, bool and None only (an infinite e-value becomes None)."""
        data = asdict(self)
        data["decision"] = self.decision.value
        for key in ("srm_e_value", "evidence_for_b", "evidence_for_a"):
            value = data[key]
            data[key] = None if value is None or not math.isfinite(value) else float(value)
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


# --- Sample ratio mismatch ------------------------------------------------------------------------


def srm_log_e_values(
    assigned_a: ArrayLike, assigned_b: ArrayLike, traffic_split: float, *, concentration: float = SRM_CONCENTRATION
) -> NDArray[np.float64]:
    """Log of the Dirichlet-multinomial mixture's e-value of the assignment counts against the split.

    The Beta(k (1 - s), k s) mixture of the binomial likelihood over the likelihood at the split s:
    ``log B(k(1-s) + n_A, k s + n_B) - log B(k(1-s), k s) - n_A log(1 - s) - n_B log s``, a function of
    the counts alone (the order of the assignments does not matter). With a split of 0 or 1 one arm
    expects nothing: any unit there is a certain mismatch (+inf), none is no evidence (0).
    """
    a = np.asarray(assigned_a, dtype=np.float64)
    b = np.asarray(assigned_b, dtype=np.float64)
    if traffic_split in (0.0, 1.0):
        stray = b if traffic_split == 0.0 else a
        return np.asarray(np.where(stray > 0, np.inf, 0.0), dtype=np.float64)
    prior_a, prior_b = concentration * (1 - traffic_split), concentration * traffic_split
    log_e = (
        betaln(prior_a + a, prior_b + b)
        - betaln(prior_a, prior_b)
        - a * math.log(1 - traffic_split)
        - b * math.log(traffic_split)
    )
    return np.asarray(log_e, dtype=np.float64)


def srm_p_values(assigned_a: ArrayLike, assigned_b: ArrayLike, traffic_split: float) -> NDArray[np.float64]:
    """Anytime-valid p-values of the assignment counts (``min(1, 1 / e)``); NaN where nothing is assigned.

    Whatever the reading schedule, an honest assignment gives a p-value of at most ``x`` at some read
    with probability at most ``x`` (Ville's inequality on the mixture martingale).
    """
    a = np.asarray(assigned_a, dtype=np.float64)
    b = np.asarray(assigned_b, dtype=np.float64)
    p = np.minimum(1.0, np.exp(-srm_log_e_values(a, b, traffic_split)))
    return np.asarray(np.where(a + b > 0, p, np.nan), dtype=np.float64)


# --- Blocks: the observations the confidence sequence bets on ---------------------------------------


def _ratio(traffic_split: float) -> tuple[float, bool]:
    """Units of the larger arm per unit of the smaller one, and whether B is the smaller arm."""
    b_smaller = traffic_split <= 0.5
    small = traffic_split if b_smaller else 1 - traffic_split
    return (1 - small) / small, b_smaller


def _boundaries(count: int, ratio: float) -> NDArray[np.int64]:
    """Where block k's share of the larger arm ends (k = 1..count): floor(k * ratio), k rounded first.

    The schedule is fixed by the split alone, never by the data: block k takes the larger arm's
    units floor((k-1) ratio) + 1 .. floor(k ratio), so their number alternates (2, 2, 3, ... at 0.3).
    """
    positions = np.arange(1, count + 1, dtype=np.float64) * ratio
    return np.floor(positions + 1e-9).astype(np.int64)


def complete_blocks(units_a: ArrayLike, units_b: ArrayLike, traffic_split: float) -> NDArray[np.int64]:
    """How many blocks are complete with ``units_a`` and ``units_b`` units in the arms (vectorised)."""
    a = np.asarray(units_a, dtype=np.int64)
    b = np.asarray(units_b, dtype=np.int64)
    if traffic_split <= 0.0 or traffic_split >= 1.0:
        return np.zeros(np.broadcast(a, b).shape, dtype=np.int64)
    ratio, b_smaller = _ratio(traffic_split)
    small, large = (b, a) if b_smaller else (a, b)
    top = int(np.max(small, initial=0))
    ends = _boundaries(top, ratio)
    return np.asarray(np.minimum(small, np.searchsorted(ends, large, side="right")), dtype=np.int64)


def blocks(values_a: ArrayLike, values_b: ArrayLike, traffic_split: float) -> NDArray[np.float64]:
    """Each complete block's ``Z``: the smaller arm's unit minus the mean of its share of the larger arm.

    Signed as B minus A. ``values_*`` are units in order along the last axis (a leading axis of
    independent tests is kept, for simulations). Each ``Z`` lies in [-1, 1] with mean ``acc_B - acc_A``
    and the blocks are independent of each other: what the bet needs.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if traffic_split <= 0.0 or traffic_split >= 1.0:
        return np.zeros((*a.shape[:-1], 0))
    ratio, b_smaller = _ratio(traffic_split)
    small, large, sign = (b, a, 1.0) if b_smaller else (a, b, -1.0)
    count = int(complete_blocks(a.shape[-1], b.shape[-1], traffic_split))
    ends = _boundaries(count, ratio)
    starts = np.concatenate(([0], ends[:-1]))
    sums = np.concatenate((np.zeros((*large.shape[:-1], 1)), np.cumsum(large, axis=-1)), axis=-1)
    share = (sums[..., ends] - sums[..., starts]) / (ends - starts)
    return np.asarray(sign * (small[..., :count] - share), dtype=np.float64)


# --- The betting confidence sequence ---------------------------------------------------------------


def _prior(scale: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Grid points of the half-normal prior on the standardised effect, and their log weights."""
    step = PRIOR_SPAN * scale / PRIOR_POINTS
    points = np.asarray((np.arange(PRIOR_POINTS) + 0.5) * step, dtype=np.float64)
    weights = np.asarray(2 * norm.pdf(points, scale=scale) * step, dtype=np.float64)
    return points, np.log(weights / weights.sum())


def predictable_sd(z: ArrayLike) -> NDArray[np.float64]:
    """Before each block, the spread of the blocks before it (the last axis): the stake's scale.

    ``sqrt((PRIOR_VARIANCE + sum of squared deviations so far) / (blocks so far + 1))``: one
    pseudo-block of variance PRIOR_VARIANCE, so the first bets are modest and no spread is zero.
    Only earlier blocks enter, which is what keeps the wealth a martingale.
    """
    values = np.asarray(z, dtype=np.float64)
    count = np.arange(1, values.shape[-1] + 1, dtype=np.float64)
    sums = np.cumsum(values, axis=-1)
    deviations = np.maximum(np.cumsum(values * values, axis=-1) - sums * sums / count, 0.0)
    variance = (PRIOR_VARIANCE + deviations) / (count + 1)
    before = np.concatenate((np.full((*values.shape[:-1], 1), PRIOR_VARIANCE), variance[..., :-1]), axis=-1)
    return np.asarray(np.sqrt(before), dtype=np.float64)


def _log_factors(
    z: NDArray[np.float64], sd: NDArray[np.float64], m: float, side: int, scale: float
) -> NDArray[np.float64]:
    """log(1 + side * stake * (Z - m)) per prior point (leading axis) and block; ``sd``: ``predictable_sd(z)``."""
    points, _ = _prior(scale)
    # The stake never risks more than BET_CAP of the wealth on one block: Z - m can be as bad as
    # -(1 + m) for the upward bet and 1 - m for the downward one.
    room = 1.0 + side * m
    cap = BET_CAP / room if room > 0 else math.inf
    stakes = np.minimum(points.reshape((PRIOR_POINTS,) + (1,) * z.ndim) / sd, cap)
    return np.asarray(np.log1p(side * stakes * (z - m)), dtype=np.float64)


def log_wealth(z: ArrayLike, *, m: float = 0.0, side: int = 1, scale: float = EFFECT_SCALE) -> NDArray[np.float64]:
    """The log wealth after each block (the last axis) of betting that the mean is above ``m`` (side 1)
    or below it (side -1), mixed over the effect prior.

    Each prior point's wealth is a product of ``1 + stake * (Z - m)`` with a stake fixed before the
    block; if the mean is ``m`` (or on the other side of it) every factor has expectation at most 1,
    so the mixture is a nonnegative supermartingale starting at 1.
    """
    if side not in (1, -1):
        raise ValueError(f"side is 1 (mean above m) or -1 (below), got {side}.")
    values = np.asarray(z, dtype=np.float64)
    paths = np.cumsum(_log_factors(values, predictable_sd(values), m, side, scale), axis=-1)
    return _mix(paths, _prior(scale)[1])


def _mix(log_wealths: NDArray[np.float64], log_weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """log of the prior-weighted sum over the leading axis of the wealths (log-sum-exp, stably)."""
    weighted = log_wealths + log_weights.reshape((PRIOR_POINTS,) + (1,) * (log_wealths.ndim - 1))
    top = weighted.max(axis=0)
    return np.asarray(top + np.log(np.exp(weighted - top).sum(axis=0)), dtype=np.float64)


def threshold(alpha: float) -> float:
    """The log wealth at which one side rejects: log(2 / alpha), so each direction errs at most alpha / 2."""
    return math.log(2 / alpha)


class _Wealth:
    """The final log wealth of one sequence of blocks at any ``m`` (the spread computed once)."""

    def __init__(self, z: NDArray[np.float64], scale: float) -> None:
        self.z, self.scale = z, scale
        self.sd = predictable_sd(z)
        self.log_weights = _prior(scale)[1]

    def __call__(self, m: float, side: int) -> float:
        factors = _log_factors(self.z, self.sd, m, side, self.scale)
        return float(_mix(np.sum(factors, axis=-1), self.log_weights))


def _bound(wealth: _Wealth, *, side: int, alpha: float) -> float:
    """The lower (side 1) or upper (side -1) end of the confidence sequence.

    The wealth of the upward bet falls as ``m`` rises (every factor does), so the values it rejects
    form an interval ending at the bound. Found by regula falsi (Illinois) on the log wealth, with
    the bracket starting at 0, so that the bound and the decision (which reads the wealth at 0)
    always agree: the bound returned is the end of the bracket that is not rejected.
    """
    limit = threshold(alpha)
    at_zero = wealth(0.0, side) - limit
    # ``outside``: a value rejected (excess >= 0); ``inside``: one that is not (excess < 0).
    if at_zero >= 0:
        outside, inside = 0.0, float(side)
        excess_out, excess_in = at_zero, wealth(inside, side) - limit
    else:
        outside, inside = -float(side), 0.0
        excess_out, excess_in = wealth(outside, side) - limit, at_zero
        if excess_out < 0:
            return outside  # nothing is rejected on this side yet
    if excess_in >= 0:  # cannot happen (the factors at m = +-1 are at most 1); kept safe
        return inside
    kept = 0
    while abs(inside - outside) > BOUND_TOLERANCE:
        middle = outside + (inside - outside) * excess_out / (excess_out - excess_in)
        # Guard against a step that lands on an end (rounding): bisect instead.
        if not min(inside, outside) < middle < max(inside, outside):
            middle = (inside + outside) / 2
        excess = wealth(middle, side) - limit
        if excess >= 0:
            outside, excess_out = middle, excess
            if kept == 1:
                excess_in /= 2  # Illinois: the same end kept twice, halve the other's weight
            kept = 1
        else:
            inside, excess_in = middle, excess
            if kept == -1:
                excess_out /= 2
            kept = -1
    return inside


def confidence_sequence(z: ArrayLike, *, alpha: float, scale: float = EFFECT_SCALE) -> Interval:
    """The mean of the blocks and the confidence sequence's bounds at this read (None without blocks)."""
    values = np.asarray(z, dtype=np.float64).reshape(-1)
    if not len(values):
        return Interval(None, None, None)
    wealth = _Wealth(values, scale)
    return Interval(float(values.mean()), _bound(wealth, side=1, alpha=alpha), _bound(wealth, side=-1, alpha=alpha))


def decide(
    wealth_for_b: ArrayLike,
    wealth_for_a: ArrayLike,
    *,
    alpha: float,
    ready: ArrayLike,
    srm_failed: ArrayLike = False,
) -> NDArray[np.int8]:
    """The decision rule, vectorised: indices into ``DECISIONS``.

    ``wealth_for_b`` / ``wealth_for_a``: the log wealth at ``m = 0`` of the bets that B is better
    and that A is; ``ready``: both arms have the minimum labelled count; ``srm_failed``: the split
    check failed. Both bets winning at once (possible only by a fluke) is no decision.
    """
    limit = threshold(alpha)
    for_b = np.asarray(wealth_for_b, dtype=np.float64) >= limit
    for_a = np.asarray(wealth_for_a, dtype=np.float64) >= limit
    codes = np.where(for_b & ~for_a, SHIP_B, np.where(for_a & ~for_b, ROLLBACK, HOLD))
    codes = np.where(np.asarray(ready, dtype=bool), codes, HOLD)
    return np.asarray(np.where(np.asarray(srm_failed, dtype=bool), INVALID, codes), dtype=np.int8)


def _check(traffic_split: float, alpha: float, min_labelled: int, mode: str, scale: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if not 0 <= traffic_split <= 1:
        raise ValueError(f"traffic_split is the share of traffic to B, in [0, 1]; got {traffic_split}.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    if min_labelled < 1:
        raise ValueError(f"min_labelled must be at least 1, got {min_labelled}.")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}.")


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
    srm_p: float | None,
    alpha: float,
) -> str:
    if decision is Decision.INVALID:
        assert observed_split is not None
        assert srm_p is not None
        return (
            f"The test is invalid: the candidate (B) received {observed_split:.1%} of subjects where "
            f"{traffic_split:.1%} were configured, more than chance explains however often the split is checked "
            f"(p = {srm_p:.2g}, at most {SRM_LEVEL:g}), so the arms may not see comparable patients; fix the "
            "assignment before trusting any result."
        )
    if min(a.labelled, b.labelled) < min_labelled:
        return (
            f"Not enough feedback yet: each version needs at least {min_labelled} predictions checked by "
            f"a clinician before any decision (A has {a.labelled}, B has {b.labelled})."
        )
    if difference.low is None or difference.high is None or a.accuracy is None or b.accuracy is None:
        return "Not enough feedback yet to compare the versions on the same kind of patients."
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
    observations: Observations,
    traffic_split: float,
    alpha: float = 0.05,
    min_labelled: int = 100,
    mode: str = "split",
    scale: float = EFFECT_SCALE,
) -> Evaluation:
    """The figures and decision of an A/B test (see the module docstring for the method).

    ``a`` / ``b``: each arm's counts (the ratio check, the minimum, the per-arm accuracies);
    ``observations``: the units the confidence sequence reads (``a`` and ``b`` in split mode,
    ``paired`` in shadow mode). ``traffic_split``: the configured share to B (ignored in shadow mode).
    Raises ValueError on an unknown mode or a parameter out of range.
    """
    _check(traffic_split, alpha, min_labelled, mode, scale)
    srm_p: float | None = None
    srm_e: float | None = None
    observed_split: float | None = None
    if mode == "split" and a.assigned + b.assigned > 0:
        log_e = float(srm_log_e_values(a.assigned, b.assigned, traffic_split))
        srm_e = math.exp(log_e) if log_e < 700 else math.inf
        srm_p = float(srm_p_values(a.assigned, b.assigned, traffic_split))
        observed_split = b.assigned / (a.assigned + b.assigned)
    srm_failed = srm_p is not None and srm_p <= SRM_LEVEL

    if mode == "shadow":
        z = observations.paired
        units_a = units_b = len(z)
    else:
        z = blocks(observations.a, observations.b, traffic_split)
        units_a, units_b = len(observations.a), len(observations.b)
    difference = confidence_sequence(z, alpha=alpha, scale=scale)
    wealth = _Wealth(z, scale)
    for_b, for_a = (wealth(0.0, 1), wealth(0.0, -1)) if len(z) else (0.0, 0.0)

    ready = min(a.labelled, b.labelled) >= min_labelled
    # The same vectorised rule the benchmark's simulations apply.
    decision = DECISIONS[int(decide(for_b, for_a, alpha=alpha, ready=ready, srm_failed=srm_failed))]

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
            srm_p=srm_p,
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
        srm_e_value=srm_e,
        units_a=units_a,
        units_b=units_b,
        blocks=len(z),
        evidence_for_b=math.exp(min(for_b, 700.0)),
        evidence_for_a=math.exp(min(for_a, 700.0)),
    )
