"""Comparing two versions: the statistics on constructed examples, then the endpoint on real models."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from models_registry.models import ModelVersion, PerformanceRecord
from models_registry.registry import compare
from models_registry.registry.compare import (
    ACCURACY_INTERVAL_METHOD,
    BOOTSTRAP_INTERVAL_METHOD,
    McNemar,
    PairedCases,
    cases_needed,
    clopper_pearson,
    difference_rows,
    mcnemar,
    pair,
    paired_accuracy_interval,
    paired_bootstrap,
    verdict,
)
from models_registry.registry.evaluation import evaluate_artifact
from tests.conftest import jwt_client
from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
from tests.training.factories import ModelTypeFactory

# --- McNemar and the verdict ---------------------------------------------------------------------


def correctness(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_counts_the_discordant_pairs_and_matches_scipys_exact_binomial_test():
    a, b = correctness(both=30, a_only=2, b_only=10, neither=8)
    test = mcnemar(a, b)
    assert (test.both_correct, test.a_only_correct, test.b_only_correct, test.both_wrong) == (30, 2, 10, 8)
    assert test.p_value == pytest.approx(binomtest(10, 12, 0.5).pvalue)
    # By hand: 2 * P(X <= 2) for X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096.
    assert test.p_value == pytest.approx(158 / 4096)
    assert verdict(test) == "b_better"


def test_mcnemar_favours_a_when_a_wins_the_discordant_pairs():
    a, b = correctness(both=5, a_only=11, b_only=1, neither=0)
    test = mcnemar(a, b)
    assert test.p_value == pytest.approx(binomtest(1, 12, 0.5).pvalue)
    assert verdict(test) == "a_better"


def table(both: int, a_only: int, b_only: int, neither: int) -> McNemar:
    return mcnemar(*correctness(both=both, a_only=a_only, b_only=b_only, neither=neither))


def test_a_balanced_difference_on_fifty_cases_is_insufficient_evidence():
    assert verdict(table(40, 4, 6, 0)) == "insufficient_evidence"


def test_a_balanced_difference_on_many_cases_is_no_significant_difference():
    test = table(9000, 100, 100, 800)
    low, high = paired_accuracy_interval(test)
    assert -0.05 < low < 0 < high < 0.05
    assert verdict(test) == "no_significant_difference"


def test_without_discordant_pairs_the_p_value_is_one_and_the_interval_is_not_a_point():
    test = table(20, 0, 0, 5)
    assert test.p_value == 1.0
    assert verdict(test) == "insufficient_evidence"
    low, high = paired_accuracy_interval(test)
    # No case told the versions apart, but 25 cases cannot show they never would.
    assert low == pytest.approx(-clopper_pearson(0, 25)[1])
    assert high == pytest.approx(clopper_pearson(0, 25)[1])


def test_one_case_gives_a_wide_interval_not_a_point():
    # The bootstrap said [1.0, 1.0]. One discordant case of one: pi in [0.025, 1], psi in [0.025, 1].
    low, high = paired_accuracy_interval(table(0, 0, 1, 0))
    assert (low, high) == pytest.approx((-0.95, 1.0))


def test_five_discordant_cases_can_never_be_significant():
    # The table 95/0/5/0: every discordant case favours b, p = 2 / 32 > 0.05.
    test = table(95, 0, 5, 0)
    assert test.p_value == pytest.approx(2 / 32)
    assert verdict(test) == "insufficient_evidence"
    low, high = paired_accuracy_interval(test)
    assert low < 0 < high  # the interval agrees with the test (the bootstrap's was [0.01, 0.09])


def test_the_accuracy_interval_excludes_zero_exactly_when_mcnemar_rejects():
    for a_only in range(0, 16):
        for b_only in range(0, 16):
            test = table(50, a_only, b_only, 10)
            low, high = paired_accuracy_interval(test)
            assert (low > 0 or high < 0) == (test.p_value < 0.05), (a_only, b_only)
            assert low <= (b_only - a_only) / (60 + a_only + b_only) <= high


def test_clopper_pearson_matches_statsmodels():
    for successes, trials in [(0, 5), (5, 5), (3, 10), (37, 120), (1, 1), (999, 1000)]:
        low, high = proportion_confint(successes, trials, alpha=0.05, method="beta")
        assert clopper_pearson(successes, trials) == pytest.approx((low, high), abs=1e-12)
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_the_accuracy_interval_covers_the_true_difference_in_simulation():
    rng = np.random.default_rng(5)
    for n, discordance, share_b in [(20, 0.1, 0.5), (60, 0.3, 0.7), (200, 0.05, 0.8), (1000, 0.2, 0.5)]:
        truth = discordance * (2 * share_b - 1)
        covered = 0
        for _ in range(400):
            d = int(rng.binomial(n, discordance))
            b_only = int(rng.binomial(d, share_b))
            low, high = paired_accuracy_interval(McNemar(n - d, d - b_only, b_only, 0, 1.0))
            covered += low <= truth <= high
        assert covered / 400 >= 0.93  # at least 95% expected: Monte-Carlo slack of about 2.5 s.e.


def test_cases_needed_by_hand():
    # psi = 0.05 (at least the difference), d = 0.05: (1.96 sqrt(.05) + 0.8416 sqrt(.0475))^2 / .0025 = 154.6
    assert cases_needed(table(95, 0, 5, 0)) == 155
    # psi = 0.2: (1.95996 * 0.44721 + 0.84162 * 0.44441)^2 / 0.0025 = 625.6
    assert cases_needed(table(80, 10, 10, 0)) == 626
    assert cases_needed(table(80, 10, 10, 0), difference=0.1) == 155
    # The share of discordant cases counts every case: 20 of 200 (psi 0.1) needs more than 20 of 100.
    assert cases_needed(table(80, 10, 10, 100)) == 312
    # No case at all: psi is taken as the difference itself.
    assert cases_needed(McNemar(0, 0, 0, 0, 1.0)) == 155


def test_mcnemar_as_dict_states_the_table_and_the_test():
    assert table(30, 2, 10, 8).as_dict() == {
        "both_correct": 30,
        "a_only_correct": 2,
        "b_only_correct": 10,
        "both_wrong": 8,
        "discordant": 12,
        "p_value": pytest.approx(158 / 4096),
        "test": "exact McNemar (two-sided binomial test on the discordant pairs)",
    }


def _cases(n: int) -> tuple[PairedCases, McNemar]:
    truth = np.array([i % 2 for i in range(n)])
    pred_a = truth.copy()
    pred_a[::3] = 1 - pred_a[::3]  # a wrong on a third of the cases, b always right
    cases = PairedCases(
        true_index=truth,
        pred_a=pred_a,
        pred_b=truth.copy(),
        brier_a=(pred_a != truth).astype(float),
        brier_b=np.zeros(n),
        labels=["x", "y"],
    )
    return cases, mcnemar(pred_a == truth, truth == truth)


def test_difference_rows_use_the_exact_accuracy_interval_and_the_bootstrap_for_the_rest():
    cases, test = _cases(60)
    metrics_a = {"accuracy": 2 / 3, "f1_macro": 0.6, "auroc_macro": 0.7, "brier": 1 / 3}
    metrics_b = {"accuracy": 1.0, "f1_macro": 1.0, "auroc_macro": 1.0, "brier": 0.0}

    rows = {row["metric"]: row for row in difference_rows(cases, test, metrics_a, metrics_b)}

    assert list(rows) == [metric for metric, _ in compare.METRICS]
    accuracy = rows["accuracy"]
    assert (accuracy["a"], accuracy["b"], accuracy["difference"]) == (2 / 3, 1.0, pytest.approx(1 / 3))
    assert accuracy["ci"] == paired_accuracy_interval(test)
    assert accuracy["interval_method"] == ACCURACY_INTERVAL_METHOD
    assert accuracy["higher_is_better"] is True
    assert rows["f1_macro"]["interval_method"] == BOOTSTRAP_INTERVAL_METHOD
    assert rows["f1_macro"]["ci"][0] > 0
    assert rows["brier"]["difference"] == pytest.approx(-1 / 3)
    assert rows["brier"]["ci"][1] < 0
    assert rows["brier"]["higher_is_better"] is False
    # No interval method for AUROC: the difference of the two figures, nothing more.
    assert rows["auroc_macro"]["difference"] == pytest.approx(0.3)
    assert (rows["auroc_macro"]["ci"], rows["auroc_macro"]["interval_method"]) == (None, None)
    assert (rows["f1_weighted"]["a"], rows["f1_weighted"]["difference"]) == (None, None)


def test_below_thirty_cases_there_is_no_bootstrap_interval():
    cases, test = _cases(29)
    rows = {row["metric"]: row for row in difference_rows(cases, test, {"f1_macro": 0.5}, {"f1_macro": 0.9})}
    assert rows["f1_macro"]["ci"] is None
    assert rows["f1_macro"]["difference"] == pytest.approx(0.4)
    assert rows["accuracy"]["ci"] == paired_accuracy_interval(test)  # the exact one needs no minimum
    assert rows["accuracy"]["difference"] == pytest.approx(10 / 29)


# --- The paired bootstrap --------------------------------------------------------------------------


def test_identical_predictions_have_zero_differences_and_zero_width_intervals():
    truth = ["x", "y"] * 20
    probabilities = np.tile([[0.8, 0.2], [0.3, 0.7]], (20, 1))
    predicted = ["x", "y"] * 20
    cases = pair(truth, predicted, ["x", "y"], probabilities, predicted, ["x", "y"], probabilities)
    result = paired_bootstrap(cases, resamples=200)
    for metric in ("accuracy", "f1_macro", "brier"):
        assert result[metric]["difference"] == 0.0
        assert result[metric]["ci"] == [0.0, 0.0]


def test_a_version_right_where_the_other_is_wrong_gets_an_interval_above_zero():
    n = 60
    truth = np.array([i % 2 for i in range(n)])
    pred_b = truth.copy()  # always right
    pred_a = truth.copy()
    pred_a[::3] = 1 - pred_a[::3]  # wrong on a third of the cases
    cases = PairedCases(
        true_index=truth,
        pred_a=pred_a,
        pred_b=pred_b,
        brier_a=(pred_a != truth).astype(float) * 2,
        brier_b=np.zeros(n),
        labels=["x", "y"],
    )
    result = paired_bootstrap(cases, resamples=500)
    assert result["accuracy"]["difference"] == pytest.approx(1 / 3)
    low, high = result["accuracy"]["ci"]
    assert 0 < low <= 1 / 3 <= high
    assert result["f1_macro"]["ci"][0] > 0
    assert result["brier"]["ci"][1] < 0  # b's Brier score is lower: better


def test_pair_codes_both_versions_over_the_union_of_labels():
    cases = pair(
        ["x", "z"],
        ["x", "x"],
        ["x", "y"],
        np.array([[0.9, 0.1], [0.6, 0.4]]),
        ["z", "z"],
        ["z"],
        np.array([[1.0], [1.0]]),
    )
    assert cases.labels == ["x", "y", "z"]
    assert cases.true_index.tolist() == [0, 2]
    assert cases.pred_b.tolist() == [2, 2]
    # Row 2 for a: truth z (probability 0), x 0.6, y 0.4: 0.36 + 0.16 + 1.
    assert cases.brier_a[1] == pytest.approx(1.52)
    assert cases.brier_b[0] == pytest.approx(2.0)


# --- The endpoint on real (tiny) models ------------------------------------------------------------


def compare_url(a: str, b: str, slug: str = "diagnosis") -> str:
    return f"/api/v1/model-types/{slug}/compare/?a={a}&b={b}"


@pytest.mark.django_db
def test_on_one_snapshot_a_real_model_beats_one_trained_on_shuffled_labels(snapshot, engineer, lead):
    chance = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, shuffle_labels=True)
    good = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)

    response = jwt_client(lead).get(compare_url(chance.version, good.version))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["test_set"] == {
        "dataset": snapshot.pk,
        "cases": 60,
        "labels": ["J06.9", "J18.9"],
        "same_snapshot": True,
        "reevaluated": [],
    }
    # Same snapshot: the metrics on the shared cases are the registered ones.
    assert body["a"]["metrics"]["accuracy"] == pytest.approx(chance.metrics["accuracy"])
    assert body["b"]["metrics"]["accuracy"] == pytest.approx(good.metrics["accuracy"])
    accuracy = next(row for row in body["differences"] if row["metric"] == "accuracy")
    assert accuracy["difference"] == pytest.approx(good.metrics["accuracy"] - chance.metrics["accuracy"])
    assert accuracy["ci"][0] > 0
    mcnemar_body = body["mcnemar"]
    assert mcnemar_body["b_only_correct"] > mcnemar_body["a_only_correct"]
    assert mcnemar_body["p_value"] == pytest.approx(
        binomtest(mcnemar_body["b_only_correct"], mcnemar_body["discordant"], 0.5).pvalue
    )
    assert body["verdict"] == "b_better"
    assert (body["a"]["live"], body["b"]["live"]) == (None, None)


@pytest.mark.django_db
def test_the_order_of_a_and_b_flips_the_verdict(snapshot, engineer, lead):
    chance = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, shuffle_labels=True)
    good = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    body = jwt_client(lead).get(compare_url(good.version, chance.version)).json()
    assert body["verdict"] == "a_better"


@pytest.mark.django_db
def test_two_equally_good_models_on_sixty_cases_are_insufficient_evidence(snapshot, engineer, lead):
    first = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 1.0})
    second = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5})
    body = jwt_client(lead).get(compare_url(first.version, second.version)).json()
    assert body["verdict"] == "insufficient_evidence"
    assert body["mcnemar"]["p_value"] > 0.05
    assert body["sample_size"]["cases_needed"] > 60
    accuracy = next(row for row in body["differences"] if row["metric"] == "accuracy")
    low, high = accuracy["ci"]
    assert low < 0 < high
    assert high - low > 0.1  # sixty cases cannot pin a difference down


@pytest.mark.django_db
def test_versions_from_different_snapshots_are_both_evaluated_on_the_newer_test_split(engineer, lead):
    kind = ModelTypeFactory.create(diagnosis=True)
    older = ready_snapshot(kind, by=engineer, seed=1, first_id=1)
    newer = ready_snapshot(kind, by=engineer, seed=2, first_id=1001)
    old_version = ModelVersionFactory.create(trained=True, dataset=older, created_by=engineer)
    new_version = ModelVersionFactory.create(trained=True, dataset=newer, created_by=engineer)

    response = jwt_client(lead).get(compare_url(old_version.version, new_version.version))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["test_set"]["dataset"] == newer.pk
    assert body["test_set"]["same_snapshot"] is False
    assert body["test_set"]["reevaluated"] == [old_version.version]
    # The old version's numbers are its evaluation on the newer test split, not its registered ones.
    on_newer = evaluate_artifact(old_version.load_artifact(), newer)
    assert body["a"]["metrics"]["accuracy"] == pytest.approx(on_newer["accuracy"])
    assert body["a"]["metrics"]["test_size"] == on_newer["test_size"] == 60
    assert body["a"]["registered_metrics"] == old_version.metrics
    assert body["b"]["metrics"]["accuracy"] == pytest.approx(new_version.metrics["accuracy"])
    # Whatever the order, the newer snapshot is the one.
    swapped = jwt_client(lead).get(compare_url(new_version.version, old_version.version)).json()
    assert swapped["test_set"]["dataset"] == newer.pk


@pytest.mark.django_db
def test_live_accuracy_from_feedback_is_shown_when_there_is_some(snapshot, engineer, lead):
    a = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    b = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5})
    PerformanceRecord.objects.create(version=b, source="live", metrics={"accuracy": 0.5}, test_set_size=4)
    PerformanceRecord.objects.create(version=b, source="live", metrics={"accuracy": 0.75}, test_set_size=8)

    body = jwt_client(lead).get(compare_url(a.version, b.version)).json()

    assert body["a"]["live"] is None
    assert body["b"]["live"]["accuracy"] == 0.75
    assert body["b"]["live"]["n"] == 8


@pytest.mark.django_db
def test_the_paired_evaluation_is_cached_per_pair_of_artifacts_and_snapshot(snapshot, engineer, lead, monkeypatch):
    a = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    b = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5})
    client = jwt_client(lead)
    first = client.get(compare_url(a.version, b.version)).json()
    assert first["cached"] is False

    def no_loading(*args, **kwargs):
        raise AssertionError("a cached comparison must not load artifacts")

    monkeypatch.setattr(ModelVersion, "load_artifact", no_loading)
    second = client.get(compare_url(a.version, b.version)).json()
    assert second["cached"] is True
    assert second["differences"] == first["differences"]
    assert second["verdict"] == first["verdict"]
    assert compare.cache_key(a, b, snapshot) != compare.cache_key(b, a, snapshot)


@pytest.mark.django_db
def test_an_unknown_version_is_404_and_a_version_compared_with_itself_is_400(snapshot, engineer, lead):
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    client = jwt_client(lead)

    unknown = client.get(compare_url(version.version, "v9.9.9"))
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"

    itself = client.get(compare_url(version.version, version.version))
    assert itself.status_code == 400
    assert itself.json()["code"] == "same_version"

    assert client.get(compare_url(version.version, "v1.1.0", slug="no-such-type")).status_code == 404


@pytest.mark.django_db
def test_missing_parameters_are_400(snapshot, engineer, lead):
    response = jwt_client(lead).get("/api/v1/model-types/diagnosis/compare/?a=v1.0.0")
    assert response.status_code == 400
    assert "b" in response.json()["errors"]


@pytest.mark.django_db
def test_a_version_of_another_model_type_is_not_found(engineer, lead):
    here = ModelVersionFactory.create(
        trained=True,
        dataset=ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1),
        created_by=engineer,
    )
    other_kind = ModelTypeFactory.create(slug="other", cohort="cardiology")
    ModelVersionFactory.create(
        trained=True, dataset=ready_snapshot(other_kind, by=engineer, seed=3), created_by=engineer
    )
    ModelVersionFactory.create(
        trained=True, dataset=ready_snapshot(other_kind, by=engineer, seed=4), created_by=engineer
    )
    # "v1.1.0" exists only under "other".
    response = jwt_client(lead).get(compare_url(here.version, "v1.1.0"))
    assert response.status_code == 404


# --- Mutation-testing pins (README "Mutation testing"): each formula against an independent reference ---


def _f1_reference(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def test_macro_f1_of_a_stack_of_confusions_matches_sklearn_row_by_row():
    # Label 4 never occurs (absent, must not count); label 3 occurs once, only as a wrong prediction
    # (present with F1 0); the last row has a single label, right every time (macro-F1 1).
    truth = np.array([[0, 1, 2, 0, 1, 2, 0, 1], [0, 0, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    predicted = np.array([[0, 1, 1, 0, 3, 2, 0, 2], [0, 1, 1, 2, 2, 0, 3, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    f1 = compare._macro_f1(compare._confusions(truth, predicted, 5))
    assert f1.shape == (3,)
    for row in range(3):
        assert f1[row] == pytest.approx(_f1_reference(truth[row], predicted[row]), abs=1e-12)
    assert f1[2] == 1.0


def test_confusions_keep_their_shape_when_the_last_label_is_never_seen():
    matrices = compare._confusions(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 0]]), 3)
    assert matrices.shape == (2, 3, 3)
    assert matrices[0].tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert matrices[1].tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]


def _bootstrap_reference(cases: PairedCases, resamples: int, seed: int) -> dict[str, list[float]]:
    """The same resamples drawn in one go, each scored with numpy means and sklearn's macro-F1."""
    idx = np.random.default_rng(seed).integers(0, cases.n, size=(resamples, cases.n))
    right_a = (cases.pred_a == cases.true_index).astype(float)
    right_b = (cases.pred_b == cases.true_index).astype(float)
    values = {
        "accuracy": [right_b[i].mean() - right_a[i].mean() for i in idx],
        "brier": [cases.brier_b[i].mean() - cases.brier_a[i].mean() for i in idx],
        "f1_macro": [
            _f1_reference(cases.true_index[i], cases.pred_b[i]) - _f1_reference(cases.true_index[i], cases.pred_a[i])
            for i in idx
        ],
    }
    return {metric: [float(v) for v in np.percentile(draws, [2.5, 97.5])] for metric, draws in values.items()}


