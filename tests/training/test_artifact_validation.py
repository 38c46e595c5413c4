"""Structural validation: crafted artifacts made only of trusted types are refused before any predict.

None of these tests predicts with a refused artifact in this process: the point of the
validation is that nothing has to (the sandbox tests, tests/models_registry/registry/test_upload_sandbox.py,
show what predicting with one does to a child process). Accepted artifacts are predicted with,
to show that what passes is safe.
"""

from __future__ import annotations

import copy
import hashlib
import io
import time
import zipfile
from typing import Any

import numpy as np
import pytest
import skops.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.training.artifact_crafting import (
    OUT_OF_RANGE,
    boosted,
    crafted,
    hidden_branch,
    out_of_range_root,
    scaled_feature_threshold,
    zip_bomb,
)
from tests.training.test_trainer import FAST, Recorder, synthetic_splits
from training.artifact_validation import InvalidArtifact, validate_pipeline
from training.artifacts import (
    ArtifactError,
    ArtifactTooLarge,
    ArtifactUntrusted,
    ZipLimits,
    check_zip_limits,
    dump_artifact,
    loads_artifact,
)
from training.evaluation import probabilities_of
from training.trainer import train

ALGORITHMS = list(FAST)


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    splits = synthetic_splits()
    binary = synthetic_splits(labels=("J06.9", "J18.9"))
    results = {
        algorithm: train(splits, algorithm=algorithm, hyperparameters=FAST[algorithm], report=Recorder())
        for algorithm in ALGORITHMS
    }
    results |= {
        f"{algorithm}-binary": train(binary, algorithm=algorithm, hyperparameters=FAST[algorithm], report=Recorder())
        for algorithm in ALGORITHMS
    }
    # Few trees, so that each example of the property test below dumps and loads quickly.
    results["gradient_boosting-small"] = train(
        splits, algorithm="gradient_boosting", hyperparameters={"max_iter": 3}, report=Recorder()
    )
    return results | {"test_rows": splits["test"], "binary_test_rows": binary["test"]}


def load(data: bytes) -> Any:
    return loads_artifact(data, hashlib.sha256(data).hexdigest())


def refused(data: bytes) -> str:
    with pytest.raises(ArtifactError) as caught:
        load(data)
    assert caught.value.code == "artifact_invalid"
    return caught.value.message


def feature_index(result: Any, name: str) -> int:
    return int(result.pipeline.named_steps["vectorizer"].vocabulary_[name])


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, *(f"{a}-binary" for a in ALGORITHMS)])
def test_every_pipeline_the_trainer_builds_passes(algorithm, trained):
    result = trained[algorithm]
    data = dump_artifact(result.pipeline, numeric_features=result.numeric_features, classes=result.classes)

    loaded = load(data)

    assert loaded.validation["validator"] == 1
    assert loaded.validation["steps"][0] == "DictVectorizer"
    assert loaded.validation["features"] == len(result.pipeline.named_steps["vectorizer"].feature_names_)
    rows = trained["binary_test_rows" if algorithm.endswith("binary") else "test_rows"]
    probabilities = probabilities_of(loaded.pipeline, rows, numeric_features=loaded.numeric_features)
    assert np.isfinite(probabilities).all()


def test_the_out_of_range_tree_is_refused_before_any_predict(trained):
    data = crafted(trained["gradient_boosting"], out_of_range_root)

    message = refused(data)

    assert "_predictors[0][0].nodes[0]" in message
    assert "child index outside the tree" in message


def test_the_hidden_branch_tree_is_refused(trained):
    result = trained["gradient_boosting"]
    feature = feature_index(result, "finding:temperature_c")
    threshold = scaled_feature_threshold(result.pipeline, feature, 1e4)

    message = refused(crafted(result, hidden_branch(feature, threshold)))

    assert "_predictors[0][0].nodes[0]" in message


def test_the_hidden_branch_with_an_in_range_cycle_is_refused(trained):
    """A child index inside the tree but pointing back at its parent would loop forever."""

    def cycle(pipeline: Any) -> None:
        hidden_branch(0)(pipeline)
        boosted(pipeline)._predictors[0][0].nodes[0]["right"] = 0

    assert "child index" in refused(crafted(trained["gradient_boosting"], cycle))


