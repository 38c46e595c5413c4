"""A/B test statistics (``models_registry.experiments.stats``) under continuous monitoring, by simulation.

Every simulated test goes through the functions production calls (``blocks``, ``complete_blocks``,
``log_wealth``, ``srm_p_values``, ``decide``), read after every feedback (every assignment for the
ratio check) unless said otherwise. The rows, each with its goal (``docs/statistics.md`` explains):

- A/A grid: split {0.1, 0.5, 0.9} x accuracy {0.5, 0.8, 0.95, 0.97, 0.99}, both arms equally
  accurate, up to ``BENCH_AB_SMALL_ARM`` feedbacks in the smaller arm: the share of tests that ever
  reach ``ship_b`` or ``rollback`` (goal <= alpha = 0.05) and each direction (goal <= 0.025).
- Power: 0.80 vs 0.85, 50/50, read until both arms have 2,000: the share that reaches ``ship_b``
  (goal >= 0.8; the row shows the miss rate against 0.2).
- The ratio check: honest splits read after every one of 20,000 assignments (false alarms, goal
  <= 0.01), and 0.47 against a configured 0.50 (detection by 10,000 assignments, goal >= 0.85).
- Repeat subjects (split mode): 1 to 20 predictions per subject, a per-subject effect on the
  log-odds of being right (sd ``CLUSTER_EFFECT_SD``), visits spread over the test, read after every
  ``CLUSTER_EVERY`` feedbacks; the per-subject analysis (goal <= alpha) beside the same data analysed
  per prediction (which the clustering breaks: shown, no goal).
- Shadow mode: paired answers, both versions 80% right and disagreeing on 10% or 30% of the labelled
  requests, with repeat subjects; A/A (goal <= alpha) and 0.80 vs 0.83 (power, shown).

Sizes: ``BENCH_AB_TESTS`` tests per cell (default 1,000, times ``BENCH_SCALE``),
``BENCH_AB_SMALL_ARM`` (default 3,000), ``BENCH_AB_CLUSTER_TESTS`` (default 400). Each rate comes
with its Monte-Carlo standard error. Pure numpy: no database.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, logit

from benchmarks.harness import Result, scaled, timer
from models_registry.experiments import stats as ab_stats

ALPHA = 0.05
MIN_LABELLED = 100
POWER_GOAL = 0.8
POWER_PER_ARM = 2000
SPLITS = (0.1, 0.5, 0.9)
ACCURACIES = (0.5, 0.8, 0.95, 0.97, 0.99)
SRM_HONEST_UNITS = 20_000
SRM_DETECT_UNITS = 10_000
SRM_DETECT_GOAL = 0.85
CLUSTER_SUBJECTS = 400  # about 4,200 predictions per test
CLUSTER_EFFECT_SD = 1.5  # on the log-odds: within-subject correlation of about 0.3 at 80% accuracy
CLUSTER_EVERY = 10
CHUNK_CELLS = 6_000_000  # tests x reads per block: bounds memory at a few hundred MB


def env_size(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}.") from None
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, got {value}.")
    return value


@dataclass
class Rates:
    """Per test: whether each outcome was ever the decision at one of the reads."""

    ship_b: NDArray[np.bool_]
    rollback: NDArray[np.bool_]
    invalid: NDArray[np.bool_]

    @property
    def tests(self) -> int:
        return len(self.ship_b)

    @property
    def either(self) -> NDArray[np.bool_]:
        return self.ship_b | self.rollback

    @staticmethod
    def join(parts: list[Rates]) -> Rates:
        return Rates(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("ship_b", "rollback", "invalid")))


def rate(flags: NDArray[np.bool_]) -> tuple[float, float]:
    """The share and its Monte-Carlo standard error."""
    share = float(np.mean(flags))
    return share, math.sqrt(max(share * (1 - share), 1e-12) / len(flags))


def _decisions(
    wealth_b: NDArray[np.float64],
    wealth_a: NDArray[np.float64],
    blocks_read: NDArray[np.int64],
    labelled_a: NDArray[np.int64],
    labelled_b: NDArray[np.int64],
    assigned_a: NDArray[np.int64],
    assigned_b: NDArray[np.int64],
    split: float | None,
) -> Rates:
    """What ``evaluate`` decides at each read (tests x reads), from the wealth paths (tests x blocks)."""
    index = np.maximum(blocks_read - 1, 0)
    rows = np.arange(len(wealth_b))[:, None]
    for_b = np.where(blocks_read > 0, wealth_b[rows, index], 0.0)
    for_a = np.where(blocks_read > 0, wealth_a[rows, index], 0.0)
    ready = np.minimum(labelled_a, labelled_b) >= MIN_LABELLED
    srm_failed: NDArray[np.bool_] | bool = False
    if split is not None:
        srm_failed = ab_stats.srm_p_values(assigned_a, assigned_b, split) <= ab_stats.SRM_LEVEL
    codes = ab_stats.decide(for_b, for_a, alpha=ALPHA, ready=ready, srm_failed=srm_failed)
    return Rates(
        (codes == ab_stats.SHIP_B).any(axis=1),
        (codes == ab_stats.ROLLBACK).any(axis=1),
        (codes == ab_stats.INVALID).any(axis=1),
    )


def simulate_split(
    accuracy_a: float,
    accuracy_b: float,
    *,
    split: float,
    tests: int,
    seed: int,
    small_arm: int,
    until_both: int | None = None,
) -> Rates:
    """Split-mode tests with one prediction per subject, every one labelled, read after every feedback.

    Each arm's outcomes are a stream of their own (independent of who is assigned when), so the arm
    sequence and the outcomes are drawn separately. A test runs until its smaller arm has about
    ``small_arm`` feedbacks, or (``until_both``) until both arms have that many.
    """
    rng = np.random.default_rng(seed)
    small_share = min(split, 1 - split)
    feedbacks = int(small_arm / small_share * 1.1) if until_both else round(small_arm / small_share)
    chunk = max(1, CHUNK_CELLS // feedbacks)
    parts = []
    for start in range(0, tests, chunk):
        size = min(chunk, tests - start)
        to_b = rng.random((size, feedbacks)) < split
        count_b = np.cumsum(to_b, axis=1)
        count_a = np.arange(1, feedbacks + 1) - count_b
        values_a = (rng.random((size, int(count_a[:, -1].max()))) < accuracy_a).astype(np.float64)
        values_b = (rng.random((size, int(count_b[:, -1].max()))) < accuracy_b).astype(np.float64)
        z = ab_stats.blocks(values_a, values_b, split)
        read = ab_stats.complete_blocks(count_a, count_b, split)
        if until_both:
            # Reads after both arms pass the size no longer count: the decision had to come by then.
            late = np.minimum(count_a, count_b) > until_both
            read = np.where(late, 0, read)
        wealth_b = ab_stats.log_wealth(z, side=1)
        wealth_a = ab_stats.log_wealth(z, side=-1)
        parts.append(_decisions(wealth_b, wealth_a, read, count_a, count_b, count_a, count_b, split))
    return Rates.join(parts)


def srm_flagged(*, tests: int, seed: int, configured: float, true: float, units: int) -> float:
    """The share of tests whose ratio check fails at some read, read after every assignment."""
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // units)
    flagged = []
    for start in range(0, tests, chunk):
        size = min(chunk, tests - start)
        count_b = np.cumsum(rng.random((size, units)) < true, axis=1)
        count_a = np.arange(1, units + 1) - count_b
        flagged.append((ab_stats.srm_p_values(count_a, count_b, configured) <= ab_stats.SRM_LEVEL).any(axis=1))
    return float(np.mean(np.concatenate(flagged)))


@dataclass
class Stream:
    """One test's feedback stream with repeat subjects, in time order."""

    subject: NDArray[np.int64]  # per feedback
    arm_b: NDArray[np.bool_]  # per subject (split mode)
    correct_a: NDArray[np.bool_]  # per feedback: A's answer right (split: the answering arm's)
    correct_b: NDArray[np.bool_]  # per feedback: B's (shadow mode)


