"""The trainer: features, the four algorithms, progress reports, cancellation, reproducibility."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from cases.deid import deidentify
from cases.interchange import parse_record
from tests.cases.factories import record_dict
from training import trainer
from training.algorithms import SPECS
from training.dataset_format import row_from_deidentified
from training.features import feature_dicts, features, numeric_feature_names, row_from_record
from training.models import LeaseLost
from training.trainer import TrainingError, TrainingProgress, build_classifier, build_preprocessing, train

ALGORITHMS = list(SPECS)
EPOCH_ALGORITHMS = ["sgd", "mlp"]
SPECS_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {key: spec[1] for key, spec in table.items()} for name, table in SPECS.items()
}
LABELS = ("J18.9", "J45.909", "J06.9")
# Small and quick; the defaults (200 boosting rounds, 10 epochs) are for real data.
FAST: dict[str, dict[str, Any]] = {
    "logistic_regression": {},
    "sgd": {"epochs": 5, "batch_size": 16},
    "mlp": {"epochs": 5, "batch_size": 16, "hidden_layers": [16], "learning_rate": 0.01},
    "gradient_boosting": {"max_iter": 20},
}


def synthetic_row(index: int, label: str, rng: np.random.Generator, *, split: str = "train") -> dict[str, Any]:
    """A dataset row (``training.dataset_format`` shape) whose findings give its label away."""
    fever = label == "J18.9"
    wheeze = label == "J45.909"
    age = int(rng.integers(18, 96))
    findings = {
        "temperature_c": 37.0 + (1.6 if fever else 0.0) + rng.normal(0, 0.3),
        "spo2": 97.0 - (6.0 if wheeze else 0.0) + rng.normal(0, 1.0),
        "heart_rate": 80.0 + rng.normal(0, 8.0),
    }
    if index % 9 == 4:
        del findings["heart_rate"]  # some findings are missing, as in real records
    symptoms = ["cough"] + (["fever"] if fever else []) + (["wheeze"] if wheeze else ["sore throat"])
    return {
        "case_id": index,
        "split": split,
        "patient_pseudonym": f"patient-{index}",
        "label": label,
        "label_text": label,
        "age": 90 if age > 89 else age,
        "age_band": "90+" if age > 89 else f"{age // 10 * 10}-{age // 10 * 10 + 9}",
        "sex": ("female", "male")[index % 2],
        "encounter_year": 2025,
        # As Parquet gives a map back: a list of (key, value) pairs.
        "findings": list(findings.items()),
        "symptoms": symptoms,
    }


def synthetic_splits(
    sizes: tuple[int, int, int] = (150, 45, 60), *, labels: tuple[str, ...] = LABELS, seed: int = 7
) -> dict[str, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    splits: dict[str, list[dict[str, Any]]] = {}
    index = 0
    for split, size in zip(("train", "validation", "test"), sizes, strict=True):
        rows = []
        for i in range(size):
            rows.append(synthetic_row(index, labels[i % len(labels)], rng, split=split))
            index += 1
        splits[split] = rows
    return splits


class Recorder:
    """A ``report`` callback that keeps every report (and can raise, like a cancelled job)."""

    def __init__(self, raise_when: Callable[[TrainingProgress], bool] | None = None) -> None:
        self.reports: list[TrainingProgress] = []
        self.raise_when = raise_when

    def __call__(self, progress: TrainingProgress) -> None:
        self.reports.append(progress)
        if self.raise_when is not None and self.raise_when(progress):
            raise LeaseLost("The job was cancelled.")

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return [report.epoch for report in self.reports if report.epoch is not None]

    @property
    def stages(self) -> list[str]:
        return [report.stage for report in self.reports]


@pytest.fixture
def storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


# --- Features ------------------------------------------------------------------------------------


def test_features_write_nan_for_missing_numbers_and_one_hot_categories():
    row = synthetic_row(4, "J45.909", np.random.default_rng(0))  # index 4: no heart rate
    names = ["age", "finding:heart_rate", "finding:spo2", "finding:temperature_c"]

    result = features(row, names)

    assert math.isnan(result["finding:heart_rate"])
    assert result["finding:spo2"] == dict(row["findings"])["spo2"]
    assert result["age"] == float(row["age"])
    assert result["symptom:wheeze"] == 1.0
    assert result["symptom:cough"] == 1.0
    assert result["sex=female"] == 1.0
    assert result[f"age_band={row['age_band']}"] == 1.0
    assert "sex=male" not in result


def test_features_drop_findings_unknown_to_the_training_split():
    row = synthetic_row(0, "J18.9", np.random.default_rng(0))

    result = features(row, ["age", "finding:spo2"])

    assert "finding:temperature_c" not in result
    assert "finding:spo2" in result


def test_features_use_90_for_the_oldest_band_and_nan_for_an_unknown_age():
    assert features({"age": "90+", "age_band": "90+"}, ["age"])["age"] == 90.0
    no_age = features({"age": None, "age_band": None, "sex": None}, ["age"])
    assert math.isnan(no_age["age"])
    assert no_age["age_band=unknown"] == 1.0
    assert no_age["sex=unknown"] == 1.0


def test_numeric_feature_names_are_age_and_every_training_finding_sorted():
    rows: list[dict[str, Any]] = [{"findings": [("wbc", 1.0)]}, {"findings": {"spo2": 95.0, "heart_rate": 80.0}}]

    assert numeric_feature_names(rows) == ["age", "finding:heart_rate", "finding:spo2", "finding:wbc"]


def test_a_deidentified_record_featurises_like_its_dataset_row(settings):
    record = deidentify(parse_record(record_dict()), key=settings.PSEUDONYM_KEY)
    names = ["age", "finding:spo2", "finding:temperature_c", "finding:wbc", "finding:lactate"]

    served = features(row_from_record(record), names)
    stored = features(row_from_deidentified(1, "train", record), names)

    assert json.dumps(served, sort_keys=True) == json.dumps(stored, sort_keys=True)  # NaN-safe equality
    assert "note" not in row_from_record(record)
    assert row_from_record(record)["label"] == record["diagnosis"]["code"]


def test_row_from_record_accepts_a_record_without_diagnosis():
    row = row_from_record({"age": "90+", "sex": "female", "findings": {"spo2": 90}, "symptoms": ["cough"]})

    assert row["label"] is None
    assert features(row, ["age", "finding:spo2"])["age"] == 90.0


# --- Training ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_learns_separable_data_well_above_chance(algorithm):
    result = train(synthetic_splits(), algorithm=algorithm, hyperparameters=FAST[algorithm], report=Recorder())

    assert result.metrics["accuracy"] >= 0.85  # chance is 1/3
    assert result.classes == sorted(LABELS)
    assert result.evaluation["test_size"] == 60
    assert result.metrics["train_size"] == 150
    assert result.artifact_path is None  # nothing written without an artifact name


@pytest.mark.parametrize("algorithm", EPOCH_ALGORITHMS)
def test_epoch_algorithms_report_every_epoch_in_order_with_finite_losses(algorithm):
    recorder = Recorder()
    params = {**FAST[algorithm], "epochs": 4}

    result = train(synthetic_splits(), algorithm=algorithm, hyperparameters=params, report=recorder)

    epoch_reports = [report for report in recorder.reports if report.epoch is not None]
    assert [report.stage for report in epoch_reports] == ["Epoch 1/4", "Epoch 2/4", "Epoch 3/4", "Epoch 4/4"]
    assert [record["epoch"] for record in recorder.epochs] == [1, 2, 3, 4]
    assert all(record["epochs"] == 4 for record in recorder.epochs)
    for record in recorder.epochs:
        assert math.isfinite(record["train_loss"])
        assert math.isfinite(record["val_loss"])
        assert 0.0 <= record["val_accuracy"] <= 1.0
    assert result.history == recorder.epochs
    progress = [report.progress for report in recorder.reports]
    assert progress == sorted(progress)
    assert all(0 <= value <= 100 for value in progress)
    assert epoch_reports[-1].metrics == {
        key: recorder.epochs[-1][key] for key in ("train_loss", "val_loss", "val_accuracy")
    }


@pytest.mark.parametrize("algorithm", EPOCH_ALGORITHMS)
def test_the_training_loss_falls_over_epochs(algorithm):
    recorder = Recorder()

    train(synthetic_splits(), algorithm=algorithm, hyperparameters={**FAST[algorithm], "epochs": 6}, report=recorder)

    assert recorder.epochs[-1]["train_loss"] < recorder.epochs[0]["train_loss"]


@pytest.mark.parametrize("algorithm", ["logistic_regression", "gradient_boosting"])
def test_other_algorithms_report_stages_in_order(algorithm, storage):
    recorder = Recorder()

    result = train(
        synthetic_splits(),
        algorithm=algorithm,
        hyperparameters=FAST[algorithm],
        report=recorder,
        artifact_name="stages",
    )

    stages = list(dict.fromkeys(recorder.stages))  # distinct, in first-seen order
    assert stages == ["Preparing features", "Fitting", "Evaluating", "Saving"]
    assert recorder.epochs == []
    assert result.history == []
    assert result.artifact_path == "models/stages.skops"
    assert (storage / "models" / "stages.skops").exists()


@pytest.mark.parametrize("algorithm", EPOCH_ALGORITHMS)
def test_a_report_that_raises_at_epoch_2_stops_training_and_propagates(algorithm, storage):
    recorder = Recorder(raise_when=lambda report: report.epoch is not None and report.epoch["epoch"] == 2)

    with pytest.raises(LeaseLost):
        train(
            synthetic_splits(),
            algorithm=algorithm,
            hyperparameters={**FAST[algorithm], "epochs": 5},
            report=recorder,
            artifact_name="cancelled",
        )

    assert [record["epoch"] for record in recorder.epochs] == [1, 2]
    assert "Epoch 3/5" not in recorder.stages
    assert "Evaluating" not in recorder.stages
    assert not (storage / "models").exists()  # nothing saved after the cancel


def test_a_report_that_raises_while_boosting_stops_before_evaluation():
    fitting_reports = []

    def report(progress: TrainingProgress) -> None:
        if progress.stage == "Fitting":
            fitting_reports.append(progress)
            if len(fitting_reports) == 2:  # the first report from inside the fit
                raise LeaseLost("The job was cancelled.")
        assert progress.stage != "Evaluating"

    with pytest.raises(LeaseLost):
        train(
            synthetic_splits(),
            algorithm="gradient_boosting",
            hyperparameters={"max_iter": 50},
            report=report,
            progress_interval=0.0,
        )

    assert fitting_reports[1].progress < trainer.PROGRESS_EVALUATING


@pytest.mark.parametrize("algorithm", EPOCH_ALGORITHMS)
def test_progress_is_reported_within_an_epoch(algorithm, monkeypatch):
    # Several partial_fit calls per epoch, and every in-between report let through.
    monkeypatch.setattr(trainer, "ROWS_PER_CALL", 32)
    recorder = Recorder()

    train(
        synthetic_splits(),
        algorithm=algorithm,
        hyperparameters={**FAST[algorithm], "epochs": 2},
        report=recorder,
        progress_interval=0.0,
    )

    within = [report for report in recorder.reports if report.stage == "Epoch 1/2" and report.epoch is None]
    assert len(within) >= 3
    assert len(recorder.epochs) == 2  # in-between reports are not epochs


@pytest.mark.filterwarnings("ignore:Got `batch_size`:UserWarning")  # the epoch's last, short batch
@pytest.mark.parametrize("algorithm", EPOCH_ALGORITHMS)
def test_batched_partial_fit_calls_equal_one_call_per_mini_batch(algorithm, monkeypatch):
    """The trainer hands partial_fit several batches at once; the model must be the same."""
    monkeypatch.setattr(trainer, "ROWS_PER_CALL", 64)
    splits = synthetic_splits()
    params = {**SPECS_DEFAULTS[algorithm], **FAST[algorithm], "epochs": 3, "seed": 5}
    result = train(splits, algorithm=algorithm, hyperparameters=params, report=Recorder())

    names = numeric_feature_names(splits["train"])
    X = build_preprocessing().fit_transform(feature_dicts(splits["train"], names))
    y = np.array([row["label"] for row in splits["train"]], dtype=object)
    classes = np.array(sorted(set(y)), dtype=object)
    reference = build_classifier(algorithm, params)
    rng = np.random.default_rng(params["seed"])
    for _ in range(params["epochs"]):
        order = rng.permutation(len(X))
        for start in range(0, len(X), params["batch_size"]):
            batch = order[start : start + params["batch_size"]]
            reference.partial_fit(X[batch], y[batch], classes=classes)

    fitted = result.pipeline.named_steps["classifier"]
    np.testing.assert_allclose(fitted.predict_proba(X), reference.predict_proba(X), rtol=1e-10, atol=1e-12)


def test_missing_findings_are_imputed_with_the_training_median():
    splits = synthetic_splits()
    result = train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())
    heart_rates = [
        dict(row["findings"])["heart_rate"] for row in splits["train"] if "heart_rate" in dict(row["findings"])
    ]
    assert len(heart_rates) < len(splits["train"])  # the fixture does have gaps

    row = dict(splits["test"][0])
    without = {**row, "findings": [(key, value) for key, value in row["findings"] if key != "heart_rate"]}
    with_median = {**without, "findings": [*without["findings"], ("heart_rate", float(np.median(heart_rates)))]}
    preprocessing = result.pipeline[:-1]
    imputed, explicit = preprocessing.transform(feature_dicts([without, with_median], result.numeric_features))

    np.testing.assert_allclose(imputed, explicit)
    assert result.pipeline.predict(feature_dicts([without], result.numeric_features))[0] in LABELS


def test_a_finding_missing_from_every_training_row_still_gets_a_column():
    splits = synthetic_splits()
    splits["train"][0] = {
        **splits["train"][0],
        "findings": [*splits["train"][0]["findings"], ("lactate", float("nan"))],
    }

    result = train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())

    assert "finding:lactate" in result.numeric_features
    assert "finding:lactate" in result.pipeline.named_steps["vectorizer"].feature_names_
    assert result.metrics["accuracy"] >= 0.85


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_same_seed_gives_the_same_model(algorithm):
    splits = synthetic_splits()
    params = {**FAST[algorithm], "seed": 11}

    first = train(splits, algorithm=algorithm, hyperparameters=params, report=Recorder())
    second = train(splits, algorithm=algorithm, hyperparameters=params, report=Recorder())

    X = feature_dicts(splits["test"], first.numeric_features)
    np.testing.assert_array_equal(first.pipeline.predict_proba(X), second.pipeline.predict_proba(X))
    assert first.history == second.history
    assert {k: v for k, v in first.evaluation.items() if k != "latency_ms"} == {
        k: v for k, v in second.evaluation.items() if k != "latency_ms"
    }


@pytest.mark.parametrize("algorithm", EPOCH_ALGORITHMS)
def test_another_seed_gives_another_model(algorithm):
    splits = synthetic_splits()

    first = train(splits, algorithm=algorithm, hyperparameters={**FAST[algorithm], "seed": 1}, report=Recorder())
    second = train(splits, algorithm=algorithm, hyperparameters={**FAST[algorithm], "seed": 2}, report=Recorder())

    assert first.history != second.history


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_everything_the_trainer_returns_or_reports_is_plain_json(algorithm):
    recorder = Recorder()

    result = train(synthetic_splits(), algorithm=algorithm, hyperparameters=FAST[algorithm], report=recorder)

    for value in (result.metrics, result.history, result.evaluation, result.hyperparameters, result.classes):
        json.dumps(value, allow_nan=False)
    for report in recorder.reports:
        json.dumps({"progress": report.progress, "stage": report.stage, "epoch": report.epoch, "m": report.metrics})
        assert type(report.progress) is float


def test_an_empty_validation_split_gives_no_validation_metrics():
    splits = synthetic_splits()
    splits["validation"] = []
    recorder = Recorder()

    result = train(splits, algorithm="sgd", hyperparameters=FAST["sgd"], report=recorder)

    assert recorder.epochs[0]["val_loss"] is None
    assert recorder.epochs[0]["val_accuracy"] is None
    assert result.metrics["validation_size"] == 0


def test_a_validation_label_unknown_to_the_model_counts_as_an_error():
    splits = synthetic_splits()
    splits["validation"][0] = {**splits["validation"][0], "label": "Z99"}
    recorder = Recorder()

    train(splits, algorithm="sgd", hyperparameters=FAST["sgd"], report=recorder)

    assert recorder.epochs[-1]["val_accuracy"] < 1.0
    assert math.isfinite(recorder.epochs[-1]["val_loss"])


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda s: s.update(train=[]), "empty_split"),
        (lambda s: s.update(test=[]), "empty_split"),
        (lambda s: s.update(train=[{**row, "label": "J18.9"} for row in s["train"]]), "single_label"),
    ],
    ids=["empty-train", "empty-test", "single-label"],
)
def test_untrainable_splits_fail_with_a_clear_error(change, code):
    splits = synthetic_splits()
    change(splits)

    with pytest.raises(TrainingError) as caught:
        train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())

    assert caught.value.code == code


def test_a_non_finite_loss_fails_training_clearly():
    with pytest.raises(TrainingError, match="diverged"):
        trainer._check_finite(float("inf"), "epoch 3")
    trainer._check_finite(None, "epoch 1")  # no validation rows: nothing to check


def test_native_threads_follow_the_setting(settings, monkeypatch):
    seen = []
    real = trainer.threadpool_limits

    def spy(*, limits: int) -> Any:
        seen.append(limits)
        return real(limits=limits)

    monkeypatch.setattr(trainer, "threadpool_limits", spy)
    settings.TRAINING_THREADS = 2

    train(synthetic_splits(), algorithm="logistic_regression", hyperparameters={}, report=Recorder())
    train(synthetic_splits(), algorithm="logistic_regression", hyperparameters={}, report=Recorder(), threads=1)

    assert seen == [2, 1]


# --- Real data: Breast Cancer Wisconsin ----------------------------------------------------------


def breast_cancer_splits(seed: int = 2026) -> dict[str, list[dict[str, Any]]]:
    """One case per patient, 569 patients, a random patient-disjoint 60/20/20 split."""
    data = load_breast_cancer()
    keys = [name.replace(" ", "_") for name in data.feature_names]
    order = np.random.default_rng(seed).permutation(len(data.target))
    cut_train, cut_validation = int(0.6 * len(order)), int(0.8 * len(order))
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for position, index in enumerate(order):
        split = "train" if position < cut_train else "validation" if position < cut_validation else "test"
        splits[split].append(
            {
                "case_id": int(index),
                "split": split,
                "patient_pseudonym": f"bcw-{index}",
                "label": str(data.target_names[data.target[index]]),
                "age": None,
                "age_band": None,
                "sex": "female",
                "findings": [(key, float(value)) for key, value in zip(keys, data.data[index], strict=True)],
                "symptoms": [],
            }
        )
    return splits


def test_logistic_regression_reaches_093_on_breast_cancer_wisconsin():
    splits = breast_cancer_splits()
    patients = [{row["patient_pseudonym"] for row in rows} for rows in splits.values()]
    assert not patients[0] & patients[1]
    assert not patients[0] & patients[2]
    assert not patients[1] & patients[2]

    result = train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())

    assert result.metrics["accuracy"] >= 0.93
    assert result.evaluation["test_size"] == len(splits["test"])
    assert result.evaluation["auroc_macro"] > 0.95
