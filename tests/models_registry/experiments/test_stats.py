"""The A/B test statistics: each formula pinned against an independent reference, the decision rule,
and reduced versions of the benchmark's simulations (the full grids are ``benchmarks/bench_ab.py``'s)."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
from scipy.stats import betabinom, binom, halfnorm
from statsmodels.stats.proportion import proportion_confint

from benchmarks.bench_ab import simulate_clusters, simulate_split, srm_flagged
from models_registry.experiments import stats as ab_stats
from models_registry.experiments.stats import (
    Agreement,
    ArmFigures,
    Decision,
    Interval,
    Observations,
    blocks,
    complete_blocks,
    confidence_sequence,
    decide,
    evaluate,
    log_wealth,
    predictable_sd,
    shadow_agreement,
    spread,
    srm_log_e_values,
    srm_p_values,
    wilson_interval,
)


def arm(labelled: int, correct: int, *, assigned: int = 1000) -> ArmFigures:
    return ArmFigures(assigned=assigned, labelled=labelled, correct=correct)


def run(a: ArmFigures, b: ArmFigures, **options: Any) -> ab_stats.Evaluation:
    """``evaluate`` with one prediction per subject, the correct ones spread evenly through each arm."""
    observations = Observations(a=spread(a.labelled, a.correct), b=spread(b.labelled, b.correct))
    return evaluate(a, b, observations=observations, **{"traffic_split": 0.5, **options})


# --- Reference values -------------------------------------------------------------------------------


@pytest.mark.parametrize(("correct", "labelled"), [(8, 10), (0, 5), (5, 5), (37, 120), (999, 1000), (1, 1)])
def test_wilson_interval_matches_statsmodels(correct: int, labelled: int) -> None:
    low, high = proportion_confint(correct, labelled, alpha=0.05, method="wilson")
    interval = wilson_interval(correct, labelled)

    assert interval.estimate == correct / labelled
    assert interval.low == pytest.approx(low, abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)


def test_the_ratio_e_value_is_the_beta_binomial_over_the_binomial_likelihood() -> None:
    # The mixture's e-value of the counts is P(counts | Beta-binomial) / P(counts | binomial at the split):
    # the binomial coefficients cancel, leaving the sequence form the module computes.
    for assigned_a, assigned_b, split in [(40, 60, 0.5), (800, 200, 0.2), (7, 0, 0.1), (0, 3, 0.9), (4500, 5500, 0.5)]:
        n = assigned_a + assigned_b
        k = ab_stats.SRM_CONCENTRATION
        reference = betabinom.logpmf(assigned_b, n, k * split, k * (1 - split)) - binom.logpmf(assigned_b, n, split)
        assert float(srm_log_e_values(assigned_a, assigned_b, split)) == pytest.approx(reference, rel=1e-9, abs=1e-9)


def test_the_ratio_e_value_by_hand() -> None:
    # Concentration 2 at 0.5 is a uniform prior: two assignments to A have marginal chance
    # integral of (1 - t)^2 dt = 1/3 against 1/4 under the split: e = 4/3. One to each: 1/6 vs 1/4.
    assert math.exp(srm_log_e_values(2, 0, 0.5, concentration=2.0)) == pytest.approx(4 / 3)
    assert math.exp(srm_log_e_values(1, 1, 0.5, concentration=2.0)) == pytest.approx(2 / 3)
    assert float(srm_p_values(1, 1, 0.5)) == 1.0  # an e-value below 1 is no evidence: p is capped at 1


def test_a_split_of_zero_or_one_flags_any_unit_in_the_empty_arm() -> None:
    assert float(srm_p_values(100, 0, 0.0)) == 1.0
    assert float(srm_p_values(100, 1, 0.0)) == 0.0
    assert float(srm_p_values(0, 100, 1.0)) == 1.0
    assert float(srm_p_values(1, 100, 1.0)) == 0.0
    assert math.isnan(float(srm_p_values(0, 0, 0.3)))


def test_blocks_by_hand() -> None:
    # Split 0.25: three units of A per unit of B. Block 1: B 1 vs A (1, 0, 1); block 2: B 0 vs A (1, 1, 1).
    z = blocks([1, 0, 1, 1, 1, 1, 0], [1, 0, 1], 0.25)
    assert z.tolist() == pytest.approx([1 - 2 / 3, 0 - 1])
    # Split 0.7: B is the larger arm, 7/3 units of it per unit of A: the shares alternate 2, 2, 3.
    z = blocks([1, 0, 1], [1, 1, 0, 0, 1, 1, 1], 0.7)
    assert z.tolist() == pytest.approx([1 - 1, 0 - 0, 1 - 1])
    # 50/50 is one unit of each.
    assert blocks([1, 0, 1], [0, 0, 1, 1], 0.5).tolist() == [-1, 0, 0]


def test_complete_blocks_counts_the_blocks_both_arms_have_filled() -> None:
    assert complete_blocks(7, 2, 0.25).tolist() == 2
    assert complete_blocks(5, 2, 0.25).tolist() == 1  # the second block needs A's sixth unit
    assert complete_blocks([0, 3, 3, 6], [1, 0, 5, 5], 0.25).tolist() == [0, 0, 1, 2]
    assert complete_blocks(7, 7, 0.7).tolist() == 3
    assert complete_blocks(10, 10, 0.0).tolist() == 0


def test_the_predictable_spread_uses_only_earlier_blocks() -> None:
    z = np.array([1.0, -1.0, 0.0, 1.0])
    expected = []
    for k in range(len(z)):
        before = z[:k]
        deviations = float(np.sum((before - before.mean()) ** 2)) if k else 0.0
        expected.append(math.sqrt((ab_stats.PRIOR_VARIANCE + deviations) / (k + 1)) if k else 0.5)
    assert predictable_sd(z).tolist() == pytest.approx(expected)


def _reference_log_wealth(z: list[float], m: float, side: int) -> float:
    """The same wealth written out with loops and scipy's half-normal (no code shared with the module)."""
    tau = ab_stats.EFFECT_SCALE
    step = ab_stats.PRIOR_SPAN * tau / ab_stats.PRIOR_POINTS
    points = [(g + 0.5) * step for g in range(ab_stats.PRIOR_POINTS)]
    weights = [halfnorm.pdf(u, scale=tau) for u in points]
    total = sum(weights)
    wealth = 0.0
    for u, weight in zip(points, weights, strict=True):
        capital = 1.0
        for k, value in enumerate(z):
            before = z[:k]
            mean = sum(before) / k if k else 0.0
            variance = (ab_stats.PRIOR_VARIANCE + sum((x - mean) ** 2 for x in before)) / (k + 1)
            stake = min(u / math.sqrt(variance), ab_stats.BET_CAP / (1 + side * m))
            capital *= 1 + side * stake * (value - m)
        wealth += weight / total * capital
    return math.log(wealth)


