"""Hostile uploads through the API: refused with 400 and an audit row, the web process untouched.

The web process (this test process) never deserialises an upload: skops.io.loads is made to fail
the test if it is called here. Loading, validation and evaluation happen in the sandbox child.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import skops.io
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from models_registry.models import ModelVersion
from models_registry.registry.models import ArtifactRejection
from tests.conftest import jwt_client
from tests.models_registry.registry.factories import (
    artifact_bytes,
    external_completed_job,
    train_artifact,
)
from tests.training.artifact_crafting import (
    crafted,
    hidden_branch,
    out_of_range_root,
    scaled_feature_threshold,
    zip_bomb,
)
from training import artifact_sandbox
from training.artifacts import sha256_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/model-types/diagnosis/versions/upload/"


@pytest.fixture
def boosted(snapshot) -> Any:
    return train_artifact(snapshot, algorithm="gradient_boosting", max_iter=5)


@pytest.fixture
def no_loads_here():
    with mock.patch.object(skops.io, "loads", side_effect=AssertionError("deserialised in the web process")) as loads:
        yield loads


def upload(user: Any, job: Any, data: bytes) -> Any:
    body = {"job": job.pk, "artifact": SimpleUploadedFile("model.skops", data)}
    return jwt_client(user).post(URL, body, format="multipart")


def assert_refused_and_audited(response: Any, job: Any, data: bytes, engineer: Any, code: str) -> ArtifactRejection:
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert not ModelVersion.objects.filter(job=job).exists()
    rejection = ArtifactRejection.objects.get(job=job)
    assert (rejection.version, rejection.code, rejection.purpose, rejection.actor, rejection.sha256) == (
        None,
        code,
        "upload",
        engineer,
        sha256_of(data),
    )
    return rejection


def test_the_out_of_range_tree_is_a_400_with_an_audit_row(engineer, snapshot, boosted, no_loads_here):
    job = external_completed_job(snapshot, by=engineer)
    data = crafted(boosted, out_of_range_root)
    stored_before = sorted(default_storage.listdir("models")[1])

    response = upload(engineer, job, data)

    rejection = assert_refused_and_audited(response, job, data, engineer, "artifact_invalid")
    assert "child index outside the tree" in rejection.detail
    assert sorted(default_storage.listdir("models")[1]) == stored_before
    no_loads_here.assert_not_called()


def test_the_hidden_branch_tree_is_a_400_not_a_201(engineer, snapshot, boosted, no_loads_here):
    job = external_completed_job(snapshot, by=engineer)
    feature = int(boosted.pipeline.named_steps["vectorizer"].vocabulary_["finding:temperature_c"])
    data = crafted(boosted, hidden_branch(feature, scaled_feature_threshold(boosted.pipeline, feature, 1e4)))

    response = upload(engineer, job, data)

    assert_refused_and_audited(response, job, data, engineer, "artifact_invalid")


def test_a_crash_in_the_sandbox_is_a_400_and_the_web_process_lives_on(engineer, snapshot, boosted, monkeypatch):
    """With the child's validation turned off, the out-of-range tree reaches sklearn's predict
    in the child, which dies of a segmentation fault; the parent answers 400."""
    monkeypatch.setattr(artifact_sandbox, "VALIDATE_IN_CHILD", False)
    job = external_completed_job(snapshot, by=engineer)
    data = crafted(boosted, out_of_range_root)

    response = upload(engineer, job, data)

    rejection = assert_refused_and_audited(response, job, data, engineer, "artifact_invalid")
    assert "crashed the evaluation process (SIG" in rejection.detail
    # Still here, and still serving requests: a valid upload for another job goes through.
    other = external_completed_job(snapshot, by=engineer)
    assert upload(engineer, other, artifact_bytes(boosted)).status_code == 201


def test_a_zip_bomb_is_a_400_before_anything_inflates(engineer, snapshot, no_loads_here):
    job = external_completed_job(snapshot, by=engineer)
    data = zip_bomb()

    with mock.patch.object(artifact_sandbox, "evaluate_in_sandbox", side_effect=AssertionError("sandboxed")):
        response = upload(engineer, job, data)

    assert_refused_and_audited(response, job, data, engineer, "artifact_too_large")


def test_an_upload_past_the_sandbox_memory_limit_is_a_400(engineer, snapshot, boosted, settings):
    settings.ARTIFACT_SANDBOX_MEMORY_BYTES = 64 * 1024 * 1024  # too little to even import numpy
    job = external_completed_job(snapshot, by=engineer)
    data = artifact_bytes(boosted)

    response = upload(engineer, job, data)

    rejection = assert_refused_and_audited(response, job, data, engineer, "artifact_invalid")
    assert "evaluation" in rejection.detail


def test_an_upload_past_the_sandbox_cpu_limit_is_a_400(engineer, snapshot, boosted, settings):
    settings.ARTIFACT_SANDBOX_CPU_SECONDS = 0  # the child's first CPU second ends it (SIGXCPU)
    job = external_completed_job(snapshot, by=engineer)
    data = artifact_bytes(boosted)

    response = upload(engineer, job, data)

    rejection = assert_refused_and_audited(response, job, data, engineer, "artifact_invalid")
    assert "SIGXCPU" in rejection.detail or "SIGKILL" in rejection.detail


def test_an_upload_slower_than_the_latency_limit_is_a_400(engineer, snapshot, boosted, settings):
    # Any real model takes more than 0 ms a row: a valid model that is "too slow" for this limit.
    settings.ARTIFACT_MAX_PREDICT_MS = 0
    job = external_completed_job(snapshot, by=engineer)
    data = artifact_bytes(boosted)

    response = upload(engineer, job, data)

    rejection = assert_refused_and_audited(response, job, data, engineer, "artifact_too_slow")
    assert "ARTIFACT_MAX_PREDICT_MS" in rejection.detail
    assert response.json()["limit_ms"] == 0
    assert response.json()["median_ms"] >= 0


def test_the_default_latency_limit_takes_the_demo_models(engineer, snapshot, boosted, settings):
    job = external_completed_job(snapshot, by=engineer)

    response = upload(engineer, job, artifact_bytes(boosted))

    assert response.status_code == 201, response.json()
    latency = ModelVersion.objects.get(job=job).performance.get(source="offline").metrics["latency_ms"]
    assert latency["median"] < settings.ARTIFACT_MAX_PREDICT_MS / 10


def test_a_refused_upload_leaves_the_job_open_for_a_corrected_artifact(engineer, snapshot, boosted):
    job = external_completed_job(snapshot, by=engineer)

    assert upload(engineer, job, b"not a zip").status_code == 400
    response = upload(engineer, job, artifact_bytes(boosted))

    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get(job=job)
    assert version.artifact_validated
    assert version.artifact_validation["sandbox"] is True
    assert version.artifact_validation["steps"][-1] == "HistGradientBoostingClassifier"


def test_after_the_attempt_limit_a_job_takes_no_more_uploads(engineer, snapshot, boosted, settings):
    settings.ARTIFACT_UPLOAD_MAX_ATTEMPTS = 2
    job = external_completed_job(snapshot, by=engineer)

    refusals = [upload(engineer, job, b"not a zip %d" % i).status_code for i in range(2)]
    with mock.patch.object(artifact_sandbox, "evaluate_in_sandbox", side_effect=AssertionError("sandboxed")):
        response = upload(engineer, job, artifact_bytes(boosted))

    assert refusals == [400, 400]
    assert response.status_code == 409
    assert response.json()["code"] == "upload_attempts_exhausted"
    assert ArtifactRejection.objects.filter(job=job).count() == 2
    assert not ModelVersion.objects.filter(job=job).exists()


def test_uploads_are_throttled_per_user(engineer, snapshot, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "artifact_upload": "2/hour"}
    job = external_completed_job(snapshot, by=engineer)

    answers = [upload(engineer, job, b"not a zip").status_code for _ in range(3)]

    assert answers == [400, 400, 429]
    assert ArtifactRejection.objects.filter(job=job).count() == 2


def test_the_sandbox_child_gets_none_of_the_parents_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "a-secret-the-child-must-not-see")
    monkeypatch.setenv("DATABASE_URL", "postgres://user:password@db/clinical")

    env = artifact_sandbox._child_environment(tmp_path)

    assert "SECRET_KEY" not in env
    assert "DATABASE_URL" not in env
    assert not any("secret" in value or "password" in value for value in env.values())
    assert env["OPENBLAS_NUM_THREADS"] == "1"
