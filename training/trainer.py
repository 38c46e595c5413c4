"""The trainer: a scikit-learn pipeline fitted on a snapshot's splits, with live progress.

``train`` is pure library code: rows in (``training.dataset_format`` rows, de-identified fields
only: a dataset file's splits from ``read_rows_by_split``, or lists of row dicts), a fitted
pipeline, metrics, history and evaluation out. The caller (the worker task)
passes ``report``, which receives a ``TrainingProgress`` at every stage and epoch; it writes the
progress to the job row and raises when the job is no longer ours (``LeaseLost`` after a cancel
or the reaper). That exception propagates straight out of ``train``: nothing is saved after it.

Pipeline: ``DictVectorizer(sparse=False) -> SimpleImputer(median) -> StandardScaler -> classifier``.
Dense, because sklearn 1.9's ``SGDClassifier`` rejects the vectorizer's sparse output (64-bit
indices). The preprocessing is fitted on the train split only, from the split's columns
(``_fit_preprocessing``): the same fitted steps and matrices as ``fit_transform`` on a feature
dict per row, without the dicts, which cost more than the fit itself on a large split.

Epoch-based algorithms (SGD, MLP) train by real mini-batch epochs: each epoch shuffles the train
split with the seed's generator and feeds it to ``partial_fit`` batch after batch, with every
class named up front. To keep Python overhead off the hot path, one ``partial_fit`` call receives
several consecutive batches of the shuffled order: with ``shuffle=False`` both estimators then
make exactly the updates that one call per batch would make (SGD updates sample by sample; the
MLP splits the call into ``batch_size`` mini-batches itself). A test pins that equivalence.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction import DictVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from cases.rows import ALL_INPUTS, ModelInputs
from learning_engine.exceptions import DomainError
from training.algorithms import EPOCH_BASED, validate_hyperparameters
from training.artifacts import save_artifact
from training.evaluation import evaluate, plain
from training.faults import registered as registered_fault
from training.features import RowColumns, columns_of, feature_matrix, fit_vectorizer
from training.ranges import training_ranges

SPLITS = ("train", "validation", "test")

# Progress (0-100) at which each phase starts; the job's completion sets 100.
PROGRESS_FITTING = 5.0
PROGRESS_EVALUATING = 85.0
PROGRESS_SAVING = 95.0

# Rows per partial_fit call (rounded down to whole batches): large enough that the per-call
# validation overhead vanishes, small enough to report progress within an epoch.
ROWS_PER_CALL = 4096
# Gradient boosting is fitted in this many warm-started chunks so a cancel is seen mid-fit.
BOOSTING_CHUNKS = 10
# At most one in-between report (progress within an epoch or fit) per this many seconds.
PROGRESS_INTERVAL_S = 2.0
# Native threads (OpenMP, BLAS) per training job unless settings.TRAINING_THREADS says otherwise.
# One: a worker machine runs several workers (and a web process), and OpenMP's spinning threads
# on a busy machine are catastrophic (gradient boosting measured 16x slower with 2 threads than
# with 1 on a loaded 2-CPU machine). Scale out with more workers instead.
DEFAULT_THREADS = 1
# Probabilities are clipped here before the log in the log loss (as sklearn does).
_EPS = 1e-15


class TrainingError(DomainError):
    """The data cannot be trained on (empty split, a single label, a diverging fit)."""

    code = "training_failed"


@dataclass(frozen=True, slots=True)
class TrainingProgress:
    """One progress report. ``epoch`` is set once per finished epoch (a history entry)."""

    progress: float
    stage: str
    epoch: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None


@dataclass(slots=True)
class TrainingResult:
    pipeline: Pipeline
    algorithm: str
    hyperparameters: dict[str, Any]
    numeric_features: list[str]
    classes: list[str]
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    artifact_path: str | None = None
    artifact_sha256: str | None = None
    # The train split's min and max per numeric input (``training.ranges``): the model version keeps them.
    training_ranges: dict[str, dict[str, float]] = field(default_factory=dict)


Report = Callable[[TrainingProgress], None]


class _Reporter:
    """Sends reports; in-between ones (``tick``) at most once per interval."""

    def __init__(self, report: Report, interval: float) -> None:
        self._report = report
        self._interval = interval
        self._last = time.monotonic()

    def send(self, progress: float, stage: str, **kwargs: Any) -> None:
        self._report(TrainingProgress(progress=round(float(progress), 2), stage=stage, **kwargs))
        self._last = time.monotonic()

    def tick(self, progress: float, stage: str) -> None:
        if time.monotonic() - self._last >= self._interval:
            self.send(progress, stage)


def build_preprocessing() -> Pipeline:
    return Pipeline(
        [
            ("vectorizer", DictVectorizer(sparse=False)),
            # keep_empty_features: a finding absent from every training row still gets a column
            # (imputed 0), so the column count never depends on what happened to be observed.
            ("imputer", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scaler", StandardScaler()),
        ]
    )


def build_classifier(algorithm: str, params: Mapping[str, Any]) -> Any:
    seed = params["seed"]
    if algorithm == "logistic_regression":
        class_weight = None if params["class_weight"] == "none" else params["class_weight"]
        return LogisticRegression(
            C=params["C"], max_iter=params["max_iter"], class_weight=class_weight, random_state=seed
        )
    if algorithm == "sgd":
        return SGDClassifier(
            loss="log_loss",
            learning_rate="constant",
            eta0=params["learning_rate"],
            alpha=params["alpha"],
            random_state=seed,
            shuffle=False,  # the trainer shuffles each epoch itself (see the module docstring)
        )
    if algorithm == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=tuple(params["hidden_layers"]),
            learning_rate_init=params["learning_rate"],
            alpha=params["alpha"],
            batch_size=params["batch_size"],
            random_state=seed,
            shuffle=False,
        )
    if algorithm == "gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=params["max_iter"],
            learning_rate=params["learning_rate"],
            max_depth=params["max_depth"],
            max_leaf_nodes=params["max_leaf_nodes"],
            # Off so max_iter is what runs, and so the chunked warm-start fit equals one fit.
            early_stopping=False,
            random_state=seed,
        )
    raise TrainingError(f"Unknown algorithm {algorithm!r}.", code="invalid_algorithm")


def _sequence(rows: Iterable[Mapping[str, Any]] | None) -> Sequence[Mapping[str, Any]]:
    """A split as a sequence: as given when it is one (a dataset file's ``SplitRows``), else a list."""
    if rows is None:
        return []
    return rows if isinstance(rows, Sequence) else list(rows)


def _fit_preprocessing(
    preprocessing: Pipeline, columns: RowColumns, numeric_features: list[str], inputs: ModelInputs = ALL_INPUTS
) -> np.ndarray:
    """``preprocessing.fit_transform(feature_dicts(rows, numeric_features))``, from the columns.

    The same fitted steps and the same matrix, bit for bit (tests pin both), at a fraction of the
    cost: the vectorizer learns its vocabulary from the columns' distinct values and the matrix
    comes from ``feature_matrix`` (see ``training.features``), the imputer's medians from
    ``_column_medians``, and ``_transform`` applies the fitted steps without sklearn's per-call
    checks and copies. The scaler fits as sklearn fits it.
    """
    vectorizer = preprocessing.steps[0][1]
    fit_vectorizer(vectorizer, columns, numeric_features, inputs)
    X = feature_matrix(columns, vectorizer, numeric_features)
    # Every column but the numeric features' is 0/1 (one-hot, multi-hot), with no gaps.
    binary = np.ones(X.shape[1], dtype=bool)
    binary[[vectorizer.vocabulary_[name] for name in numeric_features if name in vectorizer.vocabulary_]] = False
    for _, step in preprocessing.steps[1:]:
        if _is_median_imputer(step):
            _fit_median_imputer(step, X, binary=binary)
        else:
            step.fit(X)
        X = _transform(step, X)
    return X


def _preprocess(preprocessing: Pipeline, columns: RowColumns, numeric_features: list[str]) -> np.ndarray:
    """``preprocessing.transform(feature_dicts(rows, numeric_features))``, from the columns."""
    X = feature_matrix(columns, preprocessing.steps[0][1], numeric_features)
    for _, step in preprocessing.steps[1:]:
        X = _transform(step, X)
    return X


def _transform(step: Any, X: np.ndarray) -> np.ndarray:
    """``step.transform(X)`` of a fitted step, for a float matrix of ours (changed in place).

    The median imputer fills each NaN with its column's statistic; the standard scaler subtracts
    the mean and divides by the scale in place, as its ``transform`` does after copying and
    checking its input. Same values (tests pin them); any other step transforms itself.
    """
    if _is_median_imputer(step):
        np.copyto(X, np.broadcast_to(step.statistics_, X.shape), where=np.isnan(X))
        return X
    if type(step) is StandardScaler:
        if step.with_mean:
            X -= step.mean_.astype(X.dtype, copy=False)
        if step.with_std:
            X /= step.scale_.astype(X.dtype, copy=False)
        return X
    return step.transform(X)


def _is_median_imputer(step: Any) -> bool:
    return (
        isinstance(step, SimpleImputer)
        and step.strategy == "median"
        and step.keep_empty_features
        and not step.add_indicator
        and isinstance(step.missing_values, float)
        and math.isnan(step.missing_values)
    )


def _fit_median_imputer(imputer: SimpleImputer, X: np.ndarray, *, binary: np.ndarray | None = None) -> SimpleImputer:
    """``imputer.fit(X)``, several times faster, to the same fitted state.

    ``SimpleImputer`` takes its medians with ``np.ma.median``, a full sort of a masked copy of X
    (70 ms of a 32,500 x 36 fit). ``_column_medians`` finds the same medians without it, and
    fitting on the one row of them leaves the imputer as fitting on X would: the median of one
    value is that value, a column without any value stays empty (imputed 0 with
    ``keep_empty_features``), and the width and dtype are X's. A test pins the equality.
    """
    if len(X) == 0:
        return imputer.fit(X)  # the imputer's own error for an empty matrix
    return imputer.fit(_column_medians(X, binary=binary).reshape(1, -1))


def _column_medians(X: np.ndarray, *, binary: np.ndarray | None = None) -> np.ndarray:
    """Each column's median over its non-NaN values (NaN for a column without any).

    The middle value, or the mean of the two middle values, of the sorted values, as
    ``np.ma.median`` and ``np.nanmedian`` take it. A 0/1 column without gaps (one-hot,
    multi-hot: most of ours) needs no sort: its count of zeros says what sits in the middle.
    ``binary`` marks the columns known to be such; without it they are found.
    """
    n, width = X.shape
    if binary is None:
        binary = ((X == 0) | (X == 1)).all(axis=0)
    medians = np.full(width, np.nan)
    zeros = n - X.sum(axis=0)[binary]
    low = (n - 1) // 2 >= zeros  # the sorted column's value at (n - 1) // 2 is 1
    high = n // 2 >= zeros  # ... and at n // 2
    medians[binary] = (low.astype(np.float64) + high.astype(np.float64)) / 2
    others = np.flatnonzero(~binary)
    for j, column in zip(others, X[:, others].T.copy(), strict=True):  # contiguous columns
        values = column[~np.isnan(column)]
        if len(values):
            medians[j] = np.median(values)
    return medians


def _log_loss(probabilities: np.ndarray, y_index: np.ndarray) -> float | None:
    """Mean negative log-likelihood of the true classes; rows of unknown labels (-1) excluded."""
    known = y_index >= 0
    if not known.any():
        return None
    picked = probabilities[np.flatnonzero(known), y_index[known]]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


def _split_metrics(classifier: Any, X: np.ndarray, y_index: np.ndarray) -> tuple[float | None, float | None]:
    """(log loss, accuracy) of ``classifier`` on one split; (None, None) for an empty split."""
    if len(X) == 0:
        return None, None
    probabilities = classifier.predict_proba(X)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == y_index))
    return _log_loss(probabilities, y_index), accuracy


