"""Structural validation of a loaded model artifact, before anything predicts with it.

skops's trusted-type check says which classes a file may instantiate, not that their arrays make
sense: scikit-learn's native predict code trusts a fitted estimator's arrays (a boosted tree's
child and feature indices are read without bounds checks), so a crafted file made only of trusted
types can crash the process that predicts with it. ``validate_pipeline`` checks every estimator
of the pipelines this platform builds (``training.trainer``) the way scikit-learn would have built
it: the step types and their order, each estimator's attribute names, its parameters (sklearn's
own constraints), every fitted array's type, dtype and shape, feature counts equal to the
vectoriser's output, finite coefficients, intercepts and thresholds, and for every boosted tree
the node records (child indices after their parent and inside the tree, each node with exactly
one parent, feature indices inside the feature count, leaf flags and depths consistent, no
categorical splits). A pipeline, step type or attribute outside that is refused: what cannot be
validated is not used. See docs/artifacts.md.

Only numpy and Python look at the arrays here; nothing calls into scikit-learn's compiled code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE, X_BITSET_INNER_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.feature_extraction import DictVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, LabelEncoder, StandardScaler

# Bumped whenever a check is added, so a recorded validation says which rules it passed.
VALIDATOR_VERSION = 1

# A boosted model of the trainer's bounds (training.algorithms: max_iter 10,000, max_leaf_nodes
# 1,024) stays far below these; they bound the validator's own work on a hostile file.
MAX_TREES = 200_000
MAX_NODES = 4 * 1024 * 1024
MAX_FEATURES = 1_000_000
MAX_CLASSES = 10_000
MAX_HIDDEN_UNITS = 1_000_000


class InvalidArtifact(ValueError):
    """The artifact does not have the structure scikit-learn builds; the message says where."""


def _fail(where: str, message: str) -> InvalidArtifact:
    return InvalidArtifact(f"{where}: {message}")


def _check_attributes(estimator: Any, where: str, *, fitted: Iterable[str], optional: Iterable[str] = ()) -> None:
    """The instance's attributes are its parameters and the fitted ones sklearn sets, nothing else."""
    names = set(vars(estimator))
    params = set(type(estimator)._get_param_names())
    required = set(fitted)
    missing = sorted((params | required) - names)
    if missing:
        raise _fail(where, f"missing attributes {', '.join(missing)}.")
    extra = sorted(names - params - required - set(optional))
    if extra:
        raise _fail(where, f"unexpected attributes {', '.join(extra)}.")
    if not hasattr(type(estimator), "_parameter_constraints"):
        return  # a helper such as _BinMapper: its parameters are not read by predict
    try:
        estimator._validate_params()  # sklearn's own parameter constraints
    except Exception as exc:
        raise _fail(where, f"invalid parameters ({type(exc).__name__}: {exc})") from None


def _array(
    value: Any,
    where: str,
    *,
    dtype: Any,
    shape: tuple[int | None, ...],
    finite: bool = False,
    not_nan: bool = False,
) -> np.ndarray:
    """``value`` is a plain ndarray of ``dtype`` and ``shape`` (None: any length), optionally finite."""
    if type(value) is not np.ndarray:
        raise _fail(where, f"must be a numpy array, not {type(value).__name__}.")
    if value.dtype != np.dtype(dtype):
        raise _fail(where, f"must have dtype {np.dtype(dtype)}, not {value.dtype}.")
    if value.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
    ):
        wanted = tuple("*" if want is None else want for want in shape)
        raise _fail(where, f"must have shape {wanted}, not {value.shape}.")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise _fail(where, "must be finite.")
    if not_nan and value.dtype.kind == "f" and np.isnan(value).any():
        raise _fail(where, "must not be NaN.")
    return value


