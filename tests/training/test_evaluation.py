"""Evaluation: metrics against sklearn on hand-made predictions, intervals, subgroups, JSON."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from tests.training.test_trainer import FAST, Recorder, file_splits, synthetic_splits
from training import evaluation
from training.evaluation import LATENCY_CALLS, evaluate, plain, predict_rows
from training.features import columns_from_rows, columns_of, feature_dicts
from training.trainer import train

ID = "finding:id"


class StubModel:
    """A "fitted pipeline" whose probabilities are written by hand, one row per case id."""

    def __init__(self, classes: list[str], probabilities: list[list[float]]) -> None:
        self.classes_ = np.array(classes, dtype=object)
        self.probabilities = np.array(probabilities, dtype=np.float32)  # float32: must not leak

        self.batch_sizes: list[int] = []

    def predict_proba(self, feature_dicts: list[dict[str, float]]) -> np.ndarray:
        self.batch_sizes.append(len(feature_dicts))
        return self.probabilities[[int(features[ID]) for features in feature_dicts]]


def stub_rows(labels: list[str], *, sexes: list[str] | None = None, bands: list[str | None] | None = None) -> list:
    return [
        {
            "case_id": 100 + i,
            "label": label,
            "sex": (sexes or ["female"] * len(labels))[i],
            "age_band": (bands or ["40-49"] * len(labels))[i],
            "findings": {"id": i},
            "symptoms": [],
        }
        for i, label in enumerate(labels)
    ]


CLASSES = ["A", "B", "C"]
TRUTH = ["A", "A", "A", "B", "B", "C", "C", "C", "A", "B"]
PROBABILITIES = [
    [0.8, 0.1, 0.1],  # A -> A
    [0.6, 0.3, 0.1],  # A -> A
    [0.2, 0.7, 0.1],  # A -> B
    [0.1, 0.8, 0.1],  # B -> B
    [0.5, 0.4, 0.1],  # B -> A
    [0.1, 0.1, 0.8],  # C -> C
    [0.2, 0.2, 0.6],  # C -> C
    [0.1, 0.6, 0.3],  # C -> B
    [0.7, 0.2, 0.1],  # A -> A
    [0.2, 0.5, 0.3],  # B -> B
]
PREDICTED = [CLASSES[int(np.argmax(p))] for p in PROBABILITIES]


def evaluate_stub(truth=TRUTH, probabilities=PROBABILITIES, classes=CLASSES, **kwargs: Any) -> dict[str, Any]:
    return evaluate(StubModel(classes, probabilities), stub_rows(list(truth), **kwargs), numeric_features=[ID])


def test_headline_metrics_match_sklearn():
    result = evaluate_stub()

    assert result["test_size"] == 10
    assert result["accuracy"] == pytest.approx(accuracy_score(TRUTH, PREDICTED))
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(TRUTH, PREDICTED, average=average)
        assert result[f"precision_{average}"] == pytest.approx(precision)
        assert result[f"recall_{average}"] == pytest.approx(recall)
        assert result[f"f1_{average}"] == pytest.approx(f1)


def test_per_class_metrics_and_confusion_matrix_match_sklearn():
    result = evaluate_stub()

    precision, recall, f1, support = precision_recall_fscore_support(TRUTH, PREDICTED, labels=CLASSES)
    assert [row["label"] for row in result["per_class"]] == CLASSES
    assert [row["precision"] for row in result["per_class"]] == pytest.approx(list(precision))
    assert [row["recall"] for row in result["per_class"]] == pytest.approx(list(recall))
    assert [row["f1"] for row in result["per_class"]] == pytest.approx(list(f1))
    assert [row["support"] for row in result["per_class"]] == list(support)
    assert result["confusion_matrix"]["labels"] == CLASSES
    assert result["confusion_matrix"]["matrix"] == confusion_matrix(TRUTH, PREDICTED, labels=CLASSES).tolist()


def test_auroc_is_one_vs_rest_per_class_and_macro():
    result = evaluate_stub()

    scores = np.array(PROBABILITIES)
    expected = [roc_auc_score([t == label for t in TRUTH], scores[:, j]) for j, label in enumerate(CLASSES)]
    assert [row["auroc"] for row in result["per_class"]] == pytest.approx(expected)
    assert result["auroc_macro"] == pytest.approx(roc_auc_score(TRUTH, scores, multi_class="ovr", average="macro"))


def test_auroc_is_none_for_a_class_absent_from_the_test_rows():
    truth = ["A", "A", "B", "B", "A", "B", "A", "B", "A", "B"]  # no C

    result = evaluate_stub(truth=truth)

    per_class = {row["label"]: row["auroc"] for row in result["per_class"]}
    assert per_class["C"] is None
    assert per_class["A"] is not None
    assert result["auroc_macro"] == pytest.approx(np.mean([per_class["A"], per_class["B"]]))


def test_auroc_is_none_when_the_test_rows_have_a_single_label():
    result = evaluate_stub(truth=["A"] * 10)

    assert result["auroc_macro"] is None
    assert all(row["auroc"] is None for row in result["per_class"])


def test_binary_auroc_is_the_usual_auroc():
    truth = ["neg", "neg", "pos", "pos", "neg", "pos"]
    positive = [0.1, 0.6, 0.7, 0.4, 0.2, 0.9]
    probabilities = [[1 - p, p] for p in positive]

    result = evaluate_stub(truth=truth, probabilities=probabilities, classes=["neg", "pos"])

    assert result["auroc_macro"] == pytest.approx(roc_auc_score([t == "pos" for t in truth], positive))


def test_brier_score_is_sklearns_brier_score_loss_multiclass():
    result = evaluate_stub()

    probabilities = np.array(PROBABILITIES, dtype=np.float32).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float32 rows sum to 1 only within 1e-7
        expected = brier_score_loss(TRUTH, probabilities, labels=CLASSES)
    assert result["brier"] == pytest.approx(expected)
    assert result["brier_definition"].startswith("scikit-learn's brier_score_loss")


def test_the_binary_brier_score_is_the_conventional_one_not_twice_it():
    truth = ["neg", "neg", "pos", "pos", "neg", "pos"]
    positive = [0.1, 0.6, 0.7, 0.4, 0.2, 0.9]
    result = evaluate_stub(truth=truth, probabilities=[[1 - p, p] for p in positive], classes=["neg", "pos"])

    # By hand: (0.01 + 0.36 + 0.09 + 0.36 + 0.04 + 0.01) / 6 = 0.145.
    assert result["brier"] == pytest.approx(0.145, abs=1e-6)
    assert result["brier"] == pytest.approx(brier_score_loss([t == "pos" for t in truth], positive), abs=1e-6)


def test_calibration_bins_and_ece_by_hand():
    result = evaluate_stub()
    calibration = result["calibration"]

    # Confidences (the top probability, as the stub's float32 gives them: 0.7 is 0.69999999) and
    # whether the top label is right, from PROBABILITIES; bin b holds [b/10, (b+1)/10).
    confidence = np.array([0.8, 0.6, 0.7, 0.8, 0.5, 0.8, 0.6, 0.6, 0.7, 0.5], dtype=np.float32).astype(np.float64)
    right = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1])
    member_bins = [int(np.floor(c * 10)) for c in confidence]
    bins = calibration["bins"]
    assert len(bins) == 10
    assert [b["count"] for b in bins] == [member_bins.count(b) for b in range(10)]
    assert [(b["low"], b["high"]) for b in bins][5] == pytest.approx((0.5, 0.6))
    assert bins[5]["confidence"] == pytest.approx(0.5)
    assert bins[5]["accuracy"] == pytest.approx(0.5)  # rows 5 and 10: one right
    assert bins[0]["confidence"] is None
    expected = 0.0
    for b in set(member_bins):
        members = [i for i, found in enumerate(member_bins) if found == b]
        gap = abs(right[members].mean() - confidence[members].mean())
        expected += len(members) / 10 * gap
    assert result["ece"] == pytest.approx(expected, abs=1e-6)
    low, high = result["ece_ci"]
    assert 0 <= low <= high
    assert calibration["ece_ci"] == result["ece_ci"]


def test_a_perfectly_calibrated_model_has_an_ece_near_zero():
    rng = np.random.default_rng(3)
    chance = rng.uniform(0.5, 1.0, 4000)
    truth = ["pos" if rng.random() < p else "neg" for p in chance]
    result = evaluate_stub(truth=truth, probabilities=[[1 - p, p] for p in chance], classes=["neg", "pos"])

    assert result["ece"] < 0.03
    assert result["ece_ci"][0] < 0.02
    for row in result["calibration"]["bins"][5:]:
        assert abs(row["accuracy"] - row["confidence"]) < 0.06


def test_bootstrap_intervals_contain_the_point_estimates_and_are_reproducible():
    first = evaluate_stub()
    second = evaluate_stub()

    for metric in ("accuracy", "f1_macro"):
        low, high = first[f"{metric}_ci"]
        assert low <= first[metric] <= high
        assert low < high  # 10 rows: the interval is far from a point
    assert first["accuracy_ci"] == second["accuracy_ci"]
    assert first["bootstrap"]["resamples"] == 1000


def test_the_vectorised_bootstrap_agrees_with_resampling_rows():
    """Resampling cells of the confusion matrix stands in for resampling rows: same intervals."""
    rng = np.random.default_rng(123)
    truth = [CLASSES[i] for i in rng.integers(0, 3, 300)]
    probabilities = rng.dirichlet([1, 1, 1], 300)
    for row, label in zip(probabilities, truth, strict=True):  # about 70% right
        if rng.random() < 0.6:
            row[CLASSES.index(label)] += 2
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    predicted = np.array([CLASSES[i] for i in probabilities.argmax(axis=1)])

    result = evaluate_stub(truth=truth, probabilities=probabilities.tolist())

    # The textbook way: resample row indices (2000 x 300), score each resample.
    rows = rng.integers(0, len(truth), (2000, len(truth)))
    t, p = np.array(truth)[rows], predicted[rows]
    accuracies = np.mean(t == p, axis=1)
    f1_by_class, present = [], []
    for label in CLASSES:
        tp = np.sum((t == label) & (p == label), axis=1)
        wrong = np.sum((t == label) != (p == label), axis=1)  # FP + FN
        f1_by_class.append(np.divide(2 * tp, 2 * tp + wrong, out=np.zeros(len(tp)), where=2 * tp + wrong > 0))
        present.append((t == label).any(axis=1) | (p == label).any(axis=1))
    f1s = np.sum(np.array(f1_by_class) * present, axis=0) / np.sum(present, axis=0)
    for i in range(5):  # that formula is sklearn's macro-F1
        assert f1s[i] == pytest.approx(f1_score(t[i], p[i], average="macro", zero_division=0))
    assert result["accuracy_ci"] == pytest.approx(list(np.percentile(accuracies, [2.5, 97.5])), abs=0.015)
    assert result["f1_macro_ci"] == pytest.approx(list(np.percentile(f1s, [2.5, 97.5])), abs=0.015)
    # And both are real intervals around the estimate, not a point.
    assert result["accuracy_ci"][1] - result["accuracy_ci"][0] > 0.05


def test_subgroups_cover_every_row_once_with_their_own_metrics():
    sexes = ["female", "male"] * 5
    bands = ["40-49", "50-59", None, "40-49", "50-59", "90+", "40-49", "50-59", None, "40-49"]

    result = evaluate_stub(sexes=sexes, bands=bands)

    for field_name in ("sex", "age_band"):
        assert sum(group["n"] for group in result["subgroups"][field_name]) == result["test_size"]
    by_band = {group["value"]: group for group in result["subgroups"]["age_band"]}
    assert set(by_band) == {"40-49", "50-59", "90+", "unknown"}
    females = [i for i, sex in enumerate(sexes) if sex == "female"]
    female = next(group for group in result["subgroups"]["sex"] if group["value"] == "female")
    assert female["n"] == len(females)
    assert female["accuracy"] == pytest.approx(
        accuracy_score([TRUTH[i] for i in females], [PREDICTED[i] for i in females])
    )
    assert {"f1_macro", "auroc_macro", "brier", "accuracy_ci"} <= set(female)


def test_a_test_label_the_model_never_learned_is_an_error_not_a_crash():
    truth = [*TRUTH[:-1], "D"]

    result = evaluate_stub(truth=truth)

    assert result["labels"] == ["A", "B", "C", "D"]
    assert result["confusion_matrix"]["matrix"][3] == [0, 1, 0, 0]  # the D row was predicted B
    assert result["accuracy"] == pytest.approx(accuracy_score(truth, PREDICTED))
    json.dumps(result, allow_nan=False)


def test_the_evaluation_is_plain_json_even_from_float32_probabilities():
    result = evaluate_stub()

    text = json.dumps(result, allow_nan=False)  # no default=: numpy types would raise here
    assert json.loads(text) == result


def test_latency_is_measured_over_single_row_calls():
    model = StubModel(CLASSES, PROBABILITIES)

    result = evaluate(model, stub_rows(TRUTH), numeric_features=[ID])

    latency = result["latency_ms"]
    assert latency["calls"] == LATENCY_CALLS >= 20
    assert 0 <= latency["median"] <= latency["p95"]
    assert model.batch_sizes == [10] + [1] * (LATENCY_CALLS + 1)  # the test set, a warm-up, the timed calls


def test_predict_rows_gives_paired_per_row_predictions():
    rows = stub_rows(TRUTH)

    predictions = predict_rows(StubModel(CLASSES, PROBABILITIES), rows, numeric_features=[ID])

    assert predictions.case_ids == [row["case_id"] for row in rows]
    assert predictions.y_true == TRUTH
    assert predictions.y_pred == PREDICTED
    assert predictions.classes == CLASSES
    assert predictions.probabilities.shape == (10, 3)
    assert predictions.probabilities.dtype == np.float64


def test_evaluating_no_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="no rows"):
        evaluate(StubModel(CLASSES, PROBABILITIES), [], numeric_features=[ID])


def test_plain_converts_numpy_values_and_drops_non_finite_numbers():
    value = {"a": np.float32(0.5), "b": np.int64(3), "c": [np.nan, np.inf], 4: np.array([1, 2]), "d": np.bool_(True)}

    assert plain(value) == {"a": 0.5, "b": 3, "c": [None, None], "4": [1, 2], "d": True}
    assert type(plain(np.float32(0.5))) is float


def test_evaluation_of_a_trained_pipeline_agrees_with_its_predictions():
    splits = synthetic_splits()
    result = train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())

    predictions = predict_rows(result.pipeline, splits["test"], numeric_features=result.numeric_features)

    assert result.evaluation["accuracy"] == pytest.approx(accuracy_score(predictions.y_true, predictions.y_pred))
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0)


# --- The numpy metrics against sklearn's, on larger sets with ties, gaps and subgroups ------------


def random_case(seed: int, size: int = 400) -> tuple[list[str], list[list[float]], list[str], list[str | None]]:
    """Truth, probabilities (rounded: many ties), sexes and bands for ``size`` rows, about 70% right."""
    rng = np.random.default_rng(seed)
    truth = [CLASSES[i] for i in rng.integers(0, 3, size)]
    probabilities = rng.dirichlet([1, 1, 1], size)
    for row, label in zip(probabilities, truth, strict=True):
        if rng.random() < 0.6:
            row[CLASSES.index(label)] += 2
    probabilities = (probabilities / probabilities.sum(axis=1, keepdims=True)).round(1)
    sexes = [("female", "male", "Female ")[i] for i in rng.integers(0, 3, size)]
    bands = [("30-39", "40-49", None, "90+")[i] for i in rng.integers(0, 4, size)]
    return truth, probabilities.tolist(), sexes, bands


def sklearn_metrics(truth: list[str], scores: np.ndarray) -> dict[str, Any]:
    predicted = [CLASSES[i] for i in np.argmax(scores, axis=1)]
    expected: dict[str, Any] = {"accuracy": accuracy_score(truth, predicted)}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average=average, zero_division=0)
        expected |= {f"precision_{average}": precision, f"recall_{average}": recall, f"f1_{average}": f1}
    present = [j for j, label in enumerate(CLASSES) if 0 < truth.count(label) < len(truth)]
    aurocs = [roc_auc_score([t == CLASSES[j] for t in truth], scores[:, j]) for j in present]
    expected["auroc_macro"] = float(np.mean(aurocs)) if aurocs else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the rounded probabilities do not sum to 1 exactly
        expected["brier"] = float(brier_score_loss(truth, scores, labels=CLASSES))
    return expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_metric_of_the_set_and_of_each_subgroup_is_sklearns(seed):
    truth, probabilities, sexes, bands = random_case(seed)
    scores = np.array(probabilities, dtype=np.float32).astype(np.float64)  # what the stub returns

    result = evaluate(
        StubModel(CLASSES, probabilities), stub_rows(truth, sexes=sexes, bands=bands), numeric_features=[ID]
    )

    for key, value in sklearn_metrics(truth, scores).items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    per_class = {row["label"]: row for row in result["per_class"]}
    for j, label in enumerate(CLASSES):
        assert per_class[label]["auroc"] == pytest.approx(roc_auc_score([t == label for t in truth], scores[:, j]))
    for field_name, values in (("sex", sexes), ("age_band", bands)):
        groups = result["subgroups"][field_name]
        assert [group["value"] for group in groups] == sorted({str(value or "unknown") for value in values})
        for group in groups:
            member = [i for i, value in enumerate(values) if str(value or "unknown") == group["value"]]
            assert group["n"] == len(member)
            expected = sklearn_metrics([truth[i] for i in member], scores[member])
            for key, value in expected.items():
                assert group[key] == pytest.approx(value, abs=1e-12), (field_name, group["value"], key)


def test_averages_follow_sklearn_when_a_label_is_only_true_or_only_predicted():
    truth = ["A", "A", "B", "B", "A", "B", "A", "B", "A", "B"]  # C only predicted
    truth_with_d = [*truth[:-1], "D"]  # D only true (the model does not know it)
    for labels in (truth, truth_with_d):
        result = evaluate_stub(truth=labels)

        for average in ("macro", "weighted"):
            precision, recall, f1, _ = precision_recall_fscore_support(
                labels, PREDICTED, average=average, zero_division=0
            )
            assert result[f"precision_{average}"] == pytest.approx(precision)
            assert result[f"recall_{average}"] == pytest.approx(recall)
            assert result[f"f1_{average}"] == pytest.approx(f1)
        assert result["f1_macro_ci"][0] <= result["f1_macro"] <= result["f1_macro_ci"][1]


def test_auroc_counts_a_tie_between_a_positive_and_a_negative_as_half():
    truth = ["A", "B", "A", "B", "C", "C"]
    probabilities = [[0.5, 0.5, 0.0]] * 4 + [[0.0, 0.0, 1.0]] * 2  # A and B rows all tie

    result = evaluate_stub(truth=truth, probabilities=probabilities)

    per_class = {row["label"]: row["auroc"] for row in result["per_class"]}
    assert per_class["A"] == pytest.approx(roc_auc_score([t == "A" for t in truth], [p[0] for p in probabilities]))
    assert per_class["C"] == 1.0


@pytest.mark.parametrize("algorithm", ["logistic_regression", "sgd"])
def test_predicting_from_columns_is_predicting_from_feature_dicts(algorithm):
    splits = synthetic_splits()
    result = train(splits, algorithm=algorithm, hyperparameters=FAST[algorithm], report=Recorder())
    expected = result.pipeline.predict_proba(feature_dicts(splits["test"], result.numeric_features))
    from_file = file_splits(splits)["test"]

    for rows in (splits["test"], from_file, columns_from_rows(splits["test"]), from_file.columns):
        predictions = predict_rows(result.pipeline, rows, numeric_features=result.numeric_features)

        assert predictions.probabilities.tobytes() == expected.tobytes()
        assert predictions.case_ids == [row["case_id"] for row in splits["test"]]
        assert predictions.y_true == [row["label"] for row in splits["test"]]
        assert all(type(case_id) is int for case_id in predictions.case_ids)


def test_a_model_that_is_not_our_pipeline_needs_row_dicts():
    with pytest.raises(TypeError, match="row dicts"):
        predict_rows(StubModel(CLASSES, PROBABILITIES), columns_from_rows(stub_rows(TRUTH)), numeric_features=[ID])


# --- Mutation-testing pins (`make mutation`): each checks a formula the tests above left loose ----


def expanded(confusion: np.ndarray) -> tuple[list[int], list[int]]:
    """The (truth, prediction) rows a confusion matrix counts (truth in rows)."""
    truth: list[int] = []
    predicted: list[int] = []
    for (i, j), count in np.ndenumerate(confusion):
        truth += [i] * int(count)
        predicted += [j] * int(count)
    return truth, predicted


# Label 2 occurs nowhere in the first matrix; labels 1 and 2 once each in the second (2TP + FP + FN
# of 1); the third is the stub's.
CONFUSIONS = np.array(
    [
        [[3, 1, 0], [2, 4, 0], [0, 0, 0]],
        [[5, 1, 0], [0, 0, 0], [1, 0, 0]],
        confusion_matrix(TRUTH, PREDICTED, labels=CLASSES),
    ]
)


def test_accuracy_and_macro_f1_of_a_stack_of_confusion_matrices_are_sklearns():
    expected = []
    for confusion in CONFUSIONS:
        truth, predicted = expanded(confusion)
        expected.append(
            (accuracy_score(truth, predicted), f1_score(truth, predicted, average="macro", zero_division=0))
        )

    accuracy, macro_f1 = evaluation._accuracy_and_macro_f1(CONFUSIONS)  # (resamples, L, L), as the bootstrap
    assert accuracy.tolist() == pytest.approx([a for a, _ in expected], abs=1e-12)
    assert macro_f1.tolist() == pytest.approx([f for _, f in expected], abs=1e-12)
    for confusion, (a, f) in zip(CONFUSIONS, expected, strict=True):  # one matrix (L, L)
        one_accuracy, one_f1 = evaluation._accuracy_and_macro_f1(confusion)
        assert float(one_accuracy) == pytest.approx(a, abs=1e-12)
        assert float(one_f1) == pytest.approx(f, abs=1e-12)


def test_averages_leave_out_a_model_label_neither_true_nor_predicted_and_count_a_single_prediction():
    truth = ["A", "A", "A", "B", "B", "A"]
    probabilities = [[0.9, 0.1, 0.0]] * 3 + [[0.1, 0.9, 0.0], [0.6, 0.4, 0.0], [0.7, 0.3, 0.0]]  # B predicted once
    predicted = ["A", "A", "A", "B", "A", "A"]

    result = evaluate_stub(truth=truth, probabilities=probabilities)

    for average in ("macro", "weighted"):  # sklearn: over the labels in the truth or the predictions (no C)
        precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average=average, zero_division=0)
        assert result[f"precision_{average}"] == pytest.approx(precision, abs=1e-12)
        assert result[f"recall_{average}"] == pytest.approx(recall, abs=1e-12)
        assert result[f"f1_{average}"] == pytest.approx(f1, abs=1e-12)
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, labels=CLASSES, zero_division=0)
    assert [row["precision"] for row in result["per_class"]] == pytest.approx(precision.tolist(), abs=1e-12)
    assert result["per_class"][1]["precision"] == 1.0  # one prediction of B, right: 1 / 1


def test_predict_rows_of_no_rows_predicts_nothing():
    predictions = predict_rows(StubModel(CLASSES, PROBABILITIES), [], numeric_features=[ID])

    assert predictions.y_pred == predictions.y_true == predictions.case_ids == []
    assert predictions.probabilities.shape == (0, 3)


def test_auroc_of_a_label_with_a_single_positive_is_defined():
    truth = ["A", "A", "B", "B", "A", "B", "A", "B", "A", "C"]  # one C
    result = evaluate_stub(truth=truth)

    per_class = {row["label"]: row["auroc"] for row in result["per_class"]}
    scores = np.array(PROBABILITIES, dtype=np.float32).astype(np.float64)
    assert per_class["C"] == pytest.approx(roc_auc_score([t == "C" for t in truth], scores[:, 2]), abs=1e-12)
    assert result["auroc_macro"] == pytest.approx(np.mean(list(per_class.values())), abs=1e-12)


def reference_macro_f1(confusion: np.ndarray) -> float:
    """Macro-F1 as the harmonic mean of precision and recall, over the labels in truth or predictions."""
    values = []
    for j in range(len(confusion)):
        true_count, predicted_count, hit = confusion[j, :].sum(), confusion[:, j].sum(), confusion[j, j]
        if true_count == 0 and predicted_count == 0:
            continue
        precision = hit / predicted_count if predicted_count else 0.0
        recall = hit / true_count if true_count else 0.0
        values.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(values))


def test_the_bootstrap_intervals_are_the_percentiles_of_multinomial_resamples():
    """The same draws as ``_bootstrap`` (its documented method), scored independently: exact bounds."""
    confusion = np.array([[200, 30, 20], [25, 150, 10], [15, 12, 90]])
    n = int(confusion.sum())
    cells = np.random.default_rng(7).multinomial(n, confusion.ravel() / n, size=1000).reshape(1000, 3, 3)
    accuracies = [np.trace(cell) / n for cell in cells]
    f1s = [reference_macro_f1(cell) for cell in cells]

    accuracy_ci, f1_ci = evaluation._bootstrap(confusion, resamples=1000, seed=7)

    assert accuracy_ci == pytest.approx(np.percentile(accuracies, [2.5, 97.5]).tolist(), abs=1e-12)
    assert f1_ci == pytest.approx(np.percentile(f1s, [2.5, 97.5]).tolist(), abs=1e-12)


def reference_ece(confidence: np.ndarray, right: np.ndarray) -> float:
    """Guo et al.'s ECE written out: 10 bins [b/10, (b+1)/10) (1.0 in the last), |accuracy - confidence|."""
    n = len(confidence)
    total = 0.0
    for b in range(10):
        members = [i for i in range(n) if min(math.floor(confidence[i] * 10), 9) == b]
        if members:
            total += len(members) / n * abs(np.mean(right[members]) - np.mean(confidence[members]))
    return total