def _some_cases(n: int = 13) -> PairedCases:
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, n)
    pred_a = np.where(rng.random(n) < 0.6, truth, rng.integers(0, 3, n))
    pred_b = np.where(rng.random(n) < 0.8, truth, rng.integers(0, 3, n))
    return PairedCases(truth, pred_a, pred_b, rng.random(n), rng.random(n), ["x", "y", "z"])


@pytest.mark.parametrize("chunk_cells", [compare._CHUNK_CELLS, 26])  # 26 cells: chunks of 2 resamples
def test_paired_bootstrap_matches_a_reference_resampling_in_one_go(monkeypatch, chunk_cells):
    monkeypatch.setattr(compare, "_CHUNK_CELLS", chunk_cells)
    cases = _some_cases()
    result = paired_bootstrap(cases, resamples=41, seed=3)
    reference = _bootstrap_reference(cases, 41, 3)
    for metric in ("accuracy", "brier", "f1_macro"):
        assert result[metric]["ci"] == pytest.approx(reference[metric], abs=1e-12)
    right_a, right_b = cases.pred_a == cases.true_index, cases.pred_b == cases.true_index
    assert result["accuracy"]["difference"] == pytest.approx(right_b.mean() - right_a.mean())
    assert result["f1_macro"]["difference"] == pytest.approx(
        _f1_reference(cases.true_index, cases.pred_b) - _f1_reference(cases.true_index, cases.pred_a)
    )
    assert paired_bootstrap(cases, resamples=41, seed=3) == result  # the seed fixes the draws