def cluster_stream(
    rng: np.random.Generator,
    *,
    subjects: int,
    split: float,
    accuracy_a: float,
    accuracy_b: float,
    discordance: float | None = None,
) -> Stream:
    """Subjects with 1..20 predictions each, a per-subject effect on the log-odds, visits spread out.

    Split mode (``discordance`` None): each prediction is right with the subject's own chance under
    its arm's version. Shadow mode: both versions answer every request; their answers differ with
    chance ``discordance``, B being the one right in the share of those that makes it ``accuracy_b -
    accuracy_a`` more accurate; otherwise both are right with the subject's chance under A.
    """
    visits = rng.integers(1, 21, subjects)
    effect = CLUSTER_EFFECT_SD * rng.standard_normal(subjects)
    arrival = rng.random(subjects) * 100.0
    subject = np.repeat(np.arange(subjects), visits)
    gaps = rng.exponential(5.0, len(subject))
    starts = np.concatenate(([0], np.cumsum(visits)[:-1]))
    cumulative = np.cumsum(gaps)
    offset = cumulative - np.repeat(cumulative[starts] - gaps[starts], visits)
    order = np.argsort(arrival[subject] + offset, kind="stable")
    subject = subject[order]
    arm_b = rng.random(subjects) < split
    chance = expit(logit(accuracy_a) + effect[subject])
    if discordance is None:
        chance_b = expit(logit(accuracy_b) + effect[subject])
        right = rng.random(len(subject)) < np.where(arm_b[subject], chance_b, chance)
        return Stream(subject, arm_b, right, right)
    # Shadow: most requests both versions answer alike (right with the subject's chance); a share
    # ``discordance`` only one gets right, B with probability ``b_share``: 1/2 when equally accurate.
    b_share = 0.5 + (accuracy_b - accuracy_a) / (2 * discordance)
    alike = rng.random(len(subject)) < chance
    discordant = rng.random(len(subject)) < discordance
    b_only = rng.random(len(subject)) < b_share
    right_a = np.where(discordant, ~b_only, alike)
    right_b = np.where(discordant, b_only, alike)
    return Stream(subject, arm_b, right_a, right_b)


