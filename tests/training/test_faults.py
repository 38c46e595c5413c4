"""The simulation's seam for bad candidates (``training.faults``): a name no process knows unless it
registered it, and, once registered, the trainer fits the base algorithm on the fault's rows and
lets it change the fitted classifier."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from learning_engine.exceptions import InvalidRequest
from tests.training.test_trainer import Recorder, synthetic_splits
from training import faults
from training.algorithms import SPECS, validate_hyperparameters
from training.evaluation import predict_rows
from training.trainer import train

NAME = "test_fault"


@pytest.fixture
def registered() -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {}

    def rows(train_rows: Any, params: Any) -> list[dict[str, Any]]:
        seen["rows"] = len(train_rows)
        return [{**row, "label": "J06.9"} if i % 2 else dict(row) for i, row in enumerate(train_rows)]

    def fitted(classifier: Any, params: Any) -> None:
        seen["seed"] = params["seed"]
        classifier.coef_ = classifier.coef_ * 0.0
        classifier.intercept_ = classifier.intercept_ * 0.0

    faults.register(faults.Fault(NAME, "logistic_regression", rows=rows, fitted=fitted))
    yield seen
    faults.unregister(NAME)


def test_a_fault_name_is_an_unknown_algorithm_unless_this_process_registered_it():
    assert NAME not in SPECS
    with pytest.raises(InvalidRequest) as raised:
        validate_hyperparameters(NAME, {})
    assert raised.value.code == "invalid_algorithm"


def test_a_registered_fault_trains_its_base_on_its_rows_and_bends_the_fitted_model(registered):
    assert validate_hyperparameters(NAME, {"seed": 3}) == {
        **validate_hyperparameters("logistic_regression", {}),
        "seed": 3,
    }

    splits = synthetic_splits()
    result = train(splits, algorithm=NAME, hyperparameters={"seed": 3}, report=Recorder())

    assert registered == {"rows": 150, "seed": 3}
    assert result.algorithm == NAME
    # Every logit zeroed: the probabilities are uniform, whatever the row.
    answers = predict_rows(result.pipeline, splits["test"], numeric_features=result.numeric_features)
    assert np.allclose(np.asarray(answers.probabilities), 1 / len(result.classes))