def _int(value: Any, where: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise _fail(where, f"must be an integer from {low} to {high}.")
    return int(value)


def _classes(value: Any, where: str, expected: list[str]) -> None:
    if type(value) is not np.ndarray or value.ndim != 1 or value.dtype.kind not in "OU":
        raise _fail(where, "must be a 1-d array of labels.")
    labels = value.tolist()
    if any(type(label) is not str for label in labels):
        raise _fail(where, "must hold strings.")
    if labels != expected:
        raise _fail(where, "does not match the artifact's classes.")


# --- Preprocessing ---------------------------------------------------------------------------


def _vectorizer(step: Any, where: str) -> int:
    _check_attributes(step, where, fitted=("feature_names_", "vocabulary_"))
    if step.dtype is not np.float64 or step.sparse is not False:
        raise _fail(where, "must be a dense float64 DictVectorizer (sparse=False, dtype=numpy.float64).")
    names, vocabulary = step.feature_names_, step.vocabulary_
    if type(names) is not list or not 0 < len(names) <= MAX_FEATURES:
        raise _fail(where + ".feature_names_", f"must be a list of 1 to {MAX_FEATURES} names.")
    if any(type(name) is not str for name in names):
        raise _fail(where + ".feature_names_", "must hold strings.")
    if type(vocabulary) is not dict or len(vocabulary) != len(names):
        raise _fail(where + ".vocabulary_", "must map each feature name to its column.")
    for position, name in enumerate(names):
        column = vocabulary.get(name)
        if type(column) is not int or column != position:
            raise _fail(where + ".vocabulary_", f"{name!r} must map to column {position}.")
    return len(names)


def _imputer(step: Any, where: str, width: int) -> int:
    _check_attributes(
        step, where, fitted=("statistics_", "n_features_in_", "indicator_", "_fit_dtype"), optional=("_fill_dtype",)
    )
    if step.add_indicator or step.indicator_ is not None:
        raise _fail(where, "a missing-value indicator is not supported.")
    if not (isinstance(step.missing_values, float) and np.isnan(step.missing_values)):
        raise _fail(where, "missing_values must be NaN.")
    if step.strategy not in ("mean", "median", "most_frequent", "constant"):
        raise _fail(where, "unknown strategy.")
    if _int(step.n_features_in_, where + ".n_features_in_", low=1, high=MAX_FEATURES) != width:
        raise _fail(where, f"expects {step.n_features_in_} features, the vectoriser makes {width}.")
    if step._fit_dtype != np.dtype(np.float64) or getattr(step, "_fill_dtype", np.dtype(np.float64)) != np.dtype(
        np.float64
    ):
        raise _fail(where, "must be fitted on float64.")
    _array(step.statistics_, where + ".statistics_", dtype=np.float64, shape=(width,), finite=True)
    return width


def _scaler(step: Any, where: str, width: int) -> int:
    _check_attributes(step, where, fitted=("n_features_in_", "n_samples_seen_"), optional=("mean_", "var_", "scale_"))
    if _int(step.n_features_in_, where + ".n_features_in_", low=1, high=MAX_FEATURES) != width:
        raise _fail(where, f"expects {step.n_features_in_} features, the previous step makes {width}.")
    for name, needed in (
        ("mean_", step.with_mean),
        ("var_", step.with_mean or step.with_std),
        ("scale_", step.with_std),
    ):
        value = getattr(step, name, None)
        if value is None:
            if needed:
                raise _fail(where, f"{name} is missing.")
            continue
        _array(value, f"{where}.{name}", dtype=np.float64, shape=(width,), finite=True)
    if getattr(step, "scale_", None) is not None and not (step.scale_ > 0).all():
        raise _fail(where + ".scale_", "must be positive.")
    return width


# --- Classifiers -----------------------------------------------------------------------------


def _linear(
    step: Any, where: str, width: int, classes: list[str], fitted: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    _check_attributes(
        step, where, fitted=("classes_", "coef_", "intercept_", "n_features_in_", *fitted), optional=optional
    )
    _classes(step.classes_, where + ".classes_", classes)
    if _int(step.n_features_in_, where + ".n_features_in_", low=1, high=MAX_FEATURES) != width:
        raise _fail(where, f"expects {step.n_features_in_} features, the previous step makes {width}.")
    outputs = 1 if len(classes) == 2 else len(classes)
    _array(step.coef_, where + ".coef_", dtype=np.float64, shape=(outputs, width), finite=True)
    _array(step.intercept_, where + ".intercept_", dtype=np.float64, shape=(outputs,), finite=True)


def _logistic(step: Any, where: str, width: int, classes: list[str]) -> None:
    _linear(step, where, width, classes, fitted=("n_iter_",), optional=())


def _sgd(step: Any, where: str, width: int, classes: list[str]) -> None:
    _linear(
        step,
        where,
        width,
        classes,
        fitted=("n_iter_", "t_", "_expanded_class_weight", "_loss_function_"),
        optional=("loss_function_", "_standard_coef", "_standard_intercept", "_average_coef", "_average_intercept"),
    )
    if step.loss not in ("log_loss", "modified_huber"):
        raise _fail(where, "only the probabilistic losses (log_loss, modified_huber) predict probabilities.")
    _array(
        step._expanded_class_weight,
        where + "._expanded_class_weight",
        dtype=np.float64,
        shape=(len(classes),),
        finite=True,
    )


ACTIVATIONS = frozenset({"identity", "logistic", "tanh", "relu"})


def _mlp(step: Any, where: str, width: int, classes: list[str]) -> None:
    _check_attributes(
        step,
        where,
        fitted=(
            "classes_",
            "coefs_",
            "intercepts_",
            "n_features_in_",
            "n_iter_",
            "n_layers_",
            "n_outputs_",
            "out_activation_",
            "t_",
            "_label_binarizer",
        ),
        optional=(
            "_best_coefs",
            "_best_intercepts",
            "_no_improvement_count",
            "_optimizer",
            "_random_state",
            "best_loss_",
            "best_validation_score_",
            "loss_",
            "loss_curve_",
            "validation_scores_",
            "loss_function_",
            "loss",  # set by BaseMultilayerPerceptron.__init__, not a parameter of MLPClassifier
        ),
    )
    if getattr(step, "loss", "log_loss") != "log_loss":
        raise _fail(where, "loss must be log_loss.")
    _classes(step.classes_, where + ".classes_", classes)
    binarizer = step._label_binarizer
    if type(binarizer) is not LabelBinarizer:
        raise _fail(where + "._label_binarizer", "must be a LabelBinarizer.")
    _classes(getattr(binarizer, "classes_", None), where + "._label_binarizer.classes_", classes)
    if _int(step.n_features_in_, where + ".n_features_in_", low=1, high=MAX_FEATURES) != width:
        raise _fail(where, f"expects {step.n_features_in_} features, the previous step makes {width}.")
    if step.activation not in ACTIVATIONS:
        raise _fail(where, "unknown activation.")
    outputs = 1 if len(classes) == 2 else len(classes)
    if step.out_activation_ != ("logistic" if outputs == 1 else "softmax"):
        raise _fail(where, "the output activation does not match the classes.")
    coefs, intercepts = step.coefs_, step.intercepts_
    if type(coefs) is not list or type(intercepts) is not list or not 0 < len(coefs) == len(intercepts) <= 64:
        raise _fail(where, "coefs_ and intercepts_ must be lists of one array per layer.")
    if _int(step.n_layers_, where + ".n_layers_", low=2, high=65) != len(coefs) + 1:
        raise _fail(where, "n_layers_ does not match coefs_.")
    if _int(step.n_outputs_, where + ".n_outputs_", low=1, high=MAX_CLASSES) != outputs:
        raise _fail(where, "n_outputs_ does not match the classes.")
    fan_in = width
    for layer, (weights, bias) in enumerate(zip(coefs, intercepts, strict=True)):
        last = layer == len(coefs) - 1
        units = outputs if last else None
        weights = _array(weights, f"{where}.coefs_[{layer}]", dtype=np.float64, shape=(fan_in, units), finite=True)
        fan_out = weights.shape[1]
        if not 0 < fan_out <= MAX_HIDDEN_UNITS:
            raise _fail(f"{where}.coefs_[{layer}]", "has no units.")
        _array(bias, f"{where}.intercepts_[{layer}]", dtype=np.float64, shape=(fan_out,), finite=True)
        fan_in = fan_out


def _boosting(step: Any, where: str, width: int, classes: list[str]) -> None:
    _check_attributes(
        step,
        where,
        fitted=(
            "_baseline_prediction",
            "_bin_mapper",
            "_loss",
            "_n_features",
            "_predictors",
            "_preprocessor",
            "classes_",
            "is_categorical_",
            "n_features_in_",
            "n_trees_per_iteration_",
        ),
        optional=(
            "_feature_subsample_rng",
            "_is_categorical_remapped",
            "_label_encoder",
            "_random_seed",
            "_scorer",
            "_use_validation_data",
            "do_early_stopping_",
            "train_score_",
            "validation_score_",
            "n_iter_",
            "_n_iter",
        ),
    )
    _classes(step.classes_, where + ".classes_", classes)
    if getattr(step, "_label_encoder", None) is not None:
        if type(step._label_encoder) is not LabelEncoder:
            raise _fail(where + "._label_encoder", "must be a LabelEncoder.")
        _classes(getattr(step._label_encoder, "classes_", None), where + "._label_encoder.classes_", classes)
    if (
        _int(step.n_features_in_, where + ".n_features_in_", low=1, high=MAX_FEATURES) != width
        or step._n_features != width
    ):
        raise _fail(where, f"expects {step.n_features_in_} features, the previous step makes {width}.")
    if (
        step._preprocessor is not None
        or step.is_categorical_ is not None
        or step.categorical_features not in (None, "from_dtype")
    ):
        raise _fail(where, "categorical features are not supported.")
    trees_per_iteration = 1 if len(classes) == 2 else len(classes)
    if (
        _int(step.n_trees_per_iteration_, where + ".n_trees_per_iteration_", low=1, high=MAX_CLASSES)
        != trees_per_iteration
    ):
        raise _fail(where, "n_trees_per_iteration_ does not match the classes.")
    expected_loss = "HalfBinomialLoss" if trees_per_iteration == 1 else "HalfMultinomialLoss"
    if type(step._loss).__name__ != expected_loss or type(step._loss).__module__ != "sklearn._loss.loss":
        raise _fail(where + "._loss", f"must be sklearn's {expected_loss}.")
    if getattr(step._loss, "n_classes", None) != len(classes):
        raise _fail(where + "._loss", "n_classes does not match the classes.")
    _array(
        step._baseline_prediction,
        where + "._baseline_prediction",
        dtype=np.float64,
        shape=(1, trees_per_iteration),
        finite=True,
    )
    _bin_mapper(step._bin_mapper, where + "._bin_mapper", width)
    predictors = step._predictors
    if type(predictors) is not list or not 0 < len(predictors) * trees_per_iteration <= MAX_TREES:
        raise _fail(where + "._predictors", f"must be a list of 1 to {MAX_TREES // trees_per_iteration} iterations.")
    nodes_seen = 0
    for iteration, trees in enumerate(predictors):
        if type(trees) is not list or len(trees) != trees_per_iteration:
            raise _fail(f"{where}._predictors[{iteration}]", f"must be a list of {trees_per_iteration} trees.")
        for k, tree in enumerate(trees):
            nodes_seen += _tree(tree, f"{where}._predictors[{iteration}][{k}]", width)
            if nodes_seen > MAX_NODES:
                raise _fail(where + "._predictors", f"more than {MAX_NODES} nodes in all.")


def _bin_mapper(mapper: Any, where: str, width: int) -> None:
    if type(mapper) is not _BinMapper:
        raise _fail(where, "must be sklearn's _BinMapper.")
    _check_attributes(
        mapper,
        where,
        fitted=("is_categorical_", "missing_values_bin_idx_", "bin_thresholds_", "n_bins_non_missing_"),
    )
    # make_known_categories_bitsets, the only part predict uses, walks the categorical features.
    is_categorical = _array(mapper.is_categorical_, where + ".is_categorical_", dtype=np.uint8, shape=(width,))
    if is_categorical.any():
        raise _fail(where, "categorical features are not supported.")
    _array(mapper.n_bins_non_missing_, where + ".n_bins_non_missing_", dtype=np.uint32, shape=(width,))
    _int(mapper.missing_values_bin_idx_, where + ".missing_values_bin_idx_", low=1, high=255)
    thresholds = mapper.bin_thresholds_
    if type(thresholds) is not list or len(thresholds) != width:
        raise _fail(where + ".bin_thresholds_", f"must be a list of {width} arrays.")
    for feature, values in enumerate(thresholds):
        _array(values, f"{where}.bin_thresholds_[{feature}]", dtype=np.float64, shape=(None,), not_nan=True)


_BITSET_SHAPE = (None, 8)


def _tree(tree: Any, where: str, width: int) -> int:
    """One boosted tree's node records, checked the way ``_predict_from_raw_data`` will read them."""
    if type(tree) is not TreePredictor:
        raise _fail(where, "must be a TreePredictor.")
    if set(vars(tree)) != {"nodes", "binned_left_cat_bitsets", "raw_left_cat_bitsets"}:
        raise _fail(where, "unexpected attributes.")
    nodes = tree.nodes
    if type(nodes) is not np.ndarray or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1:
        raise _fail(where + ".nodes", "must be a 1-d array of sklearn's predictor records.")
    count = len(nodes)
    if not 0 < count <= MAX_NODES:
        raise _fail(where + ".nodes", f"must hold 1 to {MAX_NODES} nodes.")
    for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
        _array(getattr(tree, name), f"{where}.{name}", dtype=X_BITSET_INNER_DTYPE, shape=_BITSET_SHAPE)
    for flag in ("is_leaf", "missing_go_to_left", "is_categorical"):
        if (nodes[flag] > 1).any():
            raise _fail(f"{where}.nodes.{flag}", "must be 0 or 1.")
    if nodes["is_categorical"].any():
        raise _fail(where + ".nodes", "categorical splits are not supported.")
    if not np.isfinite(nodes["value"]).all():
        raise _fail(where + ".nodes.value", "must be finite.")
    leaf = nodes["is_leaf"].astype(bool)
    index = np.arange(count, dtype=np.int64)
    split = ~leaf
    left = nodes["left"][split].astype(np.int64)
    right = nodes["right"][split].astype(np.int64)
    parents = index[split]
    # Children come after their parent (so every walk ends) and inside the tree.
    if ((left <= parents) | (left >= count) | (right <= parents) | (right >= count)).any():
        bad = int(parents[((left <= parents) | (left >= count) | (right <= parents) | (right >= count))][0])
        raise _fail(f"{where}.nodes[{bad}]", f"has a child index outside the tree of {count} nodes.")
    # Each node but the root has exactly one parent: a tree, every node reachable, none shared.
    children = np.concatenate([left, right])
    if len(children) != count - 1 or not np.array_equal(np.sort(children), index[1:]):
        raise _fail(where + ".nodes", "is not a tree (a node with no parent or with two).")
    features = nodes["feature_idx"][split]
    if ((features < 0) | (features >= width)).any():
        bad = int(parents[(features < 0) | (features >= width)][0])
        raise _fail(f"{where}.nodes[{bad}]", f"splits on a feature outside the {width} features.")
    if np.isnan(nodes["num_threshold"][split]).any():
        raise _fail(where + ".nodes.num_threshold", "must not be NaN.")
    depth = nodes["depth"].astype(np.int64)
    if depth[0] != 0 or (depth[left] != depth[parents] + 1).any() or (depth[right] != depth[parents] + 1).any():
        raise _fail(where + ".nodes.depth", "is inconsistent with the tree.")
    return count


# The pipelines the trainer builds (training.trainer): a DictVectorizer, then these in any order
# and number, then one of the classifiers.
TRANSFORMERS: dict[type, Callable[[Any, str, int], int]] = {SimpleImputer: _imputer, StandardScaler: _scaler}
CLASSIFIERS: dict[type, Callable[[Any, str, int, list[str]], None]] = {
    LogisticRegression: _logistic,
    SGDClassifier: _sgd,
    MLPClassifier: _mlp,
    HistGradientBoostingClassifier: _boosting,
}


def validate_pipeline(pipeline: Any, *, classes: list[str], numeric_features: list[str]) -> dict[str, Any]:
    """Check ``pipeline`` (see the module docstring); raises ``InvalidArtifact`` naming the first problem.

    Returns a summary of what was checked, for the version's validation record.
    """
    if type(pipeline) is not Pipeline:
        raise _fail("pipeline", "must be a scikit-learn Pipeline.")
    _check_attributes(pipeline, "pipeline", fitted=())
    if pipeline.memory is not None or pipeline.transform_input is not None:
        raise _fail("pipeline", "memory and transform_input are not supported.")
    steps = pipeline.steps
    if type(steps) is not list or len(steps) < 2 or len(steps) > 8:
        raise _fail("pipeline.steps", "must be a list of 2 to 8 steps.")
    if not 2 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
        raise _fail("classes", f"must be 2 to {MAX_CLASSES} distinct labels.")
    if any(type(name) is not str for name in numeric_features):
        raise _fail("numeric_features", "must be strings.")
    names = []
    for position, entry in enumerate(steps):
        if type(entry) is not tuple or len(entry) != 2 or type(entry[0]) is not str:
            raise _fail(f"pipeline.steps[{position}]", "must be a (name, estimator) pair.")
        names.append(entry[0])
    if len(set(names)) != len(names):
        raise _fail("pipeline.steps", "step names must be distinct.")
    first_name, vectorizer = steps[0]
    if type(vectorizer) is not DictVectorizer:
        raise _fail(f"pipeline.{first_name}", "the first step must be a DictVectorizer.")
    width = _vectorizer(vectorizer, f"pipeline.{first_name}")
    if any(name not in vectorizer.vocabulary_ for name in numeric_features):
        raise _fail("numeric_features", "name features the vectoriser does not make.")
    for name, step in steps[1:-1]:
        check = TRANSFORMERS.get(type(step))
        if check is None:
            raise _fail(f"pipeline.{name}", f"{type(step).__name__} is not a step this platform can validate.")
        width = check(step, f"pipeline.{name}", width)
    last_name, classifier = steps[-1]
    check_classifier = CLASSIFIERS.get(type(classifier))
    if check_classifier is None:
        raise _fail(
            f"pipeline.{last_name}", f"{type(classifier).__name__} is not a classifier this platform can validate."
        )
    check_classifier(classifier, f"pipeline.{last_name}", width, classes)
    return {
        "validator": VALIDATOR_VERSION,
        "steps": [type(step).__name__ for _, step in steps],
        "features": len(vectorizer.feature_names_),
        "classes": len(classes),
    }
