"""One row's class probabilities without scikit-learn's per-call input checks.

``Pipeline.predict_proba`` of one feature dict spends nearly all its time, about 1 ms, not on the
arithmetic but on checking its input at every step: ``validate_data``, ``check_is_fitted``, feature
name and DataFrame checks, a sparse matrix built and densified by the vectoriser. Serving answers
one record per request, so that is the largest cost of a predict request (the HTTP benchmark's
profile, README). For the pipelines the trainer builds and the artifact validator admits
(``training.artifact_validation``: a dense float64 ``DictVectorizer``, then ``SimpleImputer`` /
``StandardScaler`` steps, then the classifier), ``row_predictor`` returns the same computation in
numpy on one float64 vector, the steps' own fitted attributes read once:

- ``DictVectorizer``: each feature's value at its ``vocabulary_`` column, 0 elsewhere, features it
  does not know ignored (as ``transform``);
- ``SimpleImputer`` (NaN as missing, no indicator, finite ``statistics_``): NaN -> the statistic;
- ``StandardScaler``: ``(x - mean_) / scale_`` as its flags say;
- ``LogisticRegression``: ``expit`` of the decision (binary, ``[1 - p, p]``) or its ``softmax``,
  as ``predict_proba`` does; any other admitted classifier gets the vector through its own
  ``predict_proba`` (its own checks, but not the pipeline's).

Anything else (another step, a step whose attributes differ from what this module assumes) gives
``None``, and the caller keeps ``Pipeline.predict_proba``. A vector that is not finite when it
reaches the classifier returns ``None`` from the predictor, so the caller's pipeline raises what
scikit-learn raises for it. Tests pin the equality with ``Pipeline.predict_proba`` for each
algorithm of the trainer (``tests/training/test_row_predictor.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.feature_extraction import DictVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

# One row's feature dict -> its probabilities (shape (1, classes)), or None: use the pipeline.
RowPredictor = Callable[[Mapping[str, float]], "np.ndarray | None"]
Step = Callable[[np.ndarray], np.ndarray]


def _finite_vector(value: Any, width: int) -> np.ndarray | None:
    if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.shape != (width,):
        return None
    return value if bool(np.isfinite(value).all()) else None


def _imputer_step(step: SimpleImputer, width: int) -> Step | None:
    missing = step.missing_values
    if step.add_indicator or getattr(step, "indicator_", None) is not None:
        return None
    if not (isinstance(missing, float) and np.isnan(missing)):
        return None
    statistics = _finite_vector(getattr(step, "statistics_", None), width)  # finite: no column is dropped
    if statistics is None:
        return None

    def impute(x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), statistics, x)

    return impute


def _scaler_step(step: StandardScaler, width: int) -> Step | None:
    mean = _finite_vector(getattr(step, "mean_", None), width) if step.with_mean else None
    scale = _finite_vector(getattr(step, "scale_", None), width) if step.with_std else None
    if (step.with_mean and mean is None) or (step.with_std and scale is None):
        return None

    def standardise(x: np.ndarray) -> np.ndarray:
        if mean is not None:
            x = x - mean
        if scale is not None:
            x = x / scale
        return x

    return standardise


def _logistic(step: LogisticRegression, width: int) -> Step | None:
    coef, intercept = getattr(step, "coef_", None), getattr(step, "intercept_", None)
    if not (isinstance(coef, np.ndarray) and isinstance(intercept, np.ndarray)):
        return None
    if coef.dtype != np.float64 or coef.ndim != 2 or coef.shape[1] != width or intercept.shape != (coef.shape[0],):
        return None
    classes = len(step.classes_)
    if classes < 2 or coef.shape[0] != (1 if classes == 2 else classes):
        return None
    coef_t = coef.T

    def probabilities(x: np.ndarray) -> np.ndarray:
        scores = x.reshape(1, -1) @ coef_t + intercept
        if classes == 2:  # LinearClassifierMixin._predict_proba_lr: expit, then [1 - p, p]
            p = expit(scores[:, 0])
            return np.stack([1 - p, p], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)  # sklearn.utils.extmath.softmax
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    return probabilities


def row_predictor(pipeline: Any) -> RowPredictor | None:
    """The numpy path of ``pipeline.predict_proba([features])`` (module docstring), or None."""
    if type(pipeline) is not Pipeline or len(pipeline.steps) < 2:
        return None
    vectorizer = pipeline.steps[0][1]
    if type(vectorizer) is not DictVectorizer or vectorizer.sparse is not False or vectorizer.dtype is not np.float64:
        return None
    vocabulary = getattr(vectorizer, "vocabulary_", None)
    if type(vocabulary) is not dict or sorted(vocabulary.values()) != list(range(len(vocabulary))):
        return None
    width = len(vocabulary)
    steps: list[Step] = []
    for _, step in pipeline.steps[1:-1]:
        made = (
            _imputer_step(step, width)
            if type(step) is SimpleImputer
            else _scaler_step(step, width)
            if type(step) is StandardScaler
            else None
        )
        if made is None:
            return None
        steps.append(made)
    classifier = pipeline.steps[-1][1]
    if getattr(classifier, "n_features_in_", width) != width:
        return None
    final = _logistic(classifier, width) if type(classifier) is LogisticRegression else None
    if final is None:
        if not hasattr(classifier, "predict_proba"):
            return None

        def final(x: np.ndarray) -> np.ndarray:
            return np.asarray(classifier.predict_proba(x.reshape(1, -1)), dtype=np.float64)

    def predict(features: Mapping[str, float]) -> np.ndarray | None:
        x = np.zeros(width)
        for name, value in features.items():
            if type(value) is not float and type(value) is not int:
                return None  # a text value names a feature of its own in DictVectorizer: the pipeline's way
            column = vocabulary.get(name)
            if column is not None:
                x[column] = value
        for transform in steps:
            x = transform(x)
        if not bool(np.isfinite(x).all()):
            return None  # the pipeline raises scikit-learn's own error for it
        return final(x)

    return predict