def test_paired_accuracy_interval_by_hand_on_each_side_of_zero():
    def reference(test: McNemar, confidence: float) -> list[float]:
        discordant = test.a_only_correct + test.b_only_correct
        n = discordant + test.both_correct + test.both_wrong
        pi = proportion_confint(test.b_only_correct, discordant, alpha=1 - confidence, method="beta")
        psi = proportion_confint(discordant, n, alpha=1 - confidence, method="beta")
        low, high = 2 * pi[0] - 1, 2 * pi[1] - 1
        return [low * (psi[1] if low < 0 else psi[0]), high * (psi[1] if high > 0 else psi[0])]

    b_wins = McNemar(40, 2, 30, 28, 0.0)  # both ends above zero
    a_wins = McNemar(40, 30, 2, 28, 0.0)  # both ends below zero
    mixed = McNemar(40, 10, 12, 38, 1.0)
    for test in (b_wins, a_wins, mixed):
        for confidence in (0.95, 0.8):
            assert paired_accuracy_interval(test, confidence=confidence) == pytest.approx(reference(test, confidence))
    low, high = paired_accuracy_interval(b_wins)
    assert 0 < low < high
    low, high = paired_accuracy_interval(a_wins)
    assert low < high < 0
    assert paired_accuracy_interval(McNemar(0, 0, 0, 0, 1.0)) == [-1.0, 1.0]