def test_a_feature_index_beyond_the_vectoriser_output_is_refused(trained):
    def change(pipeline: Any) -> None:
        nodes = boosted(pipeline)._predictors[0][0].nodes
        nodes[0]["feature_idx"] = len(pipeline.named_steps["vectorizer"].feature_names_)

    assert "feature outside" in refused(crafted(trained["gradient_boosting"], change))


def test_a_shared_child_is_refused(trained):
    def change(pipeline: Any) -> None:
        nodes = boosted(pipeline)._predictors[0][0].nodes
        nodes[0]["right"] = nodes[0]["left"]

    assert "not a tree" in refused(crafted(trained["gradient_boosting"], change))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("is_leaf", 2, "is_leaf"),
        ("is_categorical", 1, "categorical"),
        ("value", np.nan, "value"),
        ("num_threshold", np.nan, "num_threshold"),
        ("depth", 7, "depth"),
    ],
)
def test_inconsistent_node_records_are_refused(trained, field, value, expected):
    def change(pipeline: Any) -> None:
        boosted(pipeline)._predictors[0][0].nodes[0][field] = value

    assert expected in refused(crafted(trained["gradient_boosting"], change))


def test_a_tree_of_the_wrong_record_dtype_is_refused(trained):
    def change(pipeline: Any) -> None:
        tree = boosted(pipeline)._predictors[0][0]
        tree.nodes = np.zeros(3, dtype=[("value", "<f8"), ("left", "<u4")])

    # TreePredictor.__setstate__ casts on load and fails, or the validator refuses the dtype.
    refused(crafted(trained["gradient_boosting"], change))


@pytest.mark.parametrize(
    ("algorithm", "change", "expected"),
    [
        ("logistic_regression", lambda c: setattr(c, "coef_", c.coef_[:, :-1].copy()), "coef_"),
        ("logistic_regression", lambda c: setattr(c, "coef_", np.full_like(c.coef_, np.inf)), "finite"),
        ("logistic_regression", lambda c: setattr(c, "intercept_", c.intercept_.astype(np.float32)), "dtype"),
        ("sgd", lambda c: setattr(c, "n_features_in_", 3), "features"),
        ("mlp", lambda c: c.coefs_.__setitem__(0, c.coefs_[0][:-1].copy()), "coefs_[0]"),
        ("mlp", lambda c: c.intercepts_.__setitem__(-1, c.intercepts_[-1][:1].copy()), "intercepts_"),
        ("mlp", lambda c: setattr(c, "activation", "softmax"), "activation"),
        ("gradient_boosting", lambda c: setattr(c, "_in_fit", True), "unexpected attributes _in_fit"),
        ("gradient_boosting", lambda c: setattr(c, "n_trees_per_iteration_", 1), "n_trees_per_iteration_"),
        ("gradient_boosting", lambda c: c._predictors[0].pop(), "trees"),
        ("gradient_boosting", lambda c: setattr(c, "_baseline_prediction", c._baseline_prediction * np.nan), "finite"),
    ],
)
def test_classifier_arrays_of_the_wrong_shape_dtype_or_value_are_refused(trained, algorithm, change, expected):
    assert expected in refused(crafted(trained[algorithm], lambda pipeline: change(pipeline.steps[-1][1])))


@pytest.mark.parametrize(
    ("step", "change", "expected"),
    [
        ("vectorizer", lambda v: v.vocabulary_.update({v.feature_names_[0]: 10**6}), "vocabulary_"),
        ("vectorizer", lambda v: v.feature_names_.append("extra"), "vocabulary_"),
        ("imputer", lambda i: setattr(i, "statistics_", i.statistics_[:-1].copy()), "statistics_"),
        ("scaler", lambda s: setattr(s, "scale_", np.zeros_like(s.scale_)), "positive"),
        ("scaler", lambda s: setattr(s, "mean_", np.full_like(s.mean_, np.nan)), "finite"),
    ],
)
def test_preprocessing_that_does_not_match_the_vectoriser_is_refused(trained, step, change, expected):
    result = trained["logistic_regression"]
    assert expected in refused(crafted(result, lambda pipeline: change(pipeline.named_steps[step])))


