"""Loaded models, per process and per version.

Loading is the slow, dangerous step (the artifact's sha256 is checked before anything parses it,
then skops loads it with an explicit list of trusted types: ``training.artifacts``), so each
process does it once per version and keeps the result. Versions are immutable (a new model is a
new version), so a loaded model never goes stale; the router drops the ones no route serves any
more whenever it reloads its table (``retain``).

A loaded model also carries the label texts of its training data (``{code: label}``, read once
from the version's dataset file), so an answer can name the diagnosis, not only code it, and its
version's data dictionary check (``models_registry.serving.inputs.DictionaryCheck``: the dictionary version
it was trained under, with its training ranges), read with the version row: a warm request reads
neither.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from models_registry.serving.inputs import DictionaryCheck
from training.features import FINDING_PREFIX, features
from training.row_predictor import RowPredictor, row_predictor

if TYPE_CHECKING:
    # Only a type: the router imports this module (``_retain_loaded_models``).
    from models_registry.serving.router import Arm

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    version_id: int
    version: str
    pipeline: Any
    numeric_features: list[str]
    classes: list[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    # None: the version recorded no dictionary version (serving falls back to the cohort's current).
    check: DictionaryCheck | None = None
    # One row's numpy path (training.row_predictor), made at load; None: the pipeline's own.
    row_predictor: RowPredictor | None = None

    def label(self, code: str) -> str:
        """The diagnosis text the training data gave ``code``; the code itself when it gave none."""
        return self.labels.get(code) or code

    def probabilities(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Class probabilities of dataset-shaped rows, ``[i, j]`` for ``classes[j]``.

        One row takes the definition's path (``features`` then ``predict_proba``, or the same
        arithmetic without scikit-learn's per-call checks: ``training.row_predictor``); a batch takes
        the column path of ``training.evaluation.probabilities_of`` (the same matrix, built without a
        dict per row; training's tests pin the equality).
        """
        if len(rows) == 1:
            row = features(rows[0], self.numeric_features)
            found = self.row_predictor(row) if self.row_predictor is not None else None
            return found if found is not None else np.asarray(self.pipeline.predict_proba([row]))
        from training.evaluation import probabilities_of

        return probabilities_of(self.pipeline, rows, numeric_features=self.numeric_features)


class ModelCache:
    """``get(arm)`` loads a version's model once per process; thread-safe."""

    def __init__(self) -> None:
        self._models: dict[tuple[int, str], LoadedModel] = {}
        self._lock = threading.Lock()
        self.loads = 0  # for tests: how many artifacts this process deserialised

    def get(self, arm: Arm) -> LoadedModel:
        key = (arm.version_id, arm.artifact_sha256)
        model = self._models.get(key)
        if model is not None:
            return model
        # One loader at a time: two requests for a cold version must not both deserialise it.
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = load(arm)
                self._models[key] = model
                self.loads += 1
        return model

    def retain(self, version_ids: set[int]) -> None:
        """Drop every loaded model whose version is not in ``version_ids``."""
        with self._lock:
            for key in [key for key in self._models if key[0] not in version_ids]:
                del self._models[key]

    def clear(self) -> None:
        """Forget every loaded model (and the load count): a cold process."""
        with self._lock:
            self._models.clear()
            self.loads = 0

    def __len__(self) -> int:
        return len(self._models)


def load(arm: Arm) -> LoadedModel:
    """Load ``arm``'s artifact, checked (sha256 first, then trusted types), its label texts and
    its version's dictionary check."""
    from models_registry.registry.models import ModelVersion

    version = ModelVersion.objects.select_related("model_type", "dictionary__cohort").get(pk=arm.version_id)
    artifact = _load_artifact(version)
    numeric_features = list(artifact.numeric_features)
    check = None
    if version.dictionary:
        # The findings the artifact really reads are required, whatever the dictionary marks.
        check = DictionaryCheck.of(version.dictionary, version.training_ranges).reading(
            finding_inputs(numeric_features)
        )
    return LoadedModel(
        version_id=arm.version_id,
        version=arm.version,
        pipeline=artifact.pipeline,
        numeric_features=numeric_features,
        classes=[str(label) for label in artifact.pipeline.classes_],
        labels=label_texts(arm.dataset_id),
        check=check,
        row_predictor=row_predictor(artifact.pipeline),
    )


def finding_inputs(numeric_features: Sequence[str]) -> list[str]:
    """The findings keys among an artifact's numeric features (``finding:<key>``)."""
    return [name.removeprefix(FINDING_PREFIX) for name in numeric_features if name.startswith(FINDING_PREFIX)]


def _load_artifact(version: Any) -> Any:
    # The registry's loader: sha256 before anything parses the bytes, then the trusted types; a
    # refusal is audited (ArtifactRejection) and raised (ArtifactRefused, 409 with its code).
    # Serving also requires a passed validation of these very bytes on record (artifact_unvalidated).
    return version.load_artifact(purpose="serving", require_validated=True)


def label_texts(dataset_id: int | None) -> dict[str, str]:
    """``{code: label text}`` from a dataset file (sha256 checked); {} when there is none.

    Best effort: a prediction is still right without its label text, so a missing or changed
    file only costs the text (and a warning), never the answer.
    """
    if dataset_id is None:
        return {}

    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.dataset_format import DatasetFileChanged, read_bytes
    from training.models import DatasetSnapshot

    try:
        snapshot = DatasetSnapshot.objects.get(pk=dataset_id)
        if not snapshot.file:
            return {}
        try:
            data = read_bytes(snapshot)
        except DatasetFileChanged:
            logger.warning("Dataset %s's file does not match its sha256; answers carry codes only.", dataset_id)
            return {}
        table = pq.read_table(pa.BufferReader(data), columns=["label", "label_text"])
    except Exception as exc:  # best effort (see the docstring); the type says what went wrong
        logger.warning("Label texts of dataset %s unavailable (%s).", dataset_id, type(exc).__name__)
        return {}
    counts: Counter[tuple[str, str]] = Counter(
        zip(table.column("label").to_pylist(), table.column("label_text").to_pylist(), strict=True)
    )
    texts: dict[str, str] = {}
    for (code, text), _count in counts.most_common():  # the most frequent text of each code
        if code and text and code not in texts:
            texts[str(code)] = str(text)
    return texts


MODEL_CACHE = ModelCache()