def test_verdict_boundaries_p_equal_to_alpha_and_an_interval_ending_at_the_margin():
    assert verdict(McNemar(10, 2, 20, 10, 0.05)) != "b_better"  # rejects only below alpha
    assert verdict(McNemar(10, 2, 20, 10, 0.0499)) == "b_better"
    assert verdict(McNemar(10, 20, 2, 10, 0.0499)) == "a_better"
    test = McNemar(500, 20, 21, 459, 1.0)
    low, high = paired_accuracy_interval(test)
    assert verdict(test, margin=max(-low, high) + 1e-9) == "no_significant_difference"
    assert high > -low  # b slightly ahead: the interval reaches further above zero
    assert verdict(test, margin=high) == "insufficient_evidence"
    # The interval is read at 1 - alpha: at alpha 0.5 it is narrower than at 0.05.
    low_half, high_half = paired_accuracy_interval(test, confidence=0.5)
    margin = (max(-low_half, high_half) + max(-low, high)) / 2
    assert verdict(test, alpha=0.5, margin=margin) == "no_significant_difference"
    assert verdict(test, alpha=0.05, margin=margin) == "insufficient_evidence"


def test_mcnemar_reads_zero_one_integers_as_booleans():
    test = mcnemar(np.array([1, 0, 0, 1, 0]), np.array([1, 1, 0, 0, 0]))
    assert (test.both_correct, test.a_only_correct, test.b_only_correct, test.both_wrong) == (1, 1, 1, 2)


