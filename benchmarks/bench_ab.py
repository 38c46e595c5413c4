"""A/B test statistics (``models_registry.ab_stats``) under continuous monitoring, by simulation.

Each simulated test is a stream of 4,000 requests with clinician feedback, each sent to B with
probability 0.5 (the configured split), so about 2,000 per arm with the usual random imbalance.
The decision is read after every 20 feedbacks (200 reads per test) with the module's own rule:
the sample ratio check on the arm counts, the minimum of 100 labelled per arm, and the anytime-valid
confidence sequence at alpha = 0.05 (``decide``, the function ``evaluate`` applies).

- A/A: both versions 80% accurate. The share of tests whose decision is *ever* ``ship_b`` or
  ``rollback`` is the false-positive rate of somebody watching all the time; goal at most alpha.
- A/B: 80% vs 85%. The share that reaches ``ship_b`` by the end (2,000 per arm) is the power,
  goal at least 0.8. The harness passes a row when measured / baseline <= max_ratio, so the row
  shows the miss rate (1 - power) against 0.2 with max_ratio 1: the same goal.
- Broken split: configured 0.5, true 0.55, 10,000 assigned requests: the share of tests flagged
  ``invalid`` (goal: all but at most 1%; the row shows the share *not* flagged against 0.01), and
  ``evaluate`` itself on exactly 4,500 / 5,500.

Pure numpy on a (tests x feedbacks) array in chunks: no database, a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from benchmarks.harness import Result, scaled, timer
from models_registry import ab_stats

TESTS = 1000
FEEDBACKS = 4000  # both arms together: about 2,000 per arm
EVERY = 20
ALPHA = 0.05
MIN_LABELLED = 100
POWER_GOAL = 0.8
SPLIT_REQUESTS = 10_000
CHUNK = 250  # tests per block: bounds memory at a few tens of MB


@dataclass
class Simulation:
    """Per test: whether the decision was ever each of the outcomes at one of the reads."""

    ship_b: NDArray[np.bool_]
    rollback: NDArray[np.bool_]
    invalid: NDArray[np.bool_]
    labelled_at_ship: NDArray[np.float64]  # labelled per arm (mean of the two) at the first ship_b; NaN if never

    @property
    def tests(self) -> int:
        return len(self.ship_b)


def simulate(
    accuracy_a: float,
    accuracy_b: float,
    *,
    tests: int,
    seed: int,
    feedbacks: int = FEEDBACKS,
    every: int = EVERY,
    traffic_split: float = 0.5,
    alpha: float = ALPHA,
    min_labelled: int = MIN_LABELLED,
    radius: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None,
) -> Simulation:
    """``tests`` independent A/B tests, the decision read after every ``every`` feedbacks.

    ``radius``: the interval's half-width from the variance of the difference; default the module's
    confidence sequence (the tests pass a fixed-sample one to show what peeking does to it).
    """
    rng = np.random.default_rng(seed)
    reads = np.arange(every, feedbacks + 1, every) - 1
    parts: list[tuple[NDArray[np.bool_], ...]] = []
    firsts: list[NDArray[np.float64]] = []
    for start in range(0, tests, CHUNK):
        size = min(CHUNK, tests - start)
        to_b = rng.random((size, feedbacks)) < traffic_split
        correct = rng.random((size, feedbacks)) < np.where(to_b, accuracy_b, accuracy_a)
        labelled_b = np.cumsum(to_b, axis=1)[:, reads]
        labelled_a = reads + 1 - labelled_b
        correct_b = np.cumsum(correct & to_b, axis=1)[:, reads]
        correct_a = np.cumsum(correct & ~to_b, axis=1)[:, reads]
        with np.errstate(divide="ignore", invalid="ignore"):
            difference = correct_b / labelled_b - correct_a / labelled_a
        variance = ab_stats.unpaired_variance(correct_a, labelled_a, correct_b, labelled_b)
        half_width = radius(variance) if radius is not None else ab_stats.cs_radius(variance, alpha=alpha)
        # Every request here gets feedback, so the assigned counts are the labelled ones.
        srm_failed = ab_stats.srm_p_values(labelled_a, labelled_b, traffic_split) < ab_stats.SRM_THRESHOLD
        ready = np.minimum(labelled_a, labelled_b) >= min_labelled
        codes = ab_stats.decide(difference, half_width, ready=ready, srm_failed=srm_failed)
        shipped = codes == ab_stats.SHIP_B
        parts.append(
            (shipped.any(axis=1), (codes == ab_stats.ROLLBACK).any(axis=1), (codes == ab_stats.INVALID).any(axis=1))
        )
        first = np.argmax(shipped, axis=1)
        firsts.append(np.where(shipped.any(axis=1), (reads[first] + 1) / 2, np.nan))
    ship_b, rollback, invalid = (np.concatenate(column) for column in zip(*parts, strict=True))
    return Simulation(ship_b, rollback, invalid, np.concatenate(firsts))


def broken_split_flagged(*, tests: int, seed: int, configured: float = 0.5, true: float = 0.55) -> float:
    """The share of tests with ``SPLIT_REQUESTS`` requests at the ``true`` split flagged invalid."""
    rng = np.random.default_rng(seed)
    to_b = rng.binomial(SPLIT_REQUESTS, true, size=tests)
    p = ab_stats.srm_p_values(SPLIT_REQUESTS - to_b, to_b, configured)
    return float(np.mean(p < ab_stats.SRM_THRESHOLD))


def run() -> list[Result]:
    tests = scaled(TESTS)
    with timer() as elapsed:
        null = simulate(0.80, 0.80, tests=tests, seed=1)
        alternative = simulate(0.80, 0.85, tests=tests, seed=2)
        flagged = broken_split_flagged(tests=tests, seed=3)
        honest = broken_split_flagged(tests=tests, seed=4, true=0.5)
    false_positive = float(np.mean(null.ship_b | null.rollback))
    power = float(np.mean(alternative.ship_b))
    exact = ab_stats.evaluate(
        ab_stats.ArmFigures(assigned=4500, labelled=500, correct=400),
        ab_stats.ArmFigures(assigned=5500, labelled=500, correct=400),
        traffic_split=0.5,
    )
    reads = f"read after every {EVERY} feedbacks up to {FEEDBACKS:,} (about {FEEDBACKS // 2:,} per arm)"
    return [
        Result(
            f"A/A 0.80 vs 0.80: share ever ship_b or rollback, {tests:,} tests",
            false_positive,
            "",
            baseline=ALPHA,
            max_ratio=1.0,
            note=(
                f"goal <= alpha = {ALPHA}; {reads}; ship_b {null.ship_b.mean():.3f}, rollback "
                f"{null.rollback.mean():.3f}; ever flagged invalid by the (fixed-sample) split check at one "
                f"of the reads {null.invalid.mean():.3f}"
            ),
        ),
        Result(
            f"A/B 0.80 vs 0.85: share missing ship_b by {FEEDBACKS // 2:,}/arm (1 - power), {tests:,} tests",
            1 - power,
            "",
            baseline=1 - POWER_GOAL,
            max_ratio=1.0,
            note=(
                f"power {power:.3f}, goal >= {POWER_GOAL}; {reads}; ever rollback {alternative.rollback.mean():.3f}; "
                f"median labelled per arm at the first ship_b {np.nanmedian(alternative.labelled_at_ship):,.0f}; "
                f"mixture scale tau = {ab_stats.MIXTURE_SCALE}"
            ),
        ),
        Result(
            f"broken split (0.50 configured, 0.55 true, {SPLIT_REQUESTS:,} requests): share not flagged invalid",
            # evaluate() itself must call the exact case invalid, or the row fails whatever the share.
            1 - flagged if exact.decision is ab_stats.Decision.INVALID else 1.0,
            "",
            baseline=0.01,
            max_ratio=1.0,
            note=(
                f"{flagged:.3f} of {tests:,} flagged (goal >= 0.99); an honest 0.50 split flagged in {honest:.3f} "
                f"(expected about {ab_stats.SRM_THRESHOLD}); evaluate() on 4,500 / 5,500 assigned: "
                f"{exact.decision.value}, p = {exact.srm_p_value:.1e}"
            ),
        ),
        Result("A/B simulations: wall time", elapsed.wall, "s", note=f"CPU {elapsed.cpu:.2f} s"),
    ]
