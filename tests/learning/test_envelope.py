"""The acceptance envelope on constructed paired predictions: each criterion at its boundary, the
paired test pinned against statsmodels, bad candidates rejected, and the non-inferiority decision's
error rate at the margin by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar
from statsmodels.stats.proportion import proportion_confint

from learning.envelope import Paired, Terms, judge, non_inferiority_bound

LABELS = ("J18.9", "J06.9")


def terms(**overrides: object) -> Terms:
    values: dict[str, object] = {
        "min_evaluation_cases": 10,
        "non_inferiority_margin": 0.05,
        "significance_level": 0.05,
        "subgroup_margin": 0.05,
        "min_subgroup_cases": 5,
        "max_calibration_error": 1.0,
        "subgroups": ("sex",),
    }
    values.update(overrides)
    return Terms(**values)  # type: ignore[arg-type]


def flip(label: str) -> str:
    return LABELS[1] if label == LABELS[0] else LABELS[0]


def outcomes(
    both: int,
    champion_only: int,
    candidate_only: int,
    neither: int,
    *,
    confidence: float = 0.9,
    sex: list[str] | None = None,
) -> Paired:
    """Paired answers with the given cells; the candidate's probability of what it predicts is ``confidence``."""
    truth, champion, candidate = [], [], []
    for count, champion_right, candidate_right in (
        (both, True, True),
        (champion_only, True, False),
        (candidate_only, False, True),
        (neither, False, False),
    ):
        for i in range(count):
            label = LABELS[i % 2]
            truth.append(label)
            champion.append(label if champion_right else flip(label))
            candidate.append(label if candidate_right else flip(label))
    probabilities = np.array(
        [[confidence, 1 - confidence] if answer == LABELS[0] else [1 - confidence, confidence] for answer in candidate]
    )
    return Paired(
        truth=truth,
        champion=champion,
        candidate=candidate,
        candidate_probabilities=probabilities,
        candidate_classes=list(LABELS),
        groups={
            "sex": sex if sex is not None else ["female", "male"] * (len(truth) // 2) + ["female"] * (len(truth) % 2)
        },
    )


def criterion(result, name: str):
    return next(item for item in result.criteria if item.name == name)


# --- The paired test, pinned -----------------------------------------------------------------------


@pytest.mark.parametrize(("b", "c"), [(3, 9), (12, 5), (0, 4), (20, 20), (1, 0)])
def test_the_reported_mcnemar_p_value_is_statsmodels_exact_mcnemar(b, c):
    result = judge(outcomes(50, b, c, 7), terms())
    expected = statsmodels_mcnemar([[50, b], [c, 7]], exact=True).pvalue
    assert result.test is not None
    assert result.test.p_value == pytest.approx(expected, rel=1e-12)
    assert (result.test.a_only_correct, result.test.b_only_correct) == (b, c)


def test_the_non_inferiority_bound_is_the_projected_clopper_pearson_bound_of_statsmodels():
    champion = np.array([True] * 80 + [True] * 12 + [False] * 6 + [False] * 2)
    candidate = np.array([True] * 80 + [False] * 12 + [True] * 6 + [False] * 2)
    alpha = 0.05
    # Two-sided 1 - 2 alpha Clopper-Pearson intervals of pi (candidate's share of the 18 discordant)
    # and psi (the discordant share of 100), projected as the registry's paired interval does.
    pi_low, _ = proportion_confint(6, 18, alpha=2 * alpha, method="beta")
    _, psi_high = proportion_confint(18, 100, alpha=2 * alpha, method="beta")
    expected = (2 * pi_low - 1) * psi_high
    assert non_inferiority_bound(champion, candidate, alpha=alpha) == pytest.approx(expected, rel=1e-9)


# --- Each criterion at its boundary -----------------------------------------------------------------


def test_the_case_count_passes_at_the_minimum_and_fails_one_below():
    paired = outcomes(40, 0, 0, 0)
    # With 40 cases and no discordant one, the exact bound is about -0.07: a 10-point margin.
    assert criterion(judge(paired, terms(min_evaluation_cases=40)), "evaluation_cases").passed is True
    result = judge(paired, terms(min_evaluation_cases=41, non_inferiority_margin=0.1))
    assert criterion(result, "evaluation_cases").passed is False
    assert result.passed is False
    assert result.failed() == ["evaluation_cases"]


def test_non_inferiority_needs_the_bound_strictly_above_minus_the_margin():
    paired = outcomes(150, 10, 4, 6)
    bound = criterion(judge(paired, terms()), "non_inferiority").figure
    assert bound is not None
    assert -0.5 < bound < 0
    at = judge(paired, terms(non_inferiority_margin=-bound))
    assert criterion(at, "non_inferiority").passed is False
    above = judge(paired, terms(non_inferiority_margin=-bound + 1e-6))
    assert criterion(above, "non_inferiority").passed is True
    assert above.passed is True


def test_a_subgroup_exactly_the_margin_worse_passes_and_a_hair_more_fails():
    # 20 women: the champion right on all, the candidate wrong on 1 (5 points worse); men unchanged.
    sex = ["female"] * 20 + ["male"] * 20
    truth = [LABELS[i % 2] for i in range(40)]
    candidate = list(truth)
    candidate[0] = flip(candidate[0])
    paired = Paired(
        truth=truth,
        champion=list(truth),
        candidate=candidate,
        candidate_probabilities=np.array([[0.99, 0.01] if a == LABELS[0] else [0.01, 0.99] for a in candidate]),
        candidate_classes=list(LABELS),
        groups={"sex": sex},
    )
    women = criterion(judge(paired, terms(subgroup_margin=0.05, non_inferiority_margin=0.2)), "subgroup:sex=female")
    assert women.figure == pytest.approx(-0.05)
    assert women.passed is True
    narrower = judge(paired, terms(subgroup_margin=0.0499, non_inferiority_margin=0.2))
    assert criterion(narrower, "subgroup:sex=female").passed is False
    assert narrower.failed() == ["subgroup:sex=female"]


def test_a_subgroup_below_the_minimum_size_is_reported_but_not_judged():
    sex = ["female"] * 4 + ["male"] * 36
    truth = [LABELS[i % 2] for i in range(40)]
    candidate = [flip(label) if i < 4 else label for i, label in enumerate(truth)]  # every woman wrong
    paired = Paired(
        truth=truth,
        champion=list(truth),
        candidate=candidate,
        candidate_probabilities=np.array([[0.9, 0.1] if a == LABELS[0] else [0.1, 0.9] for a in candidate]),
        candidate_classes=list(LABELS),
        groups={"sex": sex},
    )
    women = criterion(judge(paired, terms(min_subgroup_cases=5, non_inferiority_margin=0.5)), "subgroup:sex=female")
    assert women.passed is None
    assert women.figure == pytest.approx(-1.0)
    judged = criterion(judge(paired, terms(min_subgroup_cases=4, non_inferiority_margin=0.5)), "subgroup:sex=female")
    assert judged.passed is False


def test_calibration_passes_at_the_bound_and_fails_just_under_it():
    # Always right at probability 0.9: the expected calibration error is exactly 0.1.
    paired = outcomes(40, 0, 0, 0, confidence=0.9)
    assert criterion(judge(paired, terms(max_calibration_error=0.1)), "calibration").figure == pytest.approx(0.1)
    assert criterion(judge(paired, terms(max_calibration_error=0.1)), "calibration").passed is True
    assert criterion(judge(paired, terms(max_calibration_error=0.0999)), "calibration").passed is False


def test_a_locked_case_seen_in_training_fails_the_envelope():
    base = outcomes(40, 0, 0, 0)
    seen = Paired(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "seen_in_training": 1})
    result = judge(seen, terms(non_inferiority_margin=0.1))
    assert criterion(result, "unseen").passed is False
    assert result.failed() == ["unseen"]