def test_the_ece_interval_is_the_percentile_interval_of_resampled_rows():
    """Rows resampled with the documented draws (seed 0, 1,000 resamples), each resample's ECE by hand."""
    truth, probabilities, _, _ = random_case(4, size=60)
    scores = np.array(probabilities, dtype=np.float32).astype(np.float64)
    confidence = scores.max(axis=1)
    right = (scores.argmax(axis=1) == np.array([CLASSES.index(t) for t in truth])).astype(np.float64)
    drawn = np.random.default_rng(0).integers(0, len(truth), size=(1000, len(truth)))
    resampled = [reference_ece(confidence[rows], right[rows]) for rows in drawn]

    result = evaluate_stub(truth=truth, probabilities=probabilities)

    assert result["ece"] == pytest.approx(reference_ece(confidence, right), abs=1e-12)
    assert result["ece_ci"] == pytest.approx(np.percentile(resampled, [2.5, 97.5]).tolist(), abs=1e-12)
    assert result["calibration"]["method"] == evaluation.CALIBRATION_METHOD


def test_a_model_with_non_finite_probabilities_is_refused():
    probabilities = [list(row) for row in PROBABILITIES]
    probabilities[3][1] = float("nan")

    with pytest.raises(ValueError, match=r"^The model's probabilities are not all finite\.$"):
        evaluate_stub(probabilities=probabilities)


