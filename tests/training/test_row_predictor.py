"""``training.row_predictor``: one row's probabilities in numpy, equal to ``Pipeline.predict_proba``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from tests.training.test_trainer import FAST, Recorder, synthetic_splits
from training.features import feature_dicts
from training.row_predictor import row_predictor
from training.trainer import train


def trained(algorithm: str, labels: tuple[str, ...]) -> tuple[Pipeline, list[dict[str, float]]]:
    splits = synthetic_splits(labels=labels)
    result = train(splits, algorithm=algorithm, hyperparameters=FAST[algorithm], report=Recorder())
    rows = feature_dicts(splits["test"], result.numeric_features)
    # A row with every numeric input missing goes through the imputer's statistics.
    rows.append({name: (math.nan if name in result.numeric_features else value) for name, value in rows[0].items()})
    rows.append({**rows[1], "a feature the vectoriser never saw": 3.0})
    return result.pipeline, rows


@pytest.mark.parametrize("labels", [("J18.9", "J45.909"), ("J18.9", "J45.909", "J06.9")], ids=["binary", "three"])
@pytest.mark.parametrize("algorithm", sorted(FAST))
def test_one_row_probabilities_are_the_pipelines(algorithm, labels):
    pipeline, rows = trained(algorithm, labels)
    predict = row_predictor(pipeline)
    assert predict is not None

    for row in rows:
        found = predict(row)
        expected = pipeline.predict_proba([row])
        assert found is not None
        assert found.shape == expected.shape == (1, len(labels))
        np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-15)


def test_a_step_it_does_not_know_leaves_the_pipeline_to_predict():
    pipeline, _ = trained("logistic_regression", ("J18.9", "J45.909"))
    steps = list(pipeline.steps)
    steps.insert(2, ("minmax", MinMaxScaler().fit(np.zeros((2, pipeline.steps[1][1].n_features_in_)))))

    assert row_predictor(Pipeline(steps)) is None
    assert row_predictor(pipeline.steps[-1][1]) is None  # not a pipeline
    imputer = pipeline.steps[1][1]
    imputer.statistics_ = imputer.statistics_.copy()
    imputer.statistics_[0] = math.nan  # sklearn would drop that column: not this module's arithmetic
    assert row_predictor(pipeline) is None


def test_a_row_the_pipeline_would_refuse_is_left_to_the_pipeline():
    pipeline, rows = trained("logistic_regression", ("J18.9", "J45.909"))
    without_imputer = Pipeline([step for step in pipeline.steps if step[0] != "imputer"])
    predict = row_predictor(without_imputer)
    assert predict is not None
    missing = dict.fromkeys(rows[0], math.nan)

    assert predict(missing) is None  # NaN reaches the classifier: sklearn raises for it, not us
    with pytest.raises(ValueError, match="NaN"):
        without_imputer.predict_proba([missing])
    text: dict[str, Any] = {**rows[0], next(iter(rows[0])): "text"}
    assert predict(text) is None  # DictVectorizer's one-hot of a text