def test_difference_rows_at_exactly_thirty_cases_and_with_a_missing_metric():
    cases = _some_cases(30)
    test = mcnemar(cases.pred_a == cases.true_index, cases.pred_b == cases.true_index)
    rows = {row["metric"]: row for row in difference_rows(cases, test, {"accuracy": 0.5, "auroc_macro": 0.7}, {})}
    assert rows["f1_macro"]["interval_method"] == BOOTSTRAP_INTERVAL_METHOD
    assert rows["auroc_macro"]["difference"] is None
    assert rows["accuracy"]["difference"] == pytest.approx((test.b_only_correct - test.a_only_correct) / 30)
    assert test.b_only_correct != test.a_only_correct


def test_an_empty_test_set_is_coded_as_integers_and_has_no_accuracy_difference():
    empty = pair([], [], ["x"], np.zeros((0, 1)), [], ["x"], np.zeros((0, 1)))
    assert empty.true_index.dtype == np.int64
    assert empty.pred_a.dtype == np.int64
    assert empty.pred_b.dtype == np.int64
    rows = difference_rows(empty, McNemar(0, 0, 0, 0, 1.0), {}, {})
    accuracy = next(row for row in rows if row["metric"] == "accuracy")
    assert accuracy["difference"] is None
    assert accuracy["ci"] == [-1.0, 1.0]


def test_mcnemar_reads_floats_as_booleans():
    test = mcnemar(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0, 0.0]))
    assert (test.both_correct, test.a_only_correct, test.b_only_correct, test.both_wrong) == (1, 1, 1, 1)


def test_an_interval_ending_exactly_at_minus_the_margin_does_not_rule_it_out():
    test = McNemar(500, 21, 20, 459, 1.0)  # a slightly ahead: the interval reaches further below zero
    low, high = paired_accuracy_interval(test)
    assert high < -low
    assert verdict(test, margin=-low) == "insufficient_evidence"
    assert verdict(test, margin=-low + 1e-9) == "no_significant_difference"