def test_predict_rows_of_unlabelled_rows_gives_an_empty_truth():
    rows = stub_rows(TRUTH)
    for row in rows[:3]:
        del row["label"]
    rows[3]["label"] = None

    predictions = predict_rows(StubModel(CLASSES, PROBABILITIES), rows, numeric_features=[ID])

    assert predictions.y_true == ["", "", "", "", *TRUTH[4:]]
    assert predictions.y_pred == PREDICTED


def reference_intervals(truth: list[str], scores: np.ndarray, *, resamples: int, seed: int) -> dict[str, list[float]]:
    """The accuracy, macro-F1 and ECE intervals with ``evaluate``'s documented draws, scored by hand."""
    true_index = np.array([CLASSES.index(t) for t in truth])
    confusion = confusion_matrix(true_index, scores.argmax(axis=1), labels=range(len(CLASSES)))
    n = len(truth)
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, confusion.ravel() / n, size=resamples).reshape(resamples, *confusion.shape)
    confidence = scores.max(axis=1)
    right = (scores.argmax(axis=1) == true_index).astype(np.float64)
    drawn = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    bounds = [2.5, 97.5]
    return {
        "accuracy_ci": np.percentile([np.trace(cell) / n for cell in cells], bounds).tolist(),
        "f1_macro_ci": np.percentile([reference_macro_f1(cell) for cell in cells], bounds).tolist(),
        "ece_ci": np.percentile([reference_ece(confidence[rows], right[rows]) for rows in drawn], bounds).tolist(),
    }


