"""Model artifacts: a fitted pipeline saved with skops (never pickle) in the default storage.

An artifact is the skops dump of a plain dict::

    {"pipeline": Pipeline, "numeric_features": [...], "classes": [...], "format_version": 1}

saved as ``models/<name>.skops`` through ``django.core.files.storage.default_storage`` (local
files on one machine, shared object storage on many). Its sha256 goes into the job row.

Loading is the dangerous direction, so it checks in this order and refuses at the first failure:

1. the bytes' sha256 equals the recorded one, checked before anything parses them (a file
   changed in storage is never deserialised, however harmless it looks);
3. the zip archive (a skops file is one) stays within the limits of ``ZipLimits`` (members,
   total uncompressed size, compression ratio), read from its directory before any member is
   inflated, so a small file that inflates to gigabytes is refused without inflating it;
4. every type the file would instantiate is either trusted by skops by default (sklearn, numpy,
   scipy basics) or one of ``TRUSTED_TYPES``; anything else (a custom class, a function inside a
   ``FunctionTransformer``) is refused;
5. the content is a format-1 artifact dict whose pipeline passes the structural validation of
   ``training.artifact_validation`` (tree indices in range, shapes, dtypes, finite numbers): a
   file made only of trusted types can still crash scikit-learn's native predict code.

See docs/artifacts.md.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import skops.io
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from sklearn.pipeline import Pipeline
from skops.io.exceptions import UntrustedTypesFoundException

from learning_engine.exceptions import DomainError
from training.artifact_validation import InvalidArtifact, validate_pipeline

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


class ArtifactUnusable(ArtifactError):
    """A well-formed artifact that cannot predict the rows it is evaluated on."""

    code = "artifact_unusable"


class ArtifactTooLarge(ArtifactError):
    """The archive is beyond the zip limits (members, inflated size, compression ratio)."""

    code = "artifact_too_large"


class ArtifactTooSlow(ArtifactError):
    """A valid model whose median single-row prediction is above ``ARTIFACT_MAX_PREDICT_MS``."""

    code = "artifact_too_slow"


@dataclass(frozen=True, slots=True)
class ModelArtifact:
    pipeline: Pipeline
    numeric_features: list[str]
    classes: list[str]
    validation: dict[str, Any] = field(default_factory=dict)  # what validate_pipeline checked


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """Bounds on a skops archive, checked from its central directory before anything is inflated.

    ``zipfile`` never returns more than a member's declared size, so bounding the declared sizes
    bounds what reading the archive can allocate, whatever the compressed stream holds.
    """

    max_members: int
    max_uncompressed_bytes: int
    max_schema_bytes: int
    max_ratio: int

    @classmethod
    def from_settings(cls) -> ZipLimits:
        return cls(
            max_members=settings.ARTIFACT_MAX_MEMBERS,
            max_uncompressed_bytes=settings.ARTIFACT_MAX_UNCOMPRESSED_BYTES,
            max_schema_bytes=settings.ARTIFACT_MAX_SCHEMA_BYTES,
            max_ratio=settings.ARTIFACT_MAX_COMPRESSION_RATIO,
        )


def check_zip_limits(data: bytes, limits: ZipLimits) -> None:
    """Refuse (``ArtifactTooLarge``) an archive beyond ``limits``; ``ArtifactError`` if it is no zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"The artifact cannot be read as a skops (zip) file: {exc}") from None
    if len(members) > limits.max_members:
        raise ArtifactTooLarge(f"The artifact has {len(members)} members; the limit is {limits.max_members}.")
    total = 0
    for member in members:
        size, packed = member.file_size, member.compress_size
        total += size
        if member.filename == "schema.json" and size > limits.max_schema_bytes:
            raise ArtifactTooLarge(
                f"The artifact's schema.json inflates to {size} bytes; the limit is {limits.max_schema_bytes}."
            )
        if size > limits.max_ratio * max(packed, 1) and size > 1024 * 1024:
            raise ArtifactTooLarge(
                f"The artifact's member {member.filename[:100]!r} inflates {size // max(packed, 1)}-fold; "
                f"the limit is {limits.max_ratio}."
            )
    if total > limits.max_uncompressed_bytes:
        raise ArtifactTooLarge(f"The artifact inflates to {total} bytes; the limit is {limits.max_uncompressed_bytes}.")


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


def check_artifact_bytes(data: bytes, expected_sha256: str, limits: ZipLimits | None = None) -> None:
    """The checks before deserialisation: sha256, zip limits, trusted types (module docstring, 1-4)."""
    actual = sha256_of(data)
    if not expected_sha256 or actual != expected_sha256.lower():
        raise ArtifactIntegrityError(
            f"The artifact's sha256 is {actual}, not the recorded {expected_sha256 or '(none)'}; refusing to load it."
        )
    check_zip_limits(data, limits or ZipLimits.from_settings())
    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as exc:  # a corrupt archive with a matching hash: saved broken
        raise ArtifactError(f"The artifact cannot be read: {exc}") from exc
    if untrusted:
        raise ArtifactUntrusted(
            f"The artifact contains untrusted types ({', '.join(untrusted)}); refusing to load it.",
            untrusted_types=untrusted,
        )


def loads_artifact(data: bytes, expected_sha256: str, limits: ZipLimits | None = None) -> ModelArtifact:
    """Checked deserialisation of an artifact's bytes (see the module docstring for the order)."""
    content = _checked_content(data, expected_sha256, limits)
    try:
        validation = validate_pipeline(
            content["pipeline"], classes=content["classes"], numeric_features=content["numeric_features"]
        )
    except InvalidArtifact as exc:
        raise ArtifactError(f"The artifact failed structural validation: {exc}") from None
    return ModelArtifact(
        pipeline=content["pipeline"],
        numeric_features=list(content["numeric_features"]),
        classes=list(content["classes"]),
        validation=validation,
    )


def loads_unvalidated(data: bytes, expected_sha256: str, limits: ZipLimits | None = None) -> ModelArtifact:
    """``loads_artifact`` without the structural validation: never for use, only for the sandbox's
    tests, which show that a crash in the sandbox stays there (``training.artifact_sandbox``)."""
    content = _checked_content(data, expected_sha256, limits)
    return ModelArtifact(
        pipeline=content["pipeline"],
        numeric_features=list(content["numeric_features"]),
        classes=list(content["classes"]),
    )


def _checked_content(data: bytes, expected_sha256: str, limits: ZipLimits | None) -> dict[str, Any]:
    check_artifact_bytes(data, expected_sha256, limits)
    try:
        content: Any = skops.io.loads(data, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException as exc:  # belt and braces
        raise ArtifactUntrusted(f"The artifact contains untrusted types: {exc}") from exc
    except Exception as exc:  # a corrupt member (an array that is not one, a wrong record type)
        raise ArtifactError(f"The artifact cannot be read: {type(exc).__name__}: {exc}") from None
    if (
        type(content) is not dict
        or set(content) != {"pipeline", "numeric_features", "classes", "format_version"}
        or content["format_version"] != FORMAT_VERSION
        or type(content["numeric_features"]) is not list
        or type(content["classes"]) is not list
        or any(type(label) is not str for label in content["classes"])
    ):
        raise ArtifactError(f"The artifact is not a format-{FORMAT_VERSION} model artifact.")
    return content


def load_artifact(path: str, expected_sha256: str) -> ModelArtifact:
    """Read ``path`` from the default storage and load it, checked (``loads_artifact``)."""
    with default_storage.open(path, "rb") as handle:
        data = handle.read()
    return loads_artifact(data, expected_sha256)
