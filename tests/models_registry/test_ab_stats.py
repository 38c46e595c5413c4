"""The A/B test statistics: the decision rule, the intervals, and a reduced monitoring simulation."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from benchmarks.bench_ab import simulate
from models_registry.ab_stats import (
    Agreement,
    ArmFigures,
    Decision,
    Interval,
    evaluate,
    shadow_agreement,
    srm_p_values,
    wilson_interval,
)


def arm(labelled: int, correct: int, *, assigned: int = 1000) -> ArmFigures:
    return ArmFigures(assigned=assigned, labelled=labelled, correct=correct)


def test_hold_before_the_minimum_labelled_count_even_with_a_huge_difference() -> None:
    result = evaluate(arm(99, 20), arm(500, 495), traffic_split=0.5, min_labelled=100)

    assert result.decision is Decision.HOLD
    assert not result.min_labelled_reached
    assert result.difference.low is not None
    assert result.difference.low > 0  # the evidence is there; the rule still waits
    assert "at least 100" in result.reason


def test_no_feedback_yet_holds_with_empty_intervals() -> None:
    result = evaluate(arm(0, 0, assigned=0), arm(0, 0, assigned=0), traffic_split=0.5)

    assert result.decision is Decision.HOLD
    assert result.accuracy_a == result.difference == Interval(None, None, None)
    assert result.srm_p_value is None
    assert not result.srm_failed


def test_ship_b_when_b_is_clearly_better() -> None:
    result = evaluate(arm(1000, 800), arm(1000, 880), traffic_split=0.5)

    assert result.decision is Decision.SHIP_B
    assert result.difference.low is not None
    assert result.difference.low > 0
    assert result.reason.startswith("The candidate (B) is more accurate")


def test_rollback_when_b_is_clearly_worse() -> None:
    result = evaluate(arm(1000, 880), arm(1000, 800), traffic_split=0.5)

    assert result.decision is Decision.ROLLBACK
    assert result.difference.high is not None
    assert result.difference.high < 0
    assert result.reason.startswith("The candidate (B) is less accurate")


def test_hold_when_the_difference_is_inconclusive() -> None:
    result = evaluate(arm(1000, 800), arm(1000, 815), traffic_split=0.5)

    assert result.decision is Decision.HOLD
    assert result.min_labelled_reached
    assert result.difference.low is not None
    assert result.difference.high is not None
    assert result.difference.low < 0 < result.difference.high


def test_the_confidence_sequence_is_wider_than_a_fixed_sample_interval() -> None:
    # 0.80 vs 0.84 on 1,000 each: z = 2.3, "significant" for a single look, not for a monitored test.
    result = evaluate(arm(1000, 800), arm(1000, 840), traffic_split=0.5)

    assert result.decision is Decision.HOLD


def test_invalid_on_sample_ratio_mismatch_whatever_the_accuracies() -> None:
    result = evaluate(arm(1000, 800, assigned=4500), arm(1000, 900, assigned=5500), traffic_split=0.5)

    assert result.decision is Decision.INVALID
    assert result.srm_failed
    assert result.srm_p_value is not None
    assert result.srm_p_value < 1e-20
    assert result.observed_split == pytest.approx(0.55)
    assert "55.0%" in result.reason
    assert "50.0%" in result.reason


def test_an_honest_uneven_split_passes_the_ratio_check() -> None:
    result = evaluate(arm(500, 400, assigned=8_020), arm(500, 400, assigned=1_980), traffic_split=0.2)

    assert not result.srm_failed
    assert result.srm_p_value is not None
    assert result.srm_p_value > 0.1


def test_a_split_of_zero_flags_any_request_sent_to_b() -> None:
    assert srm_p_values(100, 0, 0.0) == 1.0
    assert srm_p_values(100, 1, 0.0) == 0.0
    assert math.isnan(float(srm_p_values(0, 0, 0.3)))


def test_shadow_mode_skips_the_ratio_check() -> None:
    result = evaluate(arm(1000, 800, assigned=4500), arm(1000, 880, assigned=5500), traffic_split=0.5, mode="shadow")

    assert result.srm_p_value is None
    assert not result.srm_failed
    assert result.decision is Decision.SHIP_B


def test_paired_figures_narrow_the_difference_in_shadow_mode() -> None:
    a, b = arm(400, 320), arm(400, 336)  # 0.80 vs 0.84
    # The versions disagree on 20 of the 400 checked requests, 18 of them in B's favour.
    agreement = Agreement(compared=900, agreed=870, labelled=400, only_a_correct=2, only_b_correct=18)

    unpaired = evaluate(a, b, traffic_split=0.5, mode="shadow")
    paired = evaluate(a, b, traffic_split=0.5, mode="shadow", agreement=agreement)

    assert unpaired.decision is Decision.HOLD
    assert paired.decision is Decision.SHIP_B
    assert paired.difference.estimate == unpaired.difference.estimate


def test_shadow_agreement_counts_agreement_and_discordant_pairs() -> None:
    pairs = [("flu", "flu", "flu"), ("flu", "cold", "cold"), ("cold", "flu", "cold"), ("flu", "cold", None)]

    agreement = shadow_agreement(pairs)

    assert agreement == Agreement(compared=4, agreed=1, labelled=3, only_a_correct=1, only_b_correct=1)
    assert agreement.rate == 0.25


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(key) is str and _plain(item) for key, item in value.items())
    return value is None or type(value) in (str, int, float, bool)


@pytest.mark.parametrize(
    ("a", "b", "mode"),
    [
        (arm(1000, 800), arm(1000, 880), "split"),
        (arm(1000, 800, assigned=4500), arm(1000, 880, assigned=5500), "split"),
        (arm(0, 0, assigned=0), arm(0, 0, assigned=0), "split"),
        (arm(300, 240), arm(300, 250), "shadow"),
    ],
)
def test_as_dict_is_plain_json(a: ArmFigures, b: ArmFigures, mode: str) -> None:
    data = evaluate(a, b, traffic_split=0.5, mode=mode).as_dict()

    assert _plain(data)
    assert json.loads(json.dumps(data)) == data
    assert data["decision"] in {d.value for d in Decision}
    assert set(data["difference"]) == {"estimate", "low", "high"}


def test_wilson_interval_matches_the_textbook_value() -> None:
    interval = wilson_interval(8, 10)

    assert interval.estimate == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)


@pytest.mark.parametrize(("correct", "labelled"), [(0, 5), (5, 5), (1, 1), (37, 120), (999, 1000)])
def test_intervals_contain_their_estimate_and_stay_in_range(correct: int, labelled: int) -> None:
    result = evaluate(arm(labelled, correct), arm(labelled, labelled - correct), traffic_split=0.5, min_labelled=1)

    for interval, lowest in ((result.accuracy_a, 0.0), (result.accuracy_b, 0.0), (result.difference, -1.0)):
        assert interval.estimate is not None
        assert interval.low is not None
        assert interval.high is not None
        assert lowest <= interval.low <= interval.estimate <= interval.high <= 1.0
        assert interval.low < interval.high  # never a zero-width claim, even at 0% or 100%


def test_the_difference_interval_narrows_with_more_feedback() -> None:
    widths = []
    for n in (100, 1000, 10_000):
        difference = evaluate(arm(n, n * 8 // 10), arm(n, n * 8 // 10), traffic_split=0.5).difference
        assert difference.low is not None
        assert difference.high is not None
        widths.append(difference.high - difference.low)

    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize(
    "options",
    [{"traffic_split": 1.5}, {"traffic_split": -0.1}, {"alpha": 0.0}, {"mode": "canary"}, {"min_labelled": 0}],
)
def test_bad_parameters_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        evaluate(arm(10, 5), arm(10, 5), **{"traffic_split": 0.5, **options})


def test_impossible_counts_are_rejected() -> None:
    with pytest.raises(ValueError):
        ArmFigures(assigned=10, labelled=5, correct=6)
    with pytest.raises(ValueError):
        ArmFigures(assigned=-1, labelled=0, correct=0)


# Reduced versions of benchmarks/bench_ab.py: 200 tests each, read after every 20 feedbacks up to
# about 2,000 per arm. The full 1,000-test figures are the benchmark's to report.


def test_monitoring_an_a_a_test_rarely_reaches_a_decision() -> None:
    null = simulate(0.8, 0.8, tests=200, seed=11)

    assert np.mean(null.ship_b | null.rollback) <= 0.05 + 0.01


def test_the_same_monitoring_with_a_fixed_sample_interval_would_fail() -> None:
    # What the simulation is there to catch: a 95% z-interval read 200 times.
    null = simulate(0.8, 0.8, tests=200, seed=11, radius=lambda variance: 1.96 * np.sqrt(variance))

    assert np.mean(null.ship_b | null.rollback) > 0.1


def test_a_five_point_improvement_is_found_by_about_two_thousand_per_arm() -> None:
    alternative = simulate(0.8, 0.85, tests=200, seed=12)

    assert np.mean(alternative.ship_b) >= 0.8
    assert not alternative.rollback.any()