def _unit_means(
    units: NDArray[np.int64], values: NDArray[np.float64], read_of: NDArray[np.int64], reads: int, count: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per read and unit (in the arm's order): the unit's mean so far (0 before it exists), and units present."""
    labelled = np.zeros((reads + 1, count))
    total = np.zeros((reads + 1, count))
    np.add.at(labelled, (read_of, units), 1.0)
    np.add.at(total, (read_of, units), values)
    labelled, total = np.cumsum(labelled, axis=0)[:-1], np.cumsum(total, axis=0)[:-1]
    means = np.divide(total, labelled, out=np.zeros_like(total), where=labelled > 0)
    return means, (labelled > 0).sum(axis=1)


def simulate_clusters(
    accuracy_a: float,
    accuracy_b: float,
    *,
    split: float | None,
    tests: int,
    seed: int,
    per_prediction: bool = False,
    discordance: float | None = None,
    every: int = CLUSTER_EVERY,
) -> Rates:
    """Tests with repeat subjects, each read after every ``every`` feedbacks.

    ``split`` None: shadow mode (``discordance`` required). ``per_prediction``: analyse every
    prediction as its own unit, ignoring that a subject's answers are correlated (for contrast).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(tests):
        stream = cluster_stream(
            rng,
            subjects=CLUSTER_SUBJECTS,
            split=split if split is not None else 0.5,
            accuracy_a=accuracy_a,
            accuracy_b=accuracy_b,
            discordance=discordance,
        )
        n = len(stream.subject)
        if per_prediction and split is not None:
            parts.append(_per_prediction(stream, split=split, every=every))
            continue
        reads = n // every
        read_of = np.arange(n) // every  # feedback t is in reads read_of[t] + 1, ...
        unit = np.arange(n) if per_prediction else stream.subject
        if split is None:
            order = _first_seen(unit)
            paired = stream.correct_b.astype(np.float64) - stream.correct_a
            z, present = _unit_means(order[unit], paired, read_of, reads, int(order.max()) + 1)
            labelled = np.searchsorted(read_of, np.arange(reads), side="right")
            wealth_b = ab_stats.log_wealth(z, side=1)
            wealth_a = ab_stats.log_wealth(z, side=-1)
            parts.append(_decisions_per_read(wealth_b, wealth_a, present, labelled, labelled, None, None, None))
            continue
        in_b = stream.arm_b[stream.subject]
        arm_values = {}
        for arm, mask in (("a", ~in_b), ("b", in_b)):
            order = _first_seen(unit[mask])
            arm_values[arm] = _unit_means(
                order[unit[mask]],
                stream.correct_a[mask].astype(np.float64),
                read_of[mask],
                reads,
                len(np.unique(unit[mask])),
            )
        (means_a, present_a), (means_b, present_b) = arm_values["a"], arm_values["b"]
        z = ab_stats.blocks(means_a, means_b, split)
        read = ab_stats.complete_blocks(present_a, present_b, split)
        labelled_b = np.searchsorted(read_of[in_b], np.arange(reads), side="right")
        labelled_a = np.searchsorted(read_of[~in_b], np.arange(reads), side="right")
        # The ratio check counts subjects (units of assignment), as production does.
        assigned_a, assigned_b = present_a, present_b
        wealth_b = ab_stats.log_wealth(z, side=1)
        wealth_a = ab_stats.log_wealth(z, side=-1)
        parts.append(
            _decisions_per_read(wealth_b, wealth_a, read, labelled_a, labelled_b, assigned_a, assigned_b, split)
        )
    return Rates.join(parts)


def _per_prediction(stream: Stream, *, split: float, every: int) -> Rates:
    """A split test analysed as if every prediction were its own unit: values never change, one path."""
    in_b = stream.arm_b[stream.subject]
    n = len(in_b)
    values_a = stream.correct_a[~in_b].astype(np.float64)
    values_b = stream.correct_a[in_b].astype(np.float64)
    z = ab_stats.blocks(values_a, values_b, split)
    wealth_b, wealth_a = ab_stats.log_wealth(z, side=1), ab_stats.log_wealth(z, side=-1)
    count_b = np.cumsum(in_b)[every - 1 :: every]
    count_a = np.arange(every, n + 1, every) - count_b
    read = ab_stats.complete_blocks(count_a, count_b, split)
    # The ratio check still counts subjects: that part is not what this contrast is about.
    return _decisions_per_read(
        np.broadcast_to(wealth_b, (len(read), len(z))),
        np.broadcast_to(wealth_a, (len(read), len(z))),
        read,
        count_a,
        count_b,
        None,
        None,
        None,
    )


def _first_seen(units: NDArray[np.int64]) -> NDArray[np.int64]:
    """Per unit id, its position in order of first appearance (ids absent map to -1)."""
    order = np.full(int(units.max(initial=-1)) + 1, -1, dtype=np.int64)
    _, first = np.unique(units, return_index=True)
    ids = units[np.sort(first)]
    order[ids] = np.arange(len(ids))
    return order


def _decisions_per_read(
    wealth_b: NDArray[np.float64],
    wealth_a: NDArray[np.float64],
    blocks_read: NDArray[np.int64],
    labelled_a: NDArray[np.int64],
    labelled_b: NDArray[np.int64],
    assigned_a: NDArray[np.int64] | None,
    assigned_b: NDArray[np.int64] | None,
    split: float | None,
) -> Rates:
    """One test whose blocks change from read to read: wealth paths per read (reads x blocks)."""
    reads = np.arange(len(blocks_read))
    index = np.maximum(blocks_read - 1, 0)
    for_b = np.where(blocks_read > 0, wealth_b[reads, index], 0.0)
    for_a = np.where(blocks_read > 0, wealth_a[reads, index], 0.0)
    ready = np.minimum(labelled_a, labelled_b) >= MIN_LABELLED
    srm_failed: NDArray[np.bool_] | bool = False
    if split is not None and assigned_a is not None and assigned_b is not None:
        srm_failed = ab_stats.srm_p_values(assigned_a, assigned_b, split) <= ab_stats.SRM_LEVEL
    codes = ab_stats.decide(for_b, for_a, alpha=ALPHA, ready=ready, srm_failed=srm_failed)
    return Rates(
        np.array([(codes == ab_stats.SHIP_B).any()]),
        np.array([(codes == ab_stats.ROLLBACK).any()]),
        np.array([(codes == ab_stats.INVALID).any()]),
    )


# --- The rows ----------------------------------------------------------------------------------------


def _row(name: str, flags: NDArray[np.bool_], goal: float, note: str = "") -> Result:
    share, error = rate(flags)
    return Result(name, share, "", baseline=goal, max_ratio=1.0, note=f"+- {error:.4f} (MC s.e.); {note}".rstrip("; "))


def run() -> list[Result]:
    tests = scaled(env_size("BENCH_AB_TESTS", 1000))
    small_arm = env_size("BENCH_AB_SMALL_ARM", 3000)
    cluster_tests = scaled(env_size("BENCH_AB_CLUSTER_TESTS", 400))
    results: list[Result] = []
    with timer() as elapsed:
        worst = (0.0, "")
        for i, split in enumerate(SPLITS):
            for j, accuracy in enumerate(ACCURACIES):
                null = simulate_split(
                    accuracy, accuracy, split=split, tests=tests, seed=100 + 10 * i + j, small_arm=small_arm
                )
                either, error = rate(null.either)
                ship, _ = rate(null.ship_b)
                rollback, _ = rate(null.rollback)
                if either >= worst[0]:
                    worst = (either, f"split {split}, accuracy {accuracy}")
                results.append(
                    Result(
                        f"A/A split {split:.1f}, accuracy {accuracy:.2f}: ever ship_b or rollback",
                        either,
                        "",
                        baseline=ALPHA,
                        max_ratio=1.0 if max(ship, rollback) <= ALPHA / 2 else 0.0,
                        note=f"+- {error:.4f}; ship_b {ship:.4f}, rollback {rollback:.4f} (each goal <= "
                        f"{ALPHA / 2}); ever invalid {null.invalid.mean():.4f}",
                    )
                )
        power = simulate_split(
            0.80, 0.85, split=0.5, tests=tests, seed=2, small_arm=POWER_PER_ARM, until_both=POWER_PER_ARM
        )
        share, error = rate(power.ship_b)
        results.append(
            Result(
                f"A/B 0.80 vs 0.85, 50/50: share missing ship_b by {POWER_PER_ARM:,}/arm (1 - power)",
                1 - share,
                "",
                baseline=1 - POWER_GOAL,
                max_ratio=1.0,
                note=f"power {share:.4f} +- {error:.4f}, goal >= {POWER_GOAL}; "
                f"ever rollback {power.rollback.mean():.4f}",
            )
        )
        honest = {
            split: srm_flagged(tests=tests, seed=300 + i, configured=split, true=split, units=SRM_HONEST_UNITS)
            for i, split in enumerate(SPLITS)
        }
        for split, flagged in honest.items():
            error = math.sqrt(max(flagged * (1 - flagged), 1e-12) / tests)
            results.append(
                Result(
                    f"ratio check, honest split {split:.1f}: ever flagged in {SRM_HONEST_UNITS:,} reads",
                    flagged,
                    "",
                    baseline=ab_stats.SRM_LEVEL,
                    max_ratio=1.0,
                    note=f"+- {error:.4f}; goal <= {ab_stats.SRM_LEVEL}, read after every assignment",
                )
            )
        caught = srm_flagged(tests=tests, seed=310, configured=0.5, true=0.47, units=SRM_DETECT_UNITS)
        results.append(
            Result(
                f"ratio check, 0.47 vs 0.50: share not caught by {SRM_DETECT_UNITS:,} assignments",
                1 - caught,
                "",
                baseline=1 - SRM_DETECT_GOAL,
                max_ratio=1.0,
                note=f"caught {caught:.4f} +- {math.sqrt(max(caught * (1 - caught), 1e-12) / tests):.4f}, "
                f"goal >= {SRM_DETECT_GOAL}",
            )
        )
        for i, (split, accuracy) in enumerate(((0.5, 0.8), (0.1, 0.8), (0.5, 0.95), (0.9, 0.95))):
            clustered = simulate_clusters(accuracy, accuracy, split=split, tests=cluster_tests, seed=400 + i)
            naive = simulate_clusters(
                accuracy, accuracy, split=split, tests=cluster_tests, seed=400 + i, per_prediction=True
            )
            results.append(
                _row(
                    f"repeat subjects, split {split:.1f}, accuracy {accuracy:.2f}: A/A ever ship_b or rollback",
                    clustered.either,
                    ALPHA,
                    f"ship_b {clustered.ship_b.mean():.4f}, rollback {clustered.rollback.mean():.4f}; the same "
                    f"tests analysed per prediction: {naive.either.mean():.4f}; read every {CLUSTER_EVERY} feedbacks",
                )
            )
        for i, discordance in enumerate((0.1, 0.3)):
            null = simulate_clusters(0.8, 0.8, split=None, tests=cluster_tests, seed=500 + i, discordance=discordance)
            results.append(
                _row(
                    f"shadow, repeat subjects, 0.80 vs 0.80, {discordance:.0%} discordant: A/A ever ship_b or rollback",
                    null.either,
                    ALPHA,
                    f"ship_b {null.ship_b.mean():.4f}, rollback {null.rollback.mean():.4f}",
                )
            )
        shadow_power = simulate_clusters(0.8, 0.83, split=None, tests=cluster_tests, seed=510, discordance=0.2)
        share, error = rate(shadow_power.ship_b)
        results.append(
            Result(
                "shadow, repeat subjects, 0.80 vs 0.83, ~20% discordant: share reaching ship_b (power)",
                share,
                "",
                note=f"+- {error:.4f}; about {CLUSTER_SUBJECTS} subjects and 4,200 paired requests per test; no goal",
            )
        )
    results.append(
        Result(
            "A/B simulations: wall time",
            elapsed.wall,
            "s",
            note=f"CPU {elapsed.cpu:.1f} s; {tests:,} tests per cell up to {small_arm:,} in the smaller arm; "
            f"{cluster_tests:,} tests per repeat-subject row; worst A/A cell {worst[1]} at {worst[0]:.4f}",
        )
    )
    return results