@pytest.mark.parametrize(("m", "side"), [(0.0, 1), (0.0, -1), (0.2, 1), (-0.3, -1), (0.5, -1)])
def test_log_wealth_matches_a_written_out_reference(m: float, side: int) -> None:
    z = [1.0, 0.0, 1.0, -1.0, 0.5, 1.0, 1.0, 0.0]
    path = log_wealth(z, m=m, side=side)

    assert path[-1] == pytest.approx(_reference_log_wealth(z, m, side), rel=1e-12)
    assert path[2] == pytest.approx(_reference_log_wealth(z[:3], m, side), rel=1e-12)


@pytest.mark.parametrize("side", [1, -1])
def test_the_wealth_is_a_fair_game_when_the_mean_is_m(side: int) -> None:
    # Every sequence of four blocks from a distribution with mean m, weighted by its chance: the
    # expected wealth is exactly 1 (a martingale), which fails if a stake peeks at its own block.
    values, chances = [-1.0, 0.0, 1.0], [0.2, 0.5, 0.3]
    m = float(np.dot(values, chances))
    expected = 0.0
    for sequence in itertools.product(range(3), repeat=4):
        chance = math.prod(chances[i] for i in sequence)
        expected += chance * math.exp(log_wealth([values[i] for i in sequence], m=m, side=side)[-1])
    assert expected == pytest.approx(1.0, abs=1e-12)


def test_the_bounds_are_where_the_wealth_crosses_the_threshold() -> None:
    z = spread(400, 340) - spread(400, 300)  # 50/50 blocks: 0.85 vs 0.75
    interval = confidence_sequence(z, alpha=0.05)
    limit = ab_stats.threshold(0.05)
    assert interval.low is not None
    assert interval.high is not None
    assert interval.estimate == pytest.approx(0.1)
    assert interval.low < 0.1 < interval.high
    step = 2 * ab_stats.BOUND_TOLERANCE
    assert log_wealth(z, m=interval.low, side=1)[-1] < limit <= log_wealth(z, m=interval.low - step, side=1)[-1]
    assert log_wealth(z, m=interval.high, side=-1)[-1] < limit <= log_wealth(z, m=interval.high + step, side=-1)[-1]