def test_a_step_type_that_cannot_be_validated_is_refused(trained):
    from sklearn.preprocessing import MinMaxScaler

    def change(pipeline: Any) -> None:
        X = np.zeros((2, len(pipeline.named_steps["vectorizer"].feature_names_)))
        pipeline.steps.insert(2, ("minmax", MinMaxScaler().fit(X)))

    assert "MinMaxScaler is not a step this platform can validate" in refused(
        crafted(trained["logistic_regression"], change)
    )


def with_classifier(result: Any, classifier: Any) -> bytes:
    pipeline = copy.deepcopy(result.pipeline)
    X = pipeline[:-1].transform([{"age": 1.0}, {"age": 2.0}, {"age": 3.0}, {"age": 4.0}])
    pipeline.steps[-1] = ("classifier", classifier.fit(X, [*result.classes, result.classes[0]][:4]))
    return dump_artifact(pipeline, numeric_features=result.numeric_features, classes=result.classes)


def test_a_trusted_classifier_type_that_cannot_be_validated_is_refused(trained):
    from sklearn.naive_bayes import GaussianNB

    data = with_classifier(trained["logistic_regression"], GaussianNB())

    assert "GaussianNB is not a classifier this platform can validate" in refused(data)


def test_tree_ensembles_of_other_kinds_are_not_even_trusted(trained):
    from sklearn.tree import DecisionTreeClassifier

    data = with_classifier(trained["logistic_regression"], DecisionTreeClassifier())

    with pytest.raises(ArtifactUntrusted, match=r"sklearn\.tree\._tree\.Tree"):
        load(data)


def test_validate_pipeline_refuses_what_is_not_a_pipeline():
    with pytest.raises(InvalidArtifact, match="must be a scikit-learn Pipeline"):
        validate_pipeline({"steps": []}, classes=["a", "b"], numeric_features=[])


# --- Zip limits ------------------------------------------------------------------------------


LIMITS = ZipLimits(max_members=100, max_uncompressed_bytes=10 * 1024**2, max_schema_bytes=1024**2, max_ratio=50)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zip_bomb()


def test_a_zip_bomb_is_refused_from_its_directory_without_inflating(bomb, monkeypatch):
    assert len(bomb) < 2 * 1024**2  # small on disk ...
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert archive.getinfo("schema.json").file_size > 1024**3  # ... 1 GiB inflated
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda *a, **k: pytest.fail("a member was inflated"))
    monkeypatch.setattr(skops.io, "get_untrusted_types", lambda **k: pytest.fail("skops parsed the bomb"))

    started = time.process_time()
    with pytest.raises(ArtifactTooLarge) as caught:
        load(bomb)  # the settings' limits

    assert time.process_time() - started < 1.0  # CPU seconds: nothing was inflated
    assert caught.value.code == "artifact_too_large"
    assert "schema.json" in caught.value.message


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (ZipLimits(max_members=10**6, max_uncompressed_bytes=10**12, max_schema_bytes=10**12, max_ratio=50), "fold"),
        (
            ZipLimits(max_members=10**6, max_uncompressed_bytes=10**6, max_schema_bytes=10**12, max_ratio=10**6),
            "inflates to",
        ),
    ],
)
def test_each_zip_limit_refuses_the_bomb_on_its_own(bomb, limits, expected):
    with pytest.raises(ArtifactTooLarge, match=expected):
        check_zip_limits(bomb, limits)


def test_too_many_members_are_refused(trained):
    result = trained["gradient_boosting"]
    data = dump_artifact(result.pipeline, numeric_features=result.numeric_features, classes=result.classes)
    members = len(zipfile.ZipFile(io.BytesIO(data)).infolist())

    check_zip_limits(data, ZipLimits(members, 10**9, 10**9, 200))
    with pytest.raises(ArtifactTooLarge, match="members"):
        check_zip_limits(data, ZipLimits(members - 1, 10**9, 10**9, 200))


