"""The trainer: features, the four algorithms, progress reports, cancellation, reproducibility."""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.feature_extraction import DictVectorizer
from sklearn.impute import SimpleImputer

from cases.deid.records import deidentify
from cases.interchange import parse_record
from cases.rows import ModelInputs, row_from_record
from tests.cases.factories import record_dict
from training import trainer
from training.algorithms import SPECS
from training.dataset_format import SCHEMA, DatasetFileChanged, read_rows_by_split
from training.features import (
    columns_from_rows,
    feature_dicts,
    feature_matrix,
    features,
    fit_vectorizer,
    numeric_feature_names,
)
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


class _StoredFile:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def open(self, mode: str = "rb") -> io.BytesIO:
        return io.BytesIO(self.data)


@dataclass
class FileSnapshot:
    """What ``read_rows_by_split`` reads of a snapshot: its file, recorded sha256 and id."""

    file: _StoredFile
    file_sha256: str
    pk: int = 1


def parquet_snapshot(rows: list[dict[str, Any]], *, row_group_size: int = 7) -> FileSnapshot:
    """Rows written as a dataset file (``SCHEMA``, several row groups, as the builder writes)."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), buffer, row_group_size=row_group_size)
    data = buffer.getvalue()
    return FileSnapshot(_StoredFile(data), hashlib.sha256(data).hexdigest())


def file_splits(splits: dict[str, list[dict[str, Any]]], **kwargs: Any) -> dict[str, Any]:
    """``splits`` written to a dataset file and read back the way a worker reads it."""
    return read_rows_by_split(parquet_snapshot([row for rows in splits.values() for row in rows], **kwargs))


def edge_row(index: int, split: str, **fields: Any) -> dict[str, Any]:
    """A file-shaped row; ``fields`` override the plain defaults."""
    row = {
        "case_id": index,
        "split": split,
        "patient_pseudonym": f"edge-{index}",
        "label": ("J18.9", "J45.909")[index % 2],
        "label_text": "",
        "age": 40 + index,
        "age_band": "40-49",
        "sex": "female",
        "encounter_year": 2025,
        "findings": [("spo2", 95.0 - index), ("temperature_c", 37.0 + index / 10)],
        "symptoms": ["cough"],
    }
    return row | fields


def edge_splits() -> dict[str, list[dict[str, Any]]]:
    """Rows that exercise every normalisation ``features`` applies, storable in a dataset file."""
    train = [
        edge_row(0, "train"),
        edge_row(1, "train", findings=None, symptoms=None, sex=None, age_band=None, age=None),
        edge_row(2, "train", sex=" Female ", symptoms=[" Cough", "cough", "", "  ", None, "WHEEZE"]),
        edge_row(3, "train", sex="", findings=[("spo2", None), ("temperature_c", float("inf")), ("wbc", 0.0)]),
        edge_row(4, "train", findings=[("lactate", float("nan"))], age=90, age_band="90+"),
        edge_row(5, "train", symptoms=[], sex="male", age_band="50-59"),
        edge_row(6, "train", findings=[("spo2", float("-inf"))], symptoms=["fever", "cough"]),
    ]
    validation = [edge_row(7, "validation", sex="MALE", symptoms=["fever"])]
    test = [
        edge_row(8, "test", findings=[("crp", 12.0), ("spo2", 91.0)], symptoms=["rash", "cough"]),
        edge_row(9, "test", age_band="10-19", sex="other", findings=None),
        edge_row(10, "test", symptoms=[None], age=None, age_band=None),
    ]
    return {"train": train, "validation": validation, "test": test}


def assert_same_matrix(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit for bit, NaN where NaN (``assert_array_equal`` would also pass -0.0 for 0.0)."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    assert actual.tobytes() == np.where(np.isnan(expected), actual, expected).tobytes()


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
    stored = features(row_from_record(record, case_id=1, split="train"), names)

    assert json.dumps(served, sort_keys=True) == json.dumps(stored, sort_keys=True)  # NaN-safe equality
    assert "note" not in row_from_record(record)
    assert row_from_record(record)["label"] == record["diagnosis"]["code"]


def test_row_from_record_accepts_a_record_without_diagnosis():
    row = row_from_record({"age": "90+", "sex": "female", "findings": {"spo2": 90}, "symptoms": ["cough"]})

    assert row["label"] is None
    assert features(row, ["age", "finding:spo2"])["age"] == 90.0


# --- Columns: the whole-split path equals the per-row definition -------------------------------


def test_the_feature_matrix_is_what_the_vectorizer_makes_of_the_feature_dicts():
    splits = edge_splits()
    # Values only row dicts can carry (a request's record): text, booleans, "90+", other key types.
    splits["train"] += [
        {"label": "J18.9", "age": "90+", "sex": "Male", "findings": {"spo2": "96.5", "heart_rate": True}},
        {"label": "J45.909", "age": True, "findings": {"spo2": "n/a", 7: 1.0}, "symptoms": ("cough", 3)},
    ]
    splits["test"] += [{"label": "J06.9", "age": "unknown", "findings": {"heart_rate": 80, "spo2": None}}]
    names = numeric_feature_names(splits["train"])
    reference = DictVectorizer(sparse=False).fit(feature_dicts(splits["train"], names))
    columns = columns_from_rows(splits["train"])

    vectorizer = fit_vectorizer(DictVectorizer(sparse=False), columns, names)

    assert columns.numeric_feature_names() == names
    assert vectorizer.feature_names_ == reference.feature_names_
    assert vectorizer.vocabulary_ == reference.vocabulary_
    for rows in splits.values():
        expected = reference.transform(feature_dicts(rows, names))
        assert_same_matrix(feature_matrix(columns_from_rows(rows), vectorizer, names), expected)
    assert "symptom:none" in vectorizer.vocabulary_  # str(None), as features() writes it
    assert "symptom:rash" not in vectorizer.vocabulary_  # seen in the test split only


def test_a_dataset_file_decodes_to_the_columns_of_its_rows():
    splits = edge_splits()
    by_split = file_splits(splits, row_group_size=3)  # row groups with their own dictionaries
    names = numeric_feature_names(splits["train"])
    reference = DictVectorizer(sparse=False).fit(feature_dicts(splits["train"], names))
    vectorizer = fit_vectorizer(DictVectorizer(sparse=False), by_split["train"].columns, names)

    assert by_split["train"].columns.numeric_feature_names() == names
    assert vectorizer.vocabulary_ == reference.vocabulary_
    for name, rows in splits.items():
        columns = by_split[name].columns
        as_dicts = [row | {"findings": dict(row["findings"] or [])} for row in rows]
        assert json.dumps(list(by_split[name])) == json.dumps(as_dicts)  # NaN-safe equality
        assert_same_matrix(feature_matrix(columns, vectorizer, names), reference.transform(feature_dicts(rows, names)))
        assert columns.case_ids.tolist() == [row["case_id"] for row in rows]
        assert columns.label_strings().tolist() == [row["label"] for row in rows]
        assert columns.sex.mapped(columns.sex.values).tolist() == [str(row["sex"] or "unknown") for row in rows]


def test_a_finding_repeated_within_a_row_counts_its_last_value_as_a_dict_does():
    rows = [edge_row(0, "train", findings=[("spo2", 90.0), ("temperature_c", 38.0), ("spo2", 95.0)])]
    rows.append(edge_row(1, "train"))
    columns = file_splits({"train": rows})["train"].columns
    names = ["age", "finding:spo2", "finding:temperature_c"]
    vectorizer = fit_vectorizer(DictVectorizer(sparse=False), columns, names)

    matrix = feature_matrix(columns, vectorizer, names)

    assert matrix[0, vectorizer.vocabulary_["finding:spo2"]] == 95.0
    assert features(rows[0] | {"findings": dict(rows[0]["findings"])}, names)["finding:spo2"] == 95.0


def test_read_rows_by_split_makes_row_dicts_on_demand():
    rows = [edge_row(i, ("train", "test", "holdout")[i % 3]) for i in range(20)]

    by_split = read_rows_by_split(parquet_snapshot(rows, row_group_size=4))

    assert list(by_split) == ["train", "validation", "test", "holdout"]
    assert len(by_split["validation"]) == 0
    assert list(by_split["validation"]) == []
    train = [row | {"findings": dict(row["findings"])} for row in rows if row["split"] == "train"]
    assert len(by_split["train"]) == len(train)
    assert by_split["train"][0] == train[0]
    assert by_split["train"][-1] == train[-1]
    assert by_split["train"][2:5] == train[2:5]
    assert by_split["train"][::3] == train[::3]
    assert list(by_split["train"]) == train
    with pytest.raises(IndexError):
        by_split["train"][len(train)]


def test_a_dataset_file_that_changed_is_refused():
    snapshot = parquet_snapshot([edge_row(0, "train")])
    snapshot.file_sha256 = "0" * 64

    with pytest.raises(DatasetFileChanged):
        read_rows_by_split(snapshot)


def test_the_preprocessing_fitted_from_columns_is_the_pipeline_fitted_on_feature_dicts():
    splits = synthetic_splits((301, 45, 60))  # an odd count: the medians' middle value
    splits["train"][0] = {**splits["train"][0], "findings": [*splits["train"][0]["findings"], ("lactate", None)]}
    names = numeric_feature_names(splits["train"])
    reference = build_preprocessing()
    expected_train = reference.fit_transform(feature_dicts(splits["train"], names))
    preprocessing = build_preprocessing()

    X_train = trainer._fit_preprocessing(preprocessing, columns_from_rows(splits["train"]), names)
    X_validation = trainer._preprocess(preprocessing, columns_from_rows(splits["validation"]), names)

    assert_same_matrix(X_train, expected_train)
    assert_same_matrix(X_validation, reference.transform(feature_dicts(splits["validation"], names)))
    for (_, ours), (_, theirs) in zip(preprocessing.steps, reference.steps, strict=True):
        assert vars(ours).keys() == vars(theirs).keys()  # every fitted attribute, none missing
        for attribute, value in vars(theirs).items():
            if isinstance(value, np.ndarray):
                assert_same_matrix(np.atleast_1d(vars(ours)[attribute]), np.atleast_1d(value))
            elif isinstance(value, float) and math.isnan(value):
                assert math.isnan(vars(ours)[attribute]), attribute
            else:
                assert vars(ours)[attribute] == value, attribute
    assert preprocessing.named_steps["imputer"].statistics_[reference[0].vocabulary_["finding:lactate"]] == 0.0


@pytest.mark.parametrize("rows", [1, 2, 7, 8, 600, 601])
def test_the_column_medians_are_the_imputers_medians(rows):
    rng = np.random.default_rng(rows)
    X = np.column_stack(
        [
            rng.normal(size=rows).round(1),  # ties
            rng.integers(0, 2, rows).astype(float),  # a 0/1 column
            np.zeros(rows),
            np.ones(rows),
            np.full(rows, np.nan),  # never observed
            rng.integers(0, 3, rows).astype(float),
            rng.normal(size=rows),
        ]
    )
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 1:4] = np.nan_to_num(X[:, 1:4], nan=1.0)  # the 0/1 columns have no gaps
    binary = np.array([False, True, True, True, False, False, False])
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)

    expected = imputer.fit(X).statistics_
    for hint in (binary, None):
        medians = trainer._column_medians(X, binary=hint)
        fitted = trainer._fit_median_imputer(SimpleImputer(strategy="median", keep_empty_features=True), X, binary=hint)

        assert_same_matrix(medians[~np.isnan(medians)], expected[~np.isnan(medians)])
        assert np.isnan(medians[4])
        assert fitted.statistics_.tobytes() == expected.tobytes()
        assert_same_matrix(trainer._transform(fitted, X.copy()), imputer.transform(X))


def test_training_on_a_dataset_file_is_training_on_its_row_dicts():
    splits = synthetic_splits()
    from_file = file_splits(splits, row_group_size=50)
    for algorithm in ("logistic_regression", "sgd"):
        params = FAST[algorithm]

        expected = train(splits, algorithm=algorithm, hyperparameters=params, report=Recorder())
        result = train(from_file, algorithm=algorithm, hyperparameters=params, report=Recorder())

        X = feature_dicts(splits["test"], expected.numeric_features)
        assert result.numeric_features == expected.numeric_features
        assert result.pipeline.predict_proba(X).tobytes() == expected.pipeline.predict_proba(X).tobytes()
        assert result.history == expected.history
        assert result.metrics == expected.metrics
        assert {k: v for k, v in result.evaluation.items() if k != "latency_ms"} == {
            k: v for k, v in expected.evaluation.items() if k != "latency_ms"
        }


def test_the_trained_pipeline_takes_feature_dicts_and_predicts_as_it_was_fitted():
    splits = synthetic_splits()
    result = train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())
    preprocessing, classifier = result.pipeline[:-1], result.pipeline[-1]

    matrix = trainer._preprocess(preprocessing, columns_from_rows(splits["test"]), result.numeric_features)

    dicts = feature_dicts(splits["test"], result.numeric_features)
    assert_same_matrix(preprocessing.transform(dicts), matrix)
    assert result.pipeline.predict_proba(dicts).tobytes() == classifier.predict_proba(matrix).tobytes()


def test_a_model_is_trained_without_the_demographics_and_findings_its_inputs_leave_out():
    splits = synthetic_splits()
    no_demographics = ModelInputs(demographics=frozenset(), findings=frozenset({"temperature_c", "spo2"}))

    result = train(
        splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder(), inputs=no_demographics
    )

    names = list(result.pipeline[0].get_feature_names_out())
    assert result.numeric_features == ["finding:spo2", "finding:temperature_c"]
    assert not [name for name in names if name == "age" or name.startswith(("age_band=", "sex="))]
    assert "finding:heart_rate" not in names
    assert "symptom:cough" in names
    # The pipeline's matrix from the columns is still the one the vectorizer makes of feature dicts,
    # which carry every demographic (a request may send them): the vectorizer drops them.
    dicts = feature_dicts(splits["test"], result.numeric_features)
    assert any(key.startswith("sex=") for key in dicts[0])
    matrix = trainer._preprocess(result.pipeline[:-1], columns_from_rows(splits["test"]), result.numeric_features)
    assert_same_matrix(result.pipeline[:-1].transform(dicts), matrix)
    # Age alone: age and its band, not sex.
    age_only = train(
        splits,
        algorithm="logistic_regression",
        hyperparameters={},
        report=Recorder(),
        inputs=ModelInputs(demographics=frozenset({"age"})),
    )
    names = list(age_only.pipeline[0].get_feature_names_out())
    assert age_only.numeric_features[0] == "age"
    assert any(name.startswith("age_band=") for name in names)
    assert not any(name.startswith("sex=") for name in names)


def test_by_default_a_model_is_trained_on_every_input_as_before_dictionaries():
    result = train(synthetic_splits(), algorithm="logistic_regression", hyperparameters={}, report=Recorder())

    names = list(result.pipeline[0].get_feature_names_out())
    assert result.numeric_features == ["age", "finding:heart_rate", "finding:spo2", "finding:temperature_c"]
    assert {"sex=female", "sex=male"} <= set(names)
    assert any(name.startswith("age_band=") for name in names)


def test_a_training_row_without_a_label_is_a_clear_error():
    splits = synthetic_splits()
    splits["train"][3] = {key: value for key, value in splits["train"][3].items() if key != "label"}

    with pytest.raises(TrainingError) as caught:
        train(splits, algorithm="logistic_regression", hyperparameters={}, report=Recorder())

    assert caught.value.code == "missing_label"


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