def test_the_threshold_is_two_over_alpha() -> None:
    assert ab_stats.threshold(0.05) == pytest.approx(math.log(40))


def test_decide_table() -> None:
    limit = ab_stats.threshold(0.05)
    above, below = limit, limit - 1e-9
    cases = [
        ((above, below, True, False), Decision.SHIP_B),
        ((below, above, True, False), Decision.ROLLBACK),
        ((below, below, True, False), Decision.HOLD),
        ((above, above, True, False), Decision.HOLD),  # both bets winning: contradictory, no decision
        ((above, below, False, False), Decision.HOLD),  # not ready
        ((above, below, True, True), Decision.INVALID),
        ((below, below, False, True), Decision.INVALID),
    ]
    for (for_b, for_a, ready, srm), expected in cases:
        code = decide(for_b, for_a, alpha=0.05, ready=ready, srm_failed=srm)
        assert ab_stats.DECISIONS[int(code)] is expected


# --- evaluate -----------------------------------------------------------------------------------


def test_hold_before_the_minimum_labelled_count_even_with_a_huge_difference() -> None:
    result = run(arm(99, 20), arm(500, 495), min_labelled=100)

    assert result.decision is Decision.HOLD
    assert not result.min_labelled_reached
    assert result.difference.low is not None
    assert result.difference.low > 0  # the evidence is there; the rule still waits
    assert "at least 100" in result.reason


def test_no_feedback_yet_holds_with_empty_intervals() -> None:
    result = run(arm(0, 0, assigned=0), arm(0, 0, assigned=0))

    assert result.decision is Decision.HOLD
    assert result.accuracy_a == result.difference == Interval(None, None, None)
    assert result.srm_p_value is None
    assert not result.srm_failed


def test_ship_b_when_b_is_clearly_better() -> None:
    result = run(arm(1000, 800), arm(1000, 880))

    assert result.decision is Decision.SHIP_B
    assert result.difference.low is not None
    assert result.difference.low > 0
    assert result.evidence_for_b >= 40
    assert result.reason.startswith("The candidate (B) is more accurate")


def test_rollback_when_b_is_clearly_worse() -> None:
    result = run(arm(1000, 880), arm(1000, 800))

    assert result.decision is Decision.ROLLBACK
    assert result.difference.high is not None
    assert result.difference.high < 0
    assert result.reason.startswith("The candidate (B) is less accurate")


def test_hold_when_the_difference_is_inconclusive() -> None:
    result = run(arm(1000, 800), arm(1000, 815))

    assert result.decision is Decision.HOLD
    assert result.min_labelled_reached
    assert result.difference.low is not None
    assert result.difference.high is not None
    assert result.difference.low < 0 < result.difference.high


def test_the_confidence_sequence_is_wider_than_a_fixed_sample_interval() -> None:
    # 0.80 vs 0.84 on 1,000 each: z = 2.3, "significant" for a single look, not for a monitored test.
    result = run(arm(1000, 800), arm(1000, 840))

    assert result.decision is Decision.HOLD


def test_a_small_arm_on_a_streak_does_not_ship() -> None:
    # The case: B at 10% of traffic, 150 of 150 right, A 97% right. The old smoothed normal
    # mixture shipped here; the bounded bet cannot conclude from a streak that short.
    a, b = arm(1350, 1310, assigned=1350), arm(150, 150, assigned=150)
    observations = Observations(a=spread(1350, 1310), b=np.ones(150))
    result = evaluate(a, b, observations=observations, traffic_split=0.1)

    assert result.decision is Decision.HOLD
    assert result.blocks == 150


def test_invalid_on_sample_ratio_mismatch_whatever_the_accuracies() -> None:
    result = run(arm(1000, 800, assigned=4500), arm(1000, 900, assigned=5500))

    assert result.decision is Decision.INVALID
    assert result.srm_failed
    assert result.srm_p_value is not None
    assert result.srm_p_value < 1e-10
    assert result.observed_split == pytest.approx(0.55)
    assert "55.0%" in result.reason
    assert "50.0%" in result.reason


def test_the_ratio_check_fails_at_the_level_and_not_above() -> None:
    # 0.47 of 10,000 at a configured 0.5: caught; 0.49: not (yet).
    assert run(arm(500, 400, assigned=5300), arm(500, 400, assigned=4700)).srm_failed
    honest = run(arm(500, 400, assigned=5100), arm(500, 400, assigned=4900))
    assert not honest.srm_failed
    assert honest.srm_p_value is not None
    assert honest.srm_p_value > ab_stats.SRM_LEVEL


