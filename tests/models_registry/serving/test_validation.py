"""Serving loads only artifacts whose exact bytes (sha256) passed validation; validate_artifacts records it."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from models_registry.models import ModelVersion
from models_registry.registry.models import ArtifactRejection
from tests.models_registry.serving.factories import (
    COLD_FEATURES,
    trained_artifact,
)
from training.artifacts import sha256_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/diagnosis/predict/"


def predict(client):
    return client.post(PREDICT, COLD_FEATURES, format="json")


def forget_validation(version: ModelVersion) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(artifact_validated_sha256="", artifact_validation={})
    version.refresh_from_db()


def test_a_registered_worker_artifact_carries_its_validation_record(version):
    assert version.artifact_validated
    assert version.artifact_validated_sha256 == version.artifact_sha256
    assert version.artifact_validation["by"] == "worker"
    assert version.artifact_validation["validator"] == 1
    assert version.artifact_validation["steps"][-1] == "LogisticRegression"


def test_serving_refuses_an_artifact_without_a_validation_on_record(client, version):
    forget_validation(version)

    response = predict(client)

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "artifact_unvalidated"
    rejection = ArtifactRejection.objects.get(version=version)
    assert (rejection.code, rejection.purpose) == ("artifact_unvalidated", "serving")


def test_serving_refuses_bytes_swapped_after_validation_even_with_a_matching_sha256(client, version):
    """Someone replaces the file and the recorded sha256: the validation record names the old bytes."""
    path, _, _ = trained_artifact(seed=5)
    with default_storage.open(path, "rb") as handle:
        other = handle.read()
    default_storage.delete(version.artifact)
    default_storage.save(version.artifact, ContentFile(other))
    ModelVersion.objects.filter(pk=version.pk).update(artifact_sha256=sha256_of(other))

    response = predict(client)

    assert response.status_code == 409
    assert response.json()["code"] == "artifact_unvalidated"


def test_validate_artifacts_validates_in_the_sandbox_and_serving_resumes(client, version, capsys):
    forget_validation(version)
    assert predict(client).status_code == 409

    call_command("validate_artifacts", "--dry-run")
    assert "would be validated" in capsys.readouterr().out
    version.refresh_from_db()
    assert not version.artifact_validated

    call_command("validate_artifacts")

    out = capsys.readouterr().out
    assert "1 passed, 0 refused" in out
    version.refresh_from_db()
    assert version.artifact_validated
    assert (version.artifact_validation["sandbox"], version.artifact_validation["by"]) == (True, "validate_artifacts")
    from models_registry.serving.model_cache import MODEL_CACHE

    MODEL_CACHE.clear()
    assert predict(client).status_code == 200


def test_validate_artifacts_refuses_and_audits_a_broken_artifact(version):
    forget_validation(version)
    broken = b"not a zip"
    default_storage.delete(version.artifact)
    default_storage.save(version.artifact, ContentFile(broken))
    ModelVersion.objects.filter(pk=version.pk).update(artifact_sha256=sha256_of(broken))

    with pytest.raises(CommandError, match="1 artifacts were refused"):
        call_command("validate_artifacts")

    rejection = ArtifactRejection.objects.get(version=version)
    assert (rejection.code, rejection.purpose) == ("artifact_invalid", "validate")
    version.refresh_from_db()
    assert not version.artifact_validated
