"""The statistics of monitoring pinned against hand-computed and library references, and the
degradation rule's error rates shown by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy

from monitoring import stats


def test_psi_matches_the_hand_computed_value():
    # shares 0.5/0.3/0.2 against 0.3/0.3/0.4:
    # (0.3 - 0.5) ln(0.3/0.5) + 0 + (0.4 - 0.2) ln(0.4/0.2) = 0.1021651 + 0.1386294
    assert stats.psi([50, 30, 20], [30, 30, 40]) == pytest.approx(0.2407946, abs=1e-7)


def test_psi_is_the_symmetrised_kullback_leibler_divergence_of_scipy():
    rng = np.random.default_rng(5)
    for _ in range(20):
        reference, live = rng.integers(1, 500, size=8), rng.integers(1, 500, size=8)
        e, a = reference / reference.sum(), live / live.sum()
        assert stats.psi(reference, live) == pytest.approx(entropy(a, e) + entropy(e, a), rel=1e-12)


def test_psi_floors_an_empty_bin_at_epsilon():
    # the reference never saw bin 2: its share counts as 1e-4
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert stats.psi([100, 0], [50, 50]) == pytest.approx(expected, rel=1e-12)
    assert stats.psi([40, 60], [40, 60]) == 0.0


def test_psi_refuses_bins_that_do_not_match_and_has_nothing_to_say_about_no_data():
    with pytest.raises(ValueError, match="same bins"):
        stats.psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="not negative"):
        stats.psi([1, -2], [1, 2])
    assert stats.psi([0, 0], [1, 2]) is None
    assert stats.psi([1, 2], [0, 0]) is None


def test_ece_matches_the_hand_computed_value():
    # bin 9: 0.95, 0.91 both right |2 - 1.86|; bin 8: 0.82 wrong |0 - 0.82|; bin 7: 0.78 right
    # |1 - 0.78|; bin 5: 0.55 right, 0.52 wrong |1 - 1.07|. (0.14 + 0.82 + 0.22 + 0.07) / 6
    found = stats.calibration([0.95, 0.91, 0.82, 0.78, 0.55, 0.52], [1, 1, 0, 1, 1, 0])
    assert found.ece == pytest.approx(1.25 / 6, abs=1e-12)
    assert found.count == 6
    assert [row["count"] for row in found.bins] == [0, 0, 0, 0, 0, 2, 0, 1, 1, 2]
    assert found.bins[9]["confidence"] == pytest.approx(0.93)


def test_ece_is_the_offline_evaluations_definition():
    from training.evaluation import calibration as offline_calibration

    rng = np.random.default_rng(11)
    confidence = rng.uniform(0.5, 1.0, size=400)
    correct = rng.random(400) < confidence
    scores = np.column_stack([confidence, 1 - confidence])  # label 0 predicted; the truth is 0 when right
    truth = np.where(correct, 0, 1)
    offline = offline_calibration(truth, scores, resamples=10)
    assert stats.calibration(confidence, correct).ece == pytest.approx(offline["ece"], rel=1e-12)


def test_ece_of_nothing_is_none_and_bad_confidences_are_refused():
    assert stats.calibration([], []).ece is None
    with pytest.raises(ValueError, match="probability"):
        stats.calibration([1.2], [1])


def _paths(rng, accuracy, runs, units):
    return (rng.random((runs, units)) < accuracy).astype(np.float64)


def _ever_flagged(accuracy, *, bar, runs, units, seed, alpha=0.05):
    rng = np.random.default_rng(seed)
    flagged = 0
    for start in range(0, runs, 100):
        count = min(100, runs - start)
        flagged += int(
            stats.degraded_paths(_paths(rng, accuracy, count, units), bar=bar, alpha=alpha).any(axis=1).sum()
        )
    return flagged / runs


def test_an_undegraded_model_read_after_every_feedback_rarely_flags():
    # Offline accuracy 0.80, tolerance 0.05: the bar is 0.75. Read after each of 1,500 units (every
    # possible read), 1,000 runs. A model as good as offline is essentially never flagged; even one
    # exactly at the bar (the worst case the rule allows) is flagged at most alpha / 2 = 2.5% of
    # runs over its whole life (plus three Monte-Carlo standard errors).
    at_offline = _ever_flagged(0.80, bar=0.75, runs=1000, units=1500, seed=1)
    at_bar = _ever_flagged(0.75, bar=0.75, runs=1000, units=1500, seed=2)
    assert at_offline <= 0.002
    assert at_bar <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / 1000)


def test_a_degraded_model_is_flagged():
    # Live accuracy 0.65 against a bar of 0.75: flagged within 1,000 units in nearly every run.
    assert _ever_flagged(0.65, bar=0.75, runs=300, units=1000, seed=3) >= 0.95


def test_live_accuracy_agrees_with_the_rule_and_shows_the_interval():
    rng = np.random.default_rng(4)
    good = (rng.random(800) < 0.8).astype(float)
    bad = (rng.random(800) < 0.6).astype(float)
    healthy = stats.live_accuracy(good, offline=0.8, tolerance=0.05, alpha=0.05)
    assert not healthy.degraded
    assert healthy.low is not None
    assert healthy.high is not None
    assert healthy.estimate is not None
    assert healthy.low < healthy.estimate < healthy.high
    assert healthy.high >= 0.75
    sick = stats.live_accuracy(bad, offline=0.8, tolerance=0.05, alpha=0.05)
    assert sick.degraded
    assert sick.high is not None
    assert sick.high < 0.75
    assert sick.evidence is not None
    assert sick.evidence >= 2 / 0.05


def test_live_accuracy_without_feedback_or_offline_figure_is_never_degraded():
    assert not stats.live_accuracy([], offline=0.9, tolerance=0.05, alpha=0.05).degraded
    nothing = stats.live_accuracy([0.0] * 50, offline=None, tolerance=0.05, alpha=0.05)
    assert not nothing.degraded
    assert nothing.bar is None
    with pytest.raises(ValueError, match="share"):
        stats.live_accuracy([1.5], offline=0.9, tolerance=0.05, alpha=0.05)


# --- The recent window: a late drop -------------------------------------------------------------------

WINDOW = 200


def _late_drop(rng, runs, *, before=2000, after=1500, good=0.9, bad=0.6):
    return np.concatenate([_paths(rng, good, runs, before), _paths(rng, bad, runs, after)], axis=1)


def _delays(flagged, *, before=2000):
    """Labels after the drop until the first flag, per run (a huge number where never flagged)."""
    after = flagged[:, before:]
    return np.where(after.any(axis=1), after.argmax(axis=1) + 1, 10**9)


def test_the_vectorised_recent_rule_is_recent_accuracy_at_every_read():
    rng = np.random.default_rng(20)
    units = _late_drop(rng, 1, before=500, after=300)[0]
    flagged = stats.recent_degraded_paths(units, bar=0.85, alpha=0.05, window=100)[0]
    for count in range(1, len(units) + 1, 7):
        found = stats.recent_accuracy(units[:count], offline=0.9, tolerance=0.05, alpha=0.05, window=100)
        assert found.degraded == flagged[count - 1], count
    assert flagged[499:].any()
    assert not flagged[:500].any()


def test_a_late_drop_is_flagged_within_a_bounded_number_of_labels_where_the_cumulative_reading_lags():
    # Offline accuracy 0.90, tolerance 0.05 (bar 0.85). 200 runs: 2,000 labelled units at 0.90, then
    # live accuracy falls to 0.60. Read after every unit. With a fresh sequence every 200 units, every
    # run is flagged within 300 labels of the drop (median about 145 over 300 runs; at most
    # window + a fresh epoch's own delay); reading everything since activation, no run is flagged
    # that soon (median about 720).
    rng = np.random.default_rng(21)
    units = _late_drop(rng, 200)
    recent = _delays(stats.recent_degraded_paths(units, bar=0.85, alpha=0.05, window=WINDOW))
    whole = _delays(stats.recent_degraded_paths(units, bar=0.85, alpha=0.05, window=0))
    assert not stats.recent_degraded_paths(units[:, :2000], bar=0.85, alpha=0.05, window=WINDOW).any()
    assert recent.max() <= 300
    assert np.median(recent) <= 200
    assert whole.min() > 300
    assert np.median(whole) >= 3 * np.median(recent)


def test_the_recent_rule_keeps_the_lifetime_error_at_alpha_over_two():
    # A model exactly at the bar for 3,000 units, read after each, 600 runs: the restarts spend
    # alpha across epochs (alpha / ((j + 1)(j + 2))), so it is ever flagged in at most 2.5% of runs
    # (plus three Monte-Carlo standard errors), as the since-activation rule is.
    rng = np.random.default_rng(22)
    flagged = 0
    for _ in range(6):
        paths = _paths(rng, 0.75, 100, 3000)
        flagged += int(stats.recent_degraded_paths(paths, bar=0.75, alpha=0.05, window=WINDOW).any(axis=1).sum())
    assert flagged / 600 <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / 600)


def test_epoch_alphas_sum_to_alpha_and_window_zero_is_the_since_activation_rule():
    assert sum(stats.epoch_alpha(0.05, j) for j in range(100_000)) == pytest.approx(0.05, rel=1e-4)
    rng = np.random.default_rng(23)
    units = _paths(rng, 0.6, 1, 400)[0]
    whole = stats.live_accuracy(units, offline=0.8, tolerance=0.05, alpha=0.05)
    found = stats.recent_accuracy(units, offline=0.8, tolerance=0.05, alpha=0.05, window=0)
    assert (found.degraded, found.units, found.low, found.high, found.alpha) == (
        whole.degraded,
        400,
        whole.low,
        whole.high,
        0.05,
    )


def test_the_recent_reading_reports_the_epoch_it_reads_and_its_alpha():
    units = [1.0] * 300 + [0.0] * 40
    found = stats.recent_accuracy(units, offline=1.0, tolerance=0.2, alpha=0.05, window=30)
    assert found.degraded
    assert (found.start, found.units, found.alpha) == (300, 40, pytest.approx(0.05 / (11 * 12)))
    assert found.high is not None
    assert found.high < 0.8
    assert found.evidence is not None
    assert found.evidence >= 2 / 0.05
    healthy = stats.recent_accuracy([1.0] * 340, offline=1.0, tolerance=0.2, alpha=0.05, window=30)
    assert not healthy.degraded
    assert (healthy.start, healthy.units) == (300, 40)  # the older running epoch: 30 to 60 units
    assert not stats.recent_accuracy([], offline=1.0, tolerance=0.2, alpha=0.05, window=30).degraded


@pytest.mark.parametrize("units", [[1.0, 0.0, 1.0, 1.0], [0.0] * 3, [1.0] * 3])
def test_the_interval_of_a_few_units_stays_within_0_and_1(units):
    # The betting sequence is the A/B tests' (a difference in [-1, 1]): uncut, four units gave a
    # lower end near -1, shown as "[-100.0%, 100.0%]" on the monitoring page.
    live = stats.live_accuracy(units, offline=0.9, tolerance=0.05, alpha=0.05)
    assert live.low is not None
    assert live.high is not None
    assert 0.0 <= live.low <= live.high <= 1.0