def test_an_honest_uneven_split_passes_the_ratio_check() -> None:
    result = run(arm(500, 400, assigned=8_020), arm(500, 400, assigned=1_980), traffic_split=0.2)

    assert not result.srm_failed
    assert result.srm_p_value == 1.0


def test_shadow_mode_skips_the_ratio_check_and_reads_the_paired_differences() -> None:
    a, b = arm(400, 320, assigned=4500), arm(400, 336, assigned=5500)  # 0.80 vs 0.84
    # The versions disagree on 20 of the 400 checked requests, 18 of them in B's favour.
    paired = np.zeros(400)
    discordant = np.arange(0, 400, 20)
    paired[discordant[:2]], paired[discordant[2:]] = -1.0, 1.0
    result = evaluate(a, b, observations=Observations(paired=paired), traffic_split=0.5, mode="shadow")

    assert result.srm_p_value is None
    assert not result.srm_failed
    assert result.decision is Decision.SHIP_B
    assert result.difference.estimate == pytest.approx(16 / 400)
    # The same accuracies unpaired (independent arms) are nowhere near a decision.
    assert run(arm(400, 320), arm(400, 336)).decision is Decision.HOLD


def test_shadow_agreement_counts_agreement_and_discordant_pairs() -> None:
    pairs = [
        ("flu", "flu", "flu"),
        ("flu", "cold", None),  # no feedback: compared, not labelled (and the counting goes on)
        ("flu", "cold", "cold"),
        ("cold", "flu", "cold"),
        ("cold", "flu", "cold"),
        ("flu", "cold", "cold"),
        ("flu", "cold", "cold"),
    ]

    agreement = shadow_agreement(pairs)

    assert agreement == Agreement(compared=7, agreed=1, labelled=6, only_a_correct=2, only_b_correct=3)
    assert agreement.rate == pytest.approx(1 / 7)


def test_an_empty_agreement_is_valid_and_has_no_rate() -> None:
    assert Agreement(0, 0, 0, 0, 0).rate is None
    assert shadow_agreement([]) == Agreement(0, 0, 0, 0, 0)


def test_observations_of_predictions_are_one_unit_per_answer() -> None:
    observations = Observations.of_predictions([True, False, True], [False, True])
    assert observations.a.tolist() == [1.0, 0.0, 1.0]
    assert observations.b.tolist() == [0.0, 1.0]
    assert observations.paired.tolist() == []


@pytest.mark.parametrize(
    ("low", "high", "excludes"),
    [(0.01, 0.2, True), (-0.2, -0.01, True), (-0.1, 0.1, False), (0.0, 0.1, False), (-0.1, 0.0, False)],
)
def test_an_interval_excludes_zero_only_strictly(low: float, high: float, excludes: bool) -> None:
    assert Interval(0.05, low, high).excludes_zero() is excludes
    assert Interval(None, None, None).excludes_zero() is False
    assert Interval(0.1, 0.05, None).excludes_zero() is False


@pytest.mark.parametrize(
    "counts",
    [(-1, 0, 0, 0, 0), (0, -1, 0, 0, 0), (0, 0, -1, 0, 0), (0, 0, 0, -1, 0), (0, 0, 0, 0, -1), (1, 2, 0, 0, 0)],
)
def test_impossible_agreement_counts_are_rejected(counts: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        Agreement(*counts)


def test_agreement_rejects_more_discordant_pairs_than_labelled() -> None:
    with pytest.raises(ValueError):
        Agreement(compared=5, agreed=2, labelled=2, only_a_correct=2, only_b_correct=1)
    assert Agreement(compared=5, agreed=2, labelled=3, only_a_correct=2, only_b_correct=1).rate == 0.4


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(key) is str and _plain(item) for key, item in value.items())
    return value is None or type(value) in (str, int, float, bool)


@pytest.mark.parametrize(
    ("a", "b", "mode"),
    [
        (arm(1000, 800), arm(1000, 880), "split"),
        (arm(1000, 800, assigned=4500), arm(1000, 880, assigned=5500), "split"),
        (arm(1000, 800, assigned=0), arm(1000, 880, assigned=9000), "split"),  # an infinite e-value
        (arm(0, 0, assigned=0), arm(0, 0, assigned=0), "split"),
        (arm(300, 240), arm(300, 250), "shadow"),
    ],
)
def test_as_dict_is_plain_json(a: ArmFigures, b: ArmFigures, mode: str) -> None:
    data = run(a, b, mode=mode).as_dict()

    assert _plain(data)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["decision"] in {d.value for d in Decision}
    assert set(data["difference"]) == {"estimate", "low", "high"}