def test_evaluate_passes_its_resamples_and_seed_to_every_interval():
    truth, probabilities, _, _ = random_case(6, size=50)
    scores = np.array(probabilities, dtype=np.float32).astype(np.float64)

    result = evaluate(StubModel(CLASSES, probabilities), stub_rows(truth), numeric_features=[ID], resamples=300, seed=5)

    for key, expected in reference_intervals(truth, scores, resamples=300, seed=5).items():
        assert result[key] == pytest.approx(expected, abs=1e-12), key
    assert result["bootstrap"] == {"resamples": 300, "seed": 5, "confidence": 0.95, "method": "percentile"}


def test_the_ece_interval_does_not_depend_on_how_the_resamples_are_chunked(monkeypatch):
    truth, probabilities, _, _ = random_case(4, size=60)
    scores = np.array(probabilities, dtype=np.float32).astype(np.float64)
    true_index = np.array([CLASSES.index(t) for t in truth])
    whole = evaluation.calibration(true_index, scores, resamples=250, seed=2)

    monkeypatch.setattr(evaluation, "_CHUNK_CELLS", 60 * 70)  # chunks of 70 resamples, the last of 40
    chunked = evaluation.calibration(true_index, scores, resamples=250, seed=2)

    assert chunked == whole
    assert whole["ece_ci"] == pytest.approx(reference_intervals(truth, scores, resamples=250, seed=2)["ece_ci"])


