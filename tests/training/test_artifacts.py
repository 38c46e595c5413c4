"""Artifacts: skops through the default storage, sha256 checked first, untrusted types refused."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from tests.training.test_trainer import FAST, Recorder, synthetic_splits
from training import artifacts
from training.artifacts import (
    TRUSTED_TYPES,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactUntrusted,
    delete_artifact,
    dump_artifact,
    load_artifact,
    loads_artifact,
    save_artifact,
)
from training.features import feature_dicts
from training.trainer import train

ALGORITHMS = list(FAST)


@pytest.fixture
def storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    splits = synthetic_splits()
    return {
        algorithm: train(splits, algorithm=algorithm, hyperparameters=FAST[algorithm], report=Recorder())
        for algorithm in ALGORITHMS
    } | {"test_rows": splits["test"]}


def save(result: Any, name: str) -> tuple[str, str]:
    return save_artifact(result.pipeline, numeric_features=result.numeric_features, classes=result.classes, name=name)


def refuse_deserialisation(monkeypatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("skops deserialised an artifact that should have been refused first")

    monkeypatch.setattr(skops.io, "loads", forbidden)


def custom_scaling(X: Any) -> Any:
    return X * 2


class CustomClassifier(ClassifierMixin, BaseEstimator):
    def fit(self, X: Any, y: Any) -> CustomClassifier:
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: Any) -> Any:
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_saved_artifact_loads_and_predicts_the_same(algorithm, trained, storage):
    result = trained[algorithm]

    path, sha256 = save(result, f"roundtrip-{algorithm}")
    loaded = load_artifact(path, sha256)

    assert path == f"models/roundtrip-{algorithm}.skops"
    assert sha256 == hashlib.sha256((storage / path).read_bytes()).hexdigest()
    assert loaded.numeric_features == result.numeric_features
    assert loaded.classes == result.classes
    X = feature_dicts(trained["test_rows"], loaded.numeric_features)
    np.testing.assert_array_equal(loaded.pipeline.predict_proba(X), result.pipeline.predict_proba(X))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("labels", [("neg", "pos"), ("A", "B", "C", "D")], ids=["binary", "multiclass"])
def test_the_trusted_types_cover_every_algorithm(algorithm, labels):
    splits = synthetic_splits((60, 12, 16), labels=labels)
    result = train(splits, algorithm=algorithm, hyperparameters=FAST[algorithm], report=Recorder())

    data = dump_artifact(result.pipeline, numeric_features=result.numeric_features, classes=result.classes)

    assert set(skops.io.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)


def test_a_taken_name_never_overwrites_an_artifact(trained, storage):
    first, _ = save(trained["logistic_regression"], "same")
    second, sha256 = save(trained["sgd"], "same")

    assert first != second
    assert load_artifact(first, hashlib.sha256((storage / first).read_bytes()).hexdigest()).classes
    assert load_artifact(second, sha256).pipeline.named_steps["classifier"].__class__.__name__ == "SGDClassifier"


def test_a_one_byte_change_is_refused_before_deserialisation(trained, storage, monkeypatch):
    path, sha256 = save(trained["logistic_regression"], "tampered")
    stored = storage / path
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    refuse_deserialisation(monkeypatch)
    monkeypatch.setattr(skops.io, "get_untrusted_types", lambda **kwargs: pytest.fail("parsed before the hash check"))

    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_artifact(path, sha256)


def test_a_missing_recorded_hash_is_refused(trained, storage, monkeypatch):
    path, _ = save(trained["logistic_regression"], "unhashed")
    refuse_deserialisation(monkeypatch)

    with pytest.raises(ArtifactIntegrityError):
        load_artifact(path, "")


@pytest.mark.parametrize(
    "pipeline",
    [
        Pipeline([("custom", FunctionTransformer(custom_scaling))]),
        Pipeline([("classifier", CustomClassifier().fit(np.zeros((4, 1)), [0, 1, 0, 1]))]),
    ],
    ids=["function-transformer", "custom-class"],
)
def test_an_artifact_with_an_untrusted_type_is_refused(pipeline, monkeypatch):
    # A correctly hashed file: the hash says "unchanged", not "safe".
    data = dump_artifact(pipeline, numeric_features=["age"], classes=["A", "B"])
    refuse_deserialisation(monkeypatch)

    with pytest.raises(ArtifactUntrusted) as caught:
        loads_artifact(data, hashlib.sha256(data).hexdigest())

    assert caught.value.extra["untrusted_types"]
    assert all(name.startswith("tests.training.test_artifacts") for name in caught.value.extra["untrusted_types"])


def test_a_skops_file_that_is_not_a_model_artifact_is_refused():
    data = skops.io.dumps({"format_version": 99, "pipeline": None})

    with pytest.raises(ArtifactError, match="not a format-1"):
        loads_artifact(data, hashlib.sha256(data).hexdigest())


def test_bytes_that_are_not_skops_at_all_are_refused_clearly():
    data = b"not a zip archive"

    with pytest.raises(ArtifactError, match="cannot be read"):
        loads_artifact(data, hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "name with spaces", ".hidden"])
def test_artifact_names_are_plain(name, trained, storage):
    with pytest.raises(ValueError, match="must be letters"):
        save(trained["logistic_regression"], name)


def test_the_trainer_saves_through_the_default_storage(storage):
    result = train(
        synthetic_splits(), algorithm="sgd", hyperparameters=FAST["sgd"], report=Recorder(), artifact_name="job-7"
    )

    assert result.artifact_path is not None
    assert result.artifact_sha256 is not None
    loaded = load_artifact(result.artifact_path, result.artifact_sha256)
    assert result.artifact_path == "models/job-7.skops"
    assert loaded.classes == result.classes


def test_delete_artifact_removes_the_file_and_tolerates_a_missing_one(trained, storage):
    path, _ = save(trained["logistic_regression"], "to-delete")

    delete_artifact(path)
    delete_artifact(path)

    assert not (storage / path).exists()


def test_the_artifact_errors_answer_with_a_code():
    assert ArtifactIntegrityError("x").code == "artifact_integrity"
    assert ArtifactUntrusted("x").code == "artifact_untrusted"
    assert issubclass(ArtifactIntegrityError, artifacts.ArtifactError)
