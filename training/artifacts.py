"""Model artifacts: a fitted pipeline saved with skops (never pickle) in the default storage.

An artifact is the skops dump of a plain dict::

    {"pipeline": Pipeline, "numeric_features": [...], "classes": [...], "format_version": 1}

saved as ``models/<name>.skops`` through ``django.core.files.storage.default_storage`` (local
files on one machine, shared object storage on many). Its sha256 goes into the job row.

Loading is the dangerous direction, so it checks in this order and refuses at the first failure:

1. the bytes' sha256 equals the recorded one, checked before anything parses them (a file
   changed in storage is never deserialised, however harmless it looks);
2. every type the file would instantiate is either trusted by skops by default (sklearn, numpy,
   scipy basics) or one of ``TRUSTED_TYPES``; anything else (a custom class, a function inside a
   ``FunctionTransformer``) is refused;
3. the content is a format-1 artifact dict with a pipeline in it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import skops.io
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from sklearn.pipeline import Pipeline
from skops.io.exceptions import UntrustedTypesFoundException

from learning_engine.exceptions import DomainError

FORMAT_VERSION = 1
DIRECTORY = "models"
EXTENSION = ".skops"

# The non-default types our four pipelines need (checked with ``skops.io.get_untrusted_types``
# for each algorithm, binary and multiclass): DictVectorizer's dtype, the MLP's optimizers and
# the boosted trees. Add a type here only after reading what it can do when loaded.
TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")


class ArtifactError(DomainError):
    """A stored artifact that cannot be used. A server-side fault, not the client's: 500."""

    code = "artifact_invalid"
    status_code: int = 500  # type: ignore[assignment]  # DomainError pins 409 as a Literal


class ArtifactIntegrityError(ArtifactError):
    """The stored bytes are not the ones that were saved (sha256 mismatch)."""

    code = "artifact_integrity"


class ArtifactUntrusted(ArtifactError):
    """The artifact would instantiate a type outside the trusted list."""

    code = "artifact_untrusted"


@dataclass(frozen=True, slots=True)
class ModelArtifact:
    pipeline: Pipeline
    numeric_features: list[str]
    classes: list[str]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_artifact(pipeline: Pipeline, *, numeric_features: list[str], classes: list[str]) -> bytes:
    """The artifact's bytes (skops)."""
    return skops.io.dumps(
        {
            "pipeline": pipeline,
            "numeric_features": [str(name) for name in numeric_features],
            "classes": [str(label) for label in classes],
            "format_version": FORMAT_VERSION,
        }
    )


def save_artifact(pipeline: Pipeline, *, numeric_features: list[str], classes: list[str], name: str) -> tuple[str, str]:
    """Save to the default storage as ``models/<name>.skops``; returns (path, sha256).

    The path is the storage's: if the name is taken, the storage picks a free one rather than
    overwrite an artifact some version may point to.
    """
    if not _NAME.match(name):
        raise ValueError(f"Artifact name {name!r} must be letters, digits, '.', '_' or '-'.")
    data = dump_artifact(pipeline, numeric_features=numeric_features, classes=classes)
    path = default_storage.save(f"{DIRECTORY}/{name}{EXTENSION}", ContentFile(data))
    return path, sha256_of(data)


def delete_artifact(path: str) -> None:
    """Remove an artifact (e.g. one saved by a job that then lost its lease). Missing is fine."""
    if path and default_storage.exists(path):
        default_storage.delete(path)


def loads_artifact(data: bytes, expected_sha256: str) -> ModelArtifact:
    """Checked deserialisation of an artifact's bytes (see the module docstring for the order)."""
    actual = sha256_of(data)
    if not expected_sha256 or actual != expected_sha256.lower():
        raise ArtifactIntegrityError(
            f"The artifact's sha256 is {actual}, not the recorded {expected_sha256 or '(none)'}; refusing to load it."
        )
    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as exc:  # a corrupt archive with a matching hash: saved broken
        raise ArtifactError(f"The artifact cannot be read: {exc}") from exc
    if untrusted:
        raise ArtifactUntrusted(
            f"The artifact contains untrusted types ({', '.join(untrusted)}); refusing to load it.",
            untrusted_types=untrusted,
        )
    try:
        content: Any = skops.io.loads(data, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException as exc:  # belt and braces
        raise ArtifactUntrusted(f"The artifact contains untrusted types: {exc}") from exc
    if (
        not isinstance(content, dict)
        or content.get("format_version") != FORMAT_VERSION
        or not isinstance(content.get("pipeline"), Pipeline)
    ):
        raise ArtifactError(f"The artifact is not a format-{FORMAT_VERSION} model artifact.")
    return ModelArtifact(
        pipeline=content["pipeline"],
        numeric_features=[str(name) for name in content["numeric_features"]],
        classes=[str(label) for label in content["classes"]],
    )


def load_artifact(path: str, expected_sha256: str) -> ModelArtifact:
    """Read ``path`` from the default storage and load it, checked (``loads_artifact``)."""
    with default_storage.open(path, "rb") as handle:
        data = handle.read()
    return loads_artifact(data, expected_sha256)