@pytest.mark.parametrize(("correct", "labelled"), [(0, 5), (5, 5), (1, 1), (37, 120), (999, 1000)])
def test_intervals_stay_in_range_and_are_never_a_point(correct: int, labelled: int) -> None:
    result = run(arm(labelled, correct), arm(labelled, labelled - correct), min_labelled=1)

    for interval, lowest in ((result.accuracy_a, 0.0), (result.accuracy_b, 0.0), (result.difference, -1.0)):
        assert interval.estimate is not None
        assert interval.low is not None
        assert interval.high is not None
        assert lowest <= interval.low <= interval.high <= 1.0
        assert interval.low < interval.high  # never a zero-width claim, even at 0% or 100%


def test_the_difference_interval_narrows_with_more_feedback() -> None:
    widths = []
    for n in (100, 1000, 10_000):
        difference = run(arm(n, n * 8 // 10), arm(n, n * 8 // 10)).difference
        assert difference.low is not None
        assert difference.high is not None
        widths.append(difference.high - difference.low)

    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize(
    "options",
    [
        {"traffic_split": 1.5},
        {"traffic_split": -0.1},
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"mode": "canary"},
        {"min_labelled": 0},
        {"scale": 0.0},
    ],
)
def test_bad_parameters_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        run(arm(10, 5), arm(10, 5), **options)


def test_impossible_counts_and_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        ArmFigures(assigned=10, labelled=5, correct=6)
    for counts in ((-1, 0, 0), (0, -1, 0), (0, 0, -1)):
        with pytest.raises(ValueError):
            ArmFigures(*counts)
    for values in ({"a": [0.5, 1.2]}, {"b": [-0.1]}, {"paired": [float("nan")]}, {"paired": [1.5]}):
        with pytest.raises(ValueError):
            Observations(**{key: np.asarray(value) for key, value in values.items()})
    with pytest.raises(ValueError):
        spread(3, 4)
    with pytest.raises(ValueError):
        log_wealth([0.0], side=0)


# --- Reduced simulations (the benchmark's full grids are the figures to report) ---------------------


@pytest.mark.simulation
def test_a_small_arm_with_an_accurate_model_keeps_the_a_a_rate_below_alpha() -> None:
    # The worst cell: B at 10%, both 97% accurate, read after every feedback.
    null = simulate_split(0.97, 0.97, split=0.1, tests=150, seed=11, small_arm=1000)

    assert np.mean(null.ship_b) <= 0.025
    assert np.mean(null.rollback) <= 0.025 + 0.01


@pytest.mark.simulation
def test_a_five_point_improvement_is_found_by_two_thousand_per_arm() -> None:
    alternative = simulate_split(0.80, 0.85, split=0.5, tests=150, seed=12, small_arm=2000, until_both=2000)

    assert np.mean(alternative.ship_b) >= 0.8
    assert not alternative.rollback.any()


@pytest.mark.simulation
def test_the_ratio_check_catches_047_and_rarely_flags_an_honest_split() -> None:
    assert srm_flagged(tests=100, seed=13, configured=0.5, true=0.47, units=10_000) >= 0.85
    assert srm_flagged(tests=200, seed=14, configured=0.3, true=0.3, units=5_000) <= 0.01 + 0.01


@pytest.mark.simulation
def test_repeat_subjects_analysed_per_subject_hold_the_rate_and_per_prediction_would_not() -> None:
    per_subject = simulate_clusters(0.8, 0.8, split=0.5, tests=30, seed=15)
    per_prediction = simulate_clusters(0.8, 0.8, split=0.5, tests=30, seed=15, per_prediction=True)

    assert np.mean(per_subject.either) <= 0.05
    assert np.mean(per_prediction.either) > 0.1  # what the clustering does to a per-prediction count


# --- Mutation-testing pins (README "Mutation testing"): messages, edge cases, reference values ---


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ArmFigures(-1, 0, 0), "Counts cannot be negative"),
        (lambda: ArmFigures(1, 2, 3), "More correct than labelled"),
        (lambda: Agreement(1, 0, 0, -1, 0), "Counts cannot be negative"),
        (lambda: Agreement(1, 2, 0, 0, 0), "Agreed and labelled are parts"),
        (lambda: Agreement(3, 0, 2, 2, 1), "More discordant pairs"),
        (lambda: Observations(paired=[-1.5]), "paired: every unit's value must be a number"),  # type: ignore[arg-type]
        (lambda: Observations(a=[-0.5]), "a: a share of correct predictions"),  # type: ignore[arg-type]
        (lambda: ab_stats.spread(2, 3), "3 correct of 2 labelled"),
        (lambda: log_wealth([0.1], side=0), "side is 1"),
    ],
)
def test_bad_input_is_refused_with_its_message(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "both"}, "mode must be one of split, shadow"),
        ({"traffic_split": 1.5}, "traffic_split is the share"),
        ({"alpha": 1.0}, "alpha must be in"),
        ({"min_labelled": 0}, "min_labelled must be at least 1"),
        ({"scale": 0.0}, "scale must be positive"),
    ],
)
def test_evaluate_refuses_parameters_out_of_range_with_their_message(kwargs, message):
    arm = ArmFigures(1, 1, 1)
    with pytest.raises(ValueError, match=message):
        evaluate(arm, arm, observations=Observations(), **{"traffic_split": 0.5, **kwargs})