def _check_finite(value: float | None, where: str) -> None:
    if value is not None and not math.isfinite(value):
        raise TrainingError(f"Training diverged ({where}: loss is not finite); lower the learning rate.")


def _fit_epochs(
    classifier: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    classes: np.ndarray,
    params: Mapping[str, Any],
    evaluate_epoch: Callable[[], dict[str, Any]],
    reporter: _Reporter,
) -> list[dict[str, Any]]:
    epochs = params["epochs"]
    batch_size = min(params["batch_size"], len(X))
    rows_per_call = max(batch_size, ROWS_PER_CALL // batch_size * batch_size)
    rng = np.random.default_rng(params["seed"])
    span = PROGRESS_EVALUATING - PROGRESS_FITTING
    history: list[dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        stage = f"Epoch {epoch}/{epochs}"
        order = rng.permutation(len(X))
        for start in range(0, len(X), rows_per_call):
            rows = order[start : start + rows_per_call]
            with warnings.catch_warnings():
                # The epoch's last rows may be fewer than a batch: the MLP warns, then (rightly)
                # makes them one smaller batch, exactly as a call per batch would.
                warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger than sample size")
                classifier.partial_fit(X[rows], y[rows], classes=classes)
            done = (epoch - 1 + (start + len(rows)) / len(X)) / epochs
            reporter.tick(PROGRESS_FITTING + span * done, stage)
        record = {"epoch": epoch, "epochs": epochs, **evaluate_epoch()}
        _check_finite(record["train_loss"], f"epoch {epoch}")
        history.append(record)
        metrics = {key: record[key] for key in ("train_loss", "val_loss", "val_accuracy")}
        reporter.send(PROGRESS_FITTING + span * epoch / epochs, stage, epoch=record, metrics=metrics)
    return history


def _fit_boosting(
    classifier: HistGradientBoostingClassifier, X: np.ndarray, y: np.ndarray, reporter: _Reporter
) -> None:
    total = classifier.max_iter
    step = max(1, math.ceil(total / BOOSTING_CHUNKS))
    classifier.set_params(warm_start=True)
    for done in range(step, total + step, step):
        classifier.set_params(max_iter=min(done, total))
        classifier.fit(X, y)
        reporter.tick(PROGRESS_FITTING + (PROGRESS_EVALUATING - PROGRESS_FITTING) * min(done, total) / total, "Fitting")
    # A later fit on the saved model must start afresh, not continue these trees.
    classifier.set_params(warm_start=False)


def train(
    rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    algorithm: str,
    hyperparameters: Mapping[str, Any],
    report: Report,
    artifact_name: str | None = None,
    progress_interval: float = PROGRESS_INTERVAL_S,
    threads: int | None = None,
    inputs: ModelInputs = ALL_INPUTS,
) -> TrainingResult:
    """Fit ``algorithm`` on the train split, report as it goes, evaluate on the test split.

    ``hyperparameters`` are completed with the algorithm's defaults (``training.algorithms``).
    With ``artifact_name`` the fitted model is saved (skops, default storage) and the result
    carries its path and sha256; without, nothing is written anywhere.
    ``threads`` bounds native threads (default ``settings.TRAINING_THREADS``, else 1).
    ``inputs``: what of a row the model may use (``ModelInputs.of`` the cohort's dictionary:
    demographics it marks unused get no feature); every input by default.
    Raises ``TrainingError`` for data that cannot be trained on, and whatever ``report`` raises.
    """
    if threads is None:
        threads = getattr(settings, "TRAINING_THREADS", None) or DEFAULT_THREADS
    with threadpool_limits(limits=threads):
        return _train(
            rows_by_split,
            algorithm=algorithm,
            hyperparameters=hyperparameters,
            report=report,
            artifact_name=artifact_name,
            progress_interval=progress_interval,
            inputs=inputs,
        )


def _train(
    rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    algorithm: str,
    hyperparameters: Mapping[str, Any],
    report: Report,
    artifact_name: str | None,
    progress_interval: float,
    inputs: ModelInputs,
) -> TrainingResult:
    params = validate_hyperparameters(algorithm, dict(hyperparameters))
    fault = registered_fault(algorithm)  # only the learning-loop simulation registers one
    base = fault.base if fault is not None else algorithm
    reporter = _Reporter(report, progress_interval)
    reporter.send(0.0, "Preparing features")

    train_rows = _sequence(rows_by_split.get("train"))
    if fault is not None and fault.rows is not None:
        train_rows = fault.rows(train_rows, params)
    validation_rows = _sequence(rows_by_split.get("validation"))
    test_rows = _sequence(rows_by_split.get("test"))
    if not len(train_rows):
        raise TrainingError("The training split is empty.", code="empty_split")
    if not len(test_rows):
        raise TrainingError("The test split is empty: there is nothing to evaluate the model on.", code="empty_split")
    train_columns = columns_of(train_rows)
    validation_columns = columns_of(validation_rows)
    if None in train_columns.labels.used_values():
        raise TrainingError("Some rows of the training split have no label.", code="missing_label")
    y_train = train_columns.label_strings()
    classes = sorted({str(label) for label in train_columns.labels.used_values()})
    if len(classes) < 2:
        raise TrainingError(
            f"The training split has a single label ({classes[0]!r}); a classifier needs at least two.",
            code="single_label",
        )

    numeric_features = train_columns.numeric_feature_names(inputs)
    preprocessing = build_preprocessing()
    X_train = _fit_preprocessing(preprocessing, train_columns, numeric_features, inputs)
    X_validation = (
        _preprocess(preprocessing, validation_columns, numeric_features)
        if len(validation_columns)
        else np.empty((0, X_train.shape[1]))
    )
    train_index = train_columns.label_index(classes)
    validation_index = validation_columns.label_index(classes)
    classifier = build_classifier(base, params)

    def split_metrics() -> dict[str, Any]:
        train_loss, _ = _split_metrics(classifier, X_train, train_index)
        val_loss, val_accuracy = _split_metrics(classifier, X_validation, validation_index)
        return {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}

    history: list[dict[str, Any]] = []
    if base in EPOCH_BASED:
        history = _fit_epochs(
            classifier,
            X_train,
            y_train,
            classes=np.array(classes, dtype=object),
            params=params,
            evaluate_epoch=split_metrics,
            reporter=reporter,
        )
        fit_metrics = {key: history[-1][key] for key in ("train_loss", "val_loss", "val_accuracy")}
    else:
        reporter.send(PROGRESS_FITTING, "Fitting")
        if isinstance(classifier, HistGradientBoostingClassifier):
            _fit_boosting(classifier, X_train, y_train, reporter)
        else:
            classifier.fit(X_train, y_train)
        if fault is not None and fault.fitted is not None:
            fault.fitted(classifier, params)
        fit_metrics = split_metrics()
        _check_finite(fit_metrics["train_loss"], "after fitting")

    pipeline = Pipeline([*preprocessing.steps, ("classifier", classifier)])

    reporter.send(PROGRESS_EVALUATING, "Evaluating", metrics=plain(fit_metrics))
    evaluation = evaluate(pipeline, test_rows, numeric_features=numeric_features)
    metrics = plain(
        {
            "accuracy": evaluation["accuracy"],
            "accuracy_ci": evaluation["accuracy_ci"],
            "f1_macro": evaluation["f1_macro"],
            "f1_macro_ci": evaluation["f1_macro_ci"],
            "auroc_macro": evaluation["auroc_macro"],
            "brier": evaluation["brier"],
            **fit_metrics,
            "train_size": len(train_columns),
            "validation_size": len(validation_columns),
            "test_size": len(test_rows),
        }
    )
    result = TrainingResult(
        pipeline=pipeline,
        algorithm=algorithm,
        hyperparameters=plain(params),
        numeric_features=list(numeric_features),
        classes=[str(label) for label in classes],
        metrics=metrics,
        history=plain(history),
        evaluation=evaluation,
        training_ranges=training_ranges(train_columns, numeric_features),
    )
    if artifact_name is not None:
        reporter.send(PROGRESS_SAVING, "Saving", metrics=metrics)
        result.artifact_path, result.artifact_sha256 = save_artifact(
            pipeline, numeric_features=result.numeric_features, classes=result.classes, name=artifact_name
        )
    return result