def test_the_ece_of_a_single_row_is_its_gap():
    result = evaluation.calibration(np.array([1]), np.array([[0.7, 0.3]]), resamples=20)

    assert result["ece"] == pytest.approx(0.7)  # predicted the first label at 0.7, wrong
    assert result["ece_ci"] == pytest.approx([0.7, 0.7])
    assert [b["count"] for b in result["bins"]] == [0] * 7 + [1, 0, 0]


def test_evaluating_no_rows_says_so():
    with pytest.raises(ValueError, match=r"^There are no rows to evaluate on\.$"):
        evaluate(StubModel(CLASSES, PROBABILITIES), [], numeric_features=[ID])


def test_plain_turns_numpy_strings_into_str():
    assert plain([np.str_("J18.9")]) == ["J18.9"]
    assert type(plain(np.str_("J18.9"))) is str


def test_a_file_split_whose_label_dictionary_holds_a_label_it_does_not_use_is_evaluated():
    """A dataset file codes the labels of every split in one dictionary: the test split's can hold a
    label only the validation split has, which the model never learned and no test row carries."""
    splits = synthetic_splits()
    splits["validation"][0]["label"] = "ONLY-VALIDATION"
    result = train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())
    test_split = file_splits(splits)["test"]
    assert "ONLY-VALIDATION" in columns_of(test_split).labels.values

    evaluated = evaluate(result.pipeline, test_split, numeric_features=result.numeric_features, latency_calls=1)

    predictions = predict_rows(result.pipeline, splits["test"], numeric_features=result.numeric_features)
    assert "ONLY-VALIDATION" not in evaluated["labels"]
    assert evaluated["accuracy"] == pytest.approx(accuracy_score(predictions.y_true, predictions.y_pred))