@pytest.mark.parametrize("split", [0.0, 1.0])
def test_a_split_of_zero_or_one_is_accepted_and_gives_no_blocks(split):
    figures = evaluate(
        ArmFigures(3, 3, 2),
        ArmFigures(0, 0, 0),
        observations=Observations(a=np.array([1.0, 0.0, 1.0])),
        traffic_split=split,
    )
    assert figures.blocks == 0
    assert blocks(np.zeros((4, 5)), np.zeros((4, 3)), split).shape == (4, 0)
    assert complete_blocks([3, 4], [5, 6], split).tolist() == [0, 0]


def test_of_predictions_gives_float_units():
    observations = Observations.of_predictions([True, False, 1], [0, 1])  # type: ignore[list-item]
    assert observations.a.dtype == np.float64
    assert observations.a.tolist() == [1.0, 0.0, 1.0]
    assert observations.b.tolist() == [0.0, 1.0]


def test_complete_blocks_of_empty_arms_and_blocks_when_a_is_the_smaller_arm():
    assert complete_blocks(np.zeros(0, dtype=int), np.zeros(0, dtype=int), 0.3).tolist() == []
    assert complete_blocks([0, 1], [0, 2], 0.7).tolist() == [0, 1]
    # Split 0.75: A is the smaller arm, each block one A unit and three B units; Z is B's mean minus A.
    z = blocks([1.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0, 1.0], 0.75)
    assert z.tolist() == pytest.approx([2 / 3 - 1.0, 1 / 3 - 0.0])


def test_predictable_sd_of_a_stack_is_the_sd_of_each_row():
    rng = np.random.default_rng(1)
    stack = rng.uniform(-1, 1, size=(3, 6))
    sd = predictable_sd(stack)
    assert sd.shape == (3, 6)
    for row in range(3):
        assert sd[row] == pytest.approx(predictable_sd(stack[row]))
        # By hand: before block k, sqrt((0.25 + sum of squared deviations of blocks 1..k-1) / k).
        for k in range(6):
            earlier = stack[row, :k]
            deviations = float(np.sum((earlier - earlier.mean()) ** 2)) if k else 0.0
            assert sd[row, k] == pytest.approx(math.sqrt((0.25 + deviations) / (k + 1)))


def test_log_wealth_of_a_stack_is_each_rows_and_side_one_is_the_default():
    rng = np.random.default_rng(2)
    stack = rng.uniform(-1, 1, size=(2, 7))
    wealth = log_wealth(stack)
    assert wealth.shape == (2, 7)
    for row in range(2):
        assert wealth[row] == pytest.approx(log_wealth(stack[row], side=1))


def test_the_bounds_are_the_roots_of_the_wealth_found_by_brentq():
    from scipy.optimize import brentq

    z = np.concatenate([np.ones(60), np.zeros(40), -np.ones(10)]) * 0.5
    wealth = ab_stats._Wealth(z, ab_stats.EFFECT_SCALE)
    limit = ab_stats.threshold(0.05)
    interval = confidence_sequence(z, alpha=0.05)
    low_root = brentq(lambda m: wealth(m, 1) - limit, 0.0, 1.0, xtol=1e-12)
    high_root = brentq(lambda m: wealth(m, -1) - limit, -1.0, 1.0, xtol=1e-12)
    assert interval.low is not None
    assert interval.high is not None
    assert 0 < low_root <= interval.low <= low_root + ab_stats.BOUND_TOLERANCE
    assert high_root - ab_stats.BOUND_TOLERANCE <= interval.high <= high_root
    assert wealth(interval.low, 1) < limit
    assert wealth(interval.high, -1) < limit
    # Flat data: nothing rejected on either side, the bounds are the ends of [-1, 1].
    flat = confidence_sequence(np.zeros(5), alpha=0.05)
    assert (flat.low, flat.high) == (-1.0, 1.0)
    # A two-dimensional input is read as one sequence.
    assert confidence_sequence(z.reshape(2, -1), alpha=0.05) == interval