def test_a_real_artifact_is_within_the_default_limits(trained, settings):
    result = trained["gradient_boosting"]
    data = dump_artifact(result.pipeline, numeric_features=result.numeric_features, classes=result.classes)
    check_zip_limits(data, ZipLimits.from_settings())
    assert settings.ARTIFACT_MAX_UNCOMPRESSED_BYTES == 1024**3


# --- Random corruption never crashes this process ------------------------------------------


def rezipped(data: bytes, member: str, change: Any) -> bytes:
    """The archive with one member's bytes replaced by ``change(bytes)`` (CRC recomputed)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for info in source.infolist():
            content = source.read(info)
            archive.writestr(info.filename, change(content) if info.filename == member else content)
    return sink.getvalue()


def predict_or_refuse(data: bytes, rows: Any) -> None:
    """The contract: an artifact is refused cleanly, or it loads and predicts finite probabilities."""
    try:
        artifact = load(data)
    except ArtifactUntrusted:
        return  # a corrupted schema naming some other type: refused before loading
    except ArtifactError as exc:
        codes = {exc.code} - {"artifact_invalid", "artifact_too_large"}
        assert not codes, codes
        return
    probabilities = probabilities_of(artifact.pipeline, rows, numeric_features=artifact.numeric_features)
    assert probabilities.shape == (len(rows), len(artifact.classes))
    assert np.isfinite(probabilities).all()


HOSTILE = [0, 1, 2, 3, -1, 255, 2**31 - 1, 2**32 - 1, OUT_OF_RANGE, 10**12, -(10**12)]
FIELDS = ["left", "right", "feature_idx", "is_leaf", "depth", "missing_go_to_left", "is_categorical", "bitset_idx"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tree=st.integers(min_value=0, max_value=8),
    node=st.integers(min_value=0, max_value=2**16),
    field=st.sampled_from([*FIELDS, "num_threshold", "value"]),
    value=st.one_of(st.sampled_from(HOSTILE), st.integers(min_value=-4, max_value=64)),
    special=st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -0.0]),
)
def test_random_tree_corruptions_never_crash_the_process(trained, tree, node, field, value, special):
    result = trained["gradient_boosting-small"]

    def change(pipeline: Any) -> None:
        trees = [t for iteration in boosted(pipeline)._predictors for t in iteration]
        nodes = trees[tree % len(trees)].nodes
        position = node % len(nodes)
        if field in ("num_threshold", "value"):
            nodes[position][field] = special
        else:
            info = np.iinfo(nodes.dtype[field])
            nodes[position][field] = min(max(value, info.min), info.max)

    predict_or_refuse(crafted(result, change), trained["test_rows"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    member_choice=st.integers(min_value=0, max_value=10**6),
    position=st.integers(min_value=0, max_value=10**9),
    replacement=st.binary(min_size=1, max_size=8),
)
def test_random_member_byte_corruptions_never_crash_the_process(
    trained, algorithm, member_choice, position, replacement
):
    """Bytes of one member (an .npy array or the schema) replaced, the archive otherwise well formed."""
    result = trained[algorithm]
    data = dump_artifact(result.pipeline, numeric_features=result.numeric_features, classes=result.classes)
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    member = names[member_choice % len(names)]

    def change(content: bytes) -> bytes:
        at = position % max(len(content), 1)
        return content[:at] + replacement + content[at + len(replacement) :]

    predict_or_refuse(rezipped(data, member, change), trained["test_rows"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    position=st.integers(min_value=0, max_value=10**9),
    flip=st.integers(min_value=1, max_value=255),
)
def test_random_raw_byte_flips_never_crash_the_process(trained, algorithm, position, flip):
    result = trained[algorithm]
    data = bytearray(dump_artifact(result.pipeline, numeric_features=result.numeric_features, classes=result.classes))
    data[position % len(data)] ^= flip

    predict_or_refuse(bytes(data), trained["test_rows"])
