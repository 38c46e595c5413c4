"""Artifact integrity: a changed byte or an untrusted type is refused before deserialisation, and audited."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest
import skops.io
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from learning_engine.audit import AppendOnlyError
from models_registry.models import ModelVersion
from models_registry.registry.models import ArtifactRefused, ArtifactRejection
from tests.conftest import jwt_client
from tests.models_registry.registry.factories import ModelVersionFactory, artifact_bytes, external_completed_job
from training.artifacts import dump_artifact, sha256_of

pytestmark = pytest.mark.django_db


def doubled(values: Any) -> Any:
    """A custom function: skops cannot know what loading it would run, so it is untrusted."""
    return np.asarray(values) * 2


@pytest.fixture
def version(snapshot, engineer) -> ModelVersion:
    return ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)


def overwrite(path: str, data: bytes) -> None:
    default_storage.delete(path)
    assert default_storage.save(path, ContentFile(data)) == path


def one_byte_changed(data: bytes) -> bytes:
    position = len(data) // 2
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def untrusted_bytes(version: ModelVersion) -> bytes:
    """The version's model with a FunctionTransformer(doubled) in front of its classifier."""
    model = version.load_artifact()
    steps = [*model.pipeline.steps[:-1], ("doubled", FunctionTransformer(doubled)), model.pipeline.steps[-1]]
    return dump_artifact(Pipeline(steps), numeric_features=model.numeric_features, classes=model.classes)


def test_an_intact_artifact_loads_without_an_audit_row(version):
    loaded = version.load_artifact(purpose="test")
    assert loaded.classes == ["J06.9", "J18.9"]
    assert not ArtifactRejection.objects.exists()


def test_a_tampered_artifact_is_refused_before_deserialisation_with_an_audit_row(version, lead):
    overwrite(version.artifact, one_byte_changed(artifact_bytes(version)))

    with (
        mock.patch.object(skops.io, "loads", side_effect=AssertionError("deserialised")) as loads,
        mock.patch.object(skops.io, "get_untrusted_types", side_effect=AssertionError("parsed")) as parsed,
        pytest.raises(ArtifactRefused) as refused,
    ):
        version.load_artifact(by=lead, purpose="serving")

    loads.assert_not_called()
    parsed.assert_not_called()
    assert refused.value.code == "artifact_integrity"
    assert "sha256" in refused.value.message
    assert version.version in refused.value.message
    rejection = ArtifactRejection.objects.get()
    assert (rejection.version, rejection.code, rejection.purpose, rejection.actor) == (
        version,
        "artifact_integrity",
        "serving",
        lead,
    )
    assert version.artifact_sha256 in rejection.detail


def test_a_tampered_artifact_makes_compare_a_409_with_the_code(snapshot, version, engineer, lead):
    other = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5})
    overwrite(other.artifact, one_byte_changed(artifact_bytes(other)))

    with mock.patch.object(skops.io, "loads", wraps=skops.io.loads) as loads:
        response = jwt_client(lead).get(f"/api/v1/model-types/diagnosis/compare/?a={version.version}&b={other.version}")

    assert response.status_code == 409
    assert response.json()["code"] == "artifact_integrity"
    assert response.json()["version"] == other.version
    # Only the intact artifact was deserialised.
    assert loads.call_count == 1
    rejection = ArtifactRejection.objects.get()
    assert (rejection.version, rejection.purpose, rejection.actor) == (other, "compare", lead)


def test_an_artifact_with_an_untrusted_type_is_refused_unloaded(version, lead):
    data = untrusted_bytes(version)
    overwrite(version.artifact, data)
    ModelVersion.objects.filter(pk=version.pk).update(artifact_sha256=sha256_of(data))
    version.refresh_from_db()

    with (
        mock.patch.object(skops.io, "loads", side_effect=AssertionError("deserialised")) as loads,
        pytest.raises(ArtifactRefused) as refused,
    ):
        version.load_artifact(by=lead, purpose="compare")

    loads.assert_not_called()
    assert refused.value.code == "artifact_untrusted"
    assert "doubled" in refused.value.message
    assert ArtifactRejection.objects.get().code == "artifact_untrusted"


def test_a_missing_artifact_file_is_refused_with_an_audit_row(version):
    default_storage.delete(version.artifact)
    with pytest.raises(ArtifactRefused) as refused:
        version.load_artifact(purpose="compare")
    assert refused.value.code == "artifact_missing"
    assert ArtifactRejection.objects.get().code == "artifact_missing"


def test_an_upload_with_an_untrusted_type_is_400_and_stores_nothing(snapshot, version, engineer):
    data = untrusted_bytes(version)
    job = external_completed_job(snapshot, by=engineer)
    stored_before = sorted(default_storage.listdir("models")[1])

    with mock.patch.object(skops.io, "loads", side_effect=AssertionError("deserialised")) as loads:
        response = jwt_client(engineer).post(
            "/api/v1/model-types/diagnosis/versions/upload/",
            {"job": job.pk, "artifact": SimpleUploadedFile("model.skops", data)},
            format="multipart",
        )

    loads.assert_not_called()
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "artifact_untrusted"
    assert any("doubled" in name for name in body["untrusted_types"])
    assert not ModelVersion.objects.filter(job=job).exists()
    assert sorted(default_storage.listdir("models")[1]) == stored_before


def test_artifact_rejections_are_append_only(version):
    default_storage.delete(version.artifact)
    with pytest.raises(ArtifactRefused):
        version.load_artifact()
    rejection = ArtifactRejection.objects.get()
    rejection.detail = "Nothing happened."
    with pytest.raises(AppendOnlyError):
        rejection.save()
    with pytest.raises(AppendOnlyError):
        rejection.delete()
    with pytest.raises(AppendOnlyError):
        ArtifactRejection.objects.all().delete()