def test_decide_without_a_ratio_check_is_not_invalid():
    assert decide(10.0, 0.0, alpha=0.05, ready=True).tolist() == ab_stats.SHIP_B
    assert decide([10.0, 0.0], [0.0, 10.0], alpha=0.05, ready=[1, 1], srm_failed=[0, 1]).tolist() == [
        ab_stats.SHIP_B,
        ab_stats.INVALID,
    ]


def test_srm_p_value_of_a_single_assignment_is_a_number():
    assert not np.isnan(srm_p_values(1, 0, 0.5))
    assert float(srm_p_values(1, 0, 0.5)) == pytest.approx(1.0)


def _z_reference(a: list[float], b: list[float]) -> np.ndarray:
    return blocks(np.asarray(a, dtype=float), np.asarray(b, dtype=float), 0.5)


def test_evaluate_reports_every_field_against_its_reference():
    a, b = ArmFigures(60, 100, 50), ArmFigures(40, 100, 80)
    units_a, units_b = ab_stats.spread(100, 50), ab_stats.spread(100, 80)
    figures = evaluate(a, b, observations=Observations(a=units_a, b=units_b), traffic_split=0.5, alpha=0.1, scale=0.2)
    z = blocks(units_a, units_b, 0.5)
    log_e = float(srm_log_e_values(60, 40, 0.5))
    assert figures.srm_e_value == pytest.approx(math.exp(log_e))
    assert figures.srm_p_value == pytest.approx(min(1.0, math.exp(-log_e)))
    assert figures.observed_split == pytest.approx(0.4)
    assert figures.difference == confidence_sequence(z, alpha=0.1, scale=0.2)
    wealth = ab_stats._Wealth(z, 0.2)
    assert figures.evidence_for_b == pytest.approx(math.exp(wealth(0.0, 1)))
    assert figures.evidence_for_a == pytest.approx(math.exp(wealth(0.0, -1)))
    assert (figures.alpha, figures.mode, figures.units_a, figures.units_b, figures.blocks) == (
        0.1,
        "split",
        100,
        100,
        100,
    )
    assert figures.min_labelled_reached  # exactly the default minimum of 100
    assert figures.decision is Decision.SHIP_B
    assert figures.difference.low is not None
    assert figures.difference.high is not None
    assert figures.reason == (
        "The candidate (B) is more accurate: 80.0% of its checked predictions were correct against 50.0% for the "
        f"current version (A); the true difference lies between {figures.difference.low * 100:+.1f} and "
        f"{figures.difference.high * 100:+.1f} percentage points (90% confidence that holds however often the "
        "results are checked)."
    )
    data = figures.as_dict()
    assert data["evidence_for_b"] == pytest.approx(figures.evidence_for_b)
    assert data["srm_e_value"] == pytest.approx(figures.srm_e_value)
    json.dumps(data)


def test_evaluate_in_shadow_mode_and_without_blocks():
    arm = ArmFigures(5, 5, 3)
    shadow = evaluate(arm, arm, observations=Observations(paired=[0.5, -0.5, 1.0]), traffic_split=0.5, mode="shadow")  # type: ignore[arg-type]
    assert (shadow.units_a, shadow.units_b, shadow.observed_split, shadow.srm_p_value) == (3, 3, None, None)
    assert shadow.mode == "shadow"
    empty = evaluate(ArmFigures(1, 0, 0), ArmFigures(0, 0, 0), observations=Observations(), traffic_split=0.5)
    assert (empty.evidence_for_b, empty.evidence_for_a, empty.blocks) == (1.0, 1.0, 0)
    assert empty.srm_p_value is not None
    assert empty.observed_split == 0.0
    assert empty.reason.startswith("Not enough feedback yet: each version needs at least 100")


def test_a_huge_mismatch_has_an_infinite_e_value_and_the_invalid_reason():
    figures = evaluate(ArmFigures(5000, 0, 0), ArmFigures(0, 0, 0), observations=Observations(), traffic_split=0.5)
    assert figures.srm_e_value == math.inf
    assert figures.as_dict()["srm_e_value"] is None
    assert figures.decision is Decision.INVALID
    assert figures.reason == (
        "The test is invalid: the candidate (B) received 0.0% of subjects where 50.0% were configured, more than "
        f"chance explains however often the split is checked (p = {figures.srm_p_value:.2g}, at most 0.01), so the "
        "arms may not see comparable patients; fix the assignment before trusting any result."
    )