# --- Bad candidates ------------------------------------------------------------------------------------


def test_a_candidate_no_better_than_chance_fails_non_inferiority():
    rng = np.random.default_rng(3)
    truth = [LABELS[i % 2] for i in range(300)]
    guesses = [LABELS[int(i)] for i in rng.integers(0, 2, size=300)]
    champion = [label if rng.random() < 0.9 else flip(label) for label in truth]
    paired = Paired(
        truth=truth,
        champion=champion,
        candidate=guesses,
        candidate_probabilities=np.array([[0.5, 0.5]] * 300),
        candidate_classes=list(LABELS),
        groups={"sex": ["female", "male"] * 150},
    )
    result = judge(paired, terms(max_calibration_error=0.2))
    assert "non_inferiority" in result.failed()


def test_a_miscalibrated_candidate_fails_on_calibration_alone():
    # As accurate as the champion but 99.9% sure of answers right 80% of the time.
    paired = outcomes(160, 0, 0, 40, confidence=0.999)
    result = judge(paired, terms(max_calibration_error=0.1))
    assert result.failed() == ["calibration"]


def test_judge_refuses_predictions_of_different_cases():
    base = outcomes(10, 0, 0, 0)
    with pytest.raises(ValueError, match="same cases"):
        judge(
            Paired(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "champion": base.champion[:-1]}),
            terms(),
        )


# --- By simulation -----------------------------------------------------------------------------------


@pytest.mark.simulation
def test_a_candidate_exactly_the_margin_worse_passes_non_inferiority_at_most_alpha_of_the_time():
    rng = np.random.default_rng(20261207)
    runs, n, margin, alpha = 2000, 400, 0.05, 0.05
    # Discordant cells: champion-only 0.10, candidate-only 0.05: the candidate is exactly 5 points worse.
    passes = 0
    for _ in range(runs):
        cell = rng.choice(4, size=n, p=[0.75, 0.10, 0.05, 0.10])
        champion = (cell == 0) | (cell == 1)
        candidate = (cell == 0) | (cell == 2)
        passes += non_inferiority_bound(champion, candidate, alpha=alpha) > -margin
    rate = passes / runs
    standard_error = (alpha * (1 - alpha) / runs) ** 0.5
    assert rate <= alpha + 3 * standard_error, rate


@pytest.mark.simulation
def test_an_equal_candidate_passes_non_inferiority_most_of_the_time_with_enough_cases():
    rng = np.random.default_rng(7)
    runs, n = 500, 2000
    passes = 0
    for _ in range(runs):
        cell = rng.choice(4, size=n, p=[0.80, 0.05, 0.05, 0.10])
        passes += non_inferiority_bound((cell == 0) | (cell == 1), (cell == 0) | (cell == 2), alpha=0.05) > -0.05
    assert passes / runs > 0.9