def test_a_subgroups_intervals_use_the_evaluations_resamples_and_seed():
    truth, probabilities, _, _ = random_case(6, size=50)
    scores = np.array(probabilities, dtype=np.float32).astype(np.float64)
    sexes = ["female" if i % 3 else "male" for i in range(50)]

    result = evaluate(
        StubModel(CLASSES, probabilities), stub_rows(truth, sexes=sexes), numeric_features=[ID], resamples=300, seed=5
    )

    female = next(group for group in result["subgroups"]["sex"] if group["value"] == "female")
    members = [i for i, sex in enumerate(sexes) if sex == "female"]
    expected = reference_intervals([truth[i] for i in members], scores[members], resamples=300, seed=5)
    assert female["accuracy_ci"] == pytest.approx(expected["accuracy_ci"], abs=1e-12)
    assert female["f1_macro_ci"] == pytest.approx(expected["f1_macro_ci"], abs=1e-12)


def test_pipeline_steps_set_to_passthrough_are_skipped_when_predicting_from_columns():
    splits = synthetic_splits()
    result = train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())
    first, *middle, last = result.pipeline.steps
    pipeline = Pipeline([first, ("skipped", "passthrough"), *middle, last])
    expected = pipeline.predict_proba(feature_dicts(splits["test"], result.numeric_features))

    predictions = predict_rows(pipeline, splits["test"], numeric_features=result.numeric_features)

    np.testing.assert_allclose(predictions.probabilities, expected, rtol=0, atol=1e-12)


def test_columns_for_a_model_that_is_not_our_pipeline_are_refused_with_a_sentence():
    message = r"^Only a pipeline led by a dense DictVectorizer predicts from columns; pass row dicts\.$"
    with pytest.raises(TypeError, match=message):
        predict_rows(StubModel(CLASSES, PROBABILITIES), columns_from_rows(stub_rows(TRUTH)), numeric_features=[ID])