def test_the_reasons_of_hold_rollback_and_missing_units():
    a, b = ArmFigures(100, 100, 80), ArmFigures(100, 100, 50)
    rollback = evaluate(
        a, b, observations=Observations(a=ab_stats.spread(100, 80), b=ab_stats.spread(100, 50)), traffic_split=0.5
    )
    assert rollback.decision is Decision.ROLLBACK
    assert rollback.reason.startswith("The candidate (B) is less accurate: 50.0% of its checked")
    assert "(95% confidence that holds" in rollback.reason
    hold = evaluate(
        a, a, observations=Observations(a=ab_stats.spread(100, 80), b=ab_stats.spread(100, 80)), traffic_split=0.5
    )
    assert hold.difference.low is not None
    assert hold.difference.high is not None
    assert hold.reason == (
        "No clear difference yet: for the candidate (B) 80.0% of its checked predictions were correct against 80.0% "
        f"for the current version (A), and the true difference could lie anywhere between "
        f"{hold.difference.low * 100:+.1f} and {hold.difference.high * 100:+.1f} percentage points, which includes "
        "no difference at all."
    )
    no_units = evaluate(a, b, observations=Observations(), traffic_split=0.5, min_labelled=100)
    assert no_units.reason == "Not enough feedback yet to compare the versions on the same kind of patients."
    assert no_units.min_labelled_reached
    one_short = evaluate(a, b, observations=Observations(), traffic_split=0.5, min_labelled=101)
    assert one_short.reason.startswith("Not enough feedback yet: each version needs at least 101")


def test_a_bound_just_past_the_threshold_at_zero_is_found_not_returned_as_zero():
    # Forty blocks of 0.195: the log wealth at 0 exceeds log(2 / alpha) by only about 0.29.
    z = np.full(40, 0.195)
    wealth = ab_stats._Wealth(z, ab_stats.EFFECT_SCALE)
    assert 0 < wealth(0.0, 1) - ab_stats.threshold(0.05) < 1
    interval = confidence_sequence(z, alpha=0.05)
    assert interval.low is not None
    assert interval.low > 0.005
    assert wealth(interval.low, 1) < ab_stats.threshold(0.05) <= wealth(interval.low - 2e-4, 1)


def test_log_wealth_defaults_to_betting_against_zero():
    z = np.array([0.3, -0.1, 0.5, 0.2])
    assert log_wealth(z) == pytest.approx(log_wealth(z, m=0.0, side=1))


def test_observations_flatten_scalars_and_hold_floats():
    assert Observations(paired=0.5).paired.shape == (1,)  # type: ignore[arg-type]
    assert Observations(a=[1, 0]).a.dtype == np.float64  # type: ignore[arg-type]


def test_complete_blocks_keep_the_broadcast_shape_and_integers_at_the_ends_of_the_split():
    assert complete_blocks([3, 4], 5, 0.0).shape == (2,)
    assert complete_blocks(3, [4, 5], 1.0).shape == (2,)
    assert complete_blocks([3, 4], 5, 0.0).dtype == np.int64
    counted = complete_blocks(np.array([2.0, 5.0]), np.array([3.0, 1.0]), 0.5)
    assert counted.dtype == np.int64
    assert counted.tolist() == [2, 1]


def test_blocks_of_a_stack_of_tests_are_each_rows_blocks():
    rng = np.random.default_rng(4)
    a, b = rng.random((3, 9)), rng.random((3, 5))
    stacked = blocks(a, b, 0.3)
    assert stacked.shape[0] == 3
    for row in range(3):
        assert stacked[row] == pytest.approx(blocks(a[row], b[row], 0.3))


def test_a_bound_just_inside_the_far_end_is_found_not_returned_as_the_end():
    # Eleven blocks of 0: betting "mean above -1" is rejected at m = -1, but by only about 0.3 nats.
    z = np.zeros(11)
    wealth = ab_stats._Wealth(z, ab_stats.EFFECT_SCALE)
    assert 0 <= wealth(-1.0, 1) - ab_stats.threshold(0.05) < 1
    interval = confidence_sequence(z, alpha=0.05)
    assert interval.low is not None
    assert -1.0 < interval.low < -0.9
    assert interval.high == pytest.approx(-interval.low)
