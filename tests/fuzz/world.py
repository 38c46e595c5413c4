"""A small world with an object in every state an endpoint acts on, and a user per role.

Shared by the schema fuzzer (``tests/fuzz``) and the authorisation matrix
(``tests/test_authz_matrix.py``): every path parameter of the API can be filled with an object
that exists (``World.path_values``), so requests reach the views' real work and not just 404.
Everything is made through the application's own code (factories over the model methods, a
really trained and activated model version, a prediction through the API).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import TestCase
from rest_framework.test import APIClient

from cases.models import Case
from learning_engine import roles
from models_registry.models import ABTest, ModelVersion, Prediction
from tests.cases.factories import CaseFactory, record_dict
from tests.conftest import jwt_client
from tests.factories import user_with_role
from tests.models_registry.serving.factories import PNEUMONIA_FEATURES, trained_artifact
from tests.training.factories import DatasetSnapshotFactory, ModelTypeFactory, TrainingJobFactory
from training.models import DatasetSnapshot, ModelType, TrainingJob

ROLE_NAMES = ("anonymous", *roles.ROLES)


@dataclass
class World:
    users: dict[str, User | None]
    model_type: ModelType
    cases: list[Case]
    datasets: list[DatasetSnapshot]
    jobs: list[TrainingJob]
    versions: list[ModelVersion]
    predictions: list[Prediction]
    ab_tests: list[ABTest]
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str) -> APIClient:
        return jwt_client(self.users[role])

    def headers(self, role: str) -> dict[str, str]:
        """The Authorization header of ``role`` (none for anonymous)."""
        token = self.tokens.get(role)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def path_values(self, path: str, name: str) -> list[Any]:
        """Values of an existing object for the path parameter ``name`` of the route ``path``."""
        if name == "slug":
            return [self.model_type.slug]
        if name == "version":
            return [version.version for version in self.versions]
        if name in {"id", "pk"}:
            if "/ab-tests/" in path:
                return [test.pk for test in self.ab_tests]
            if "/cases/" in path:
                return [case.pk for case in self.cases]
            if "/datasets/" in path:
                return [snapshot.pk for snapshot in self.datasets]
            if "/training/jobs/" in path:
                return [job.pk for job in self.jobs]
            if "/predictions/" in path:
                return [prediction.pk for prediction in self.predictions]
        return []


@functools.cache
def _trained(seed: int) -> tuple[str, str, dict[str, Any], bytes]:
    """A small real model, trained once per process: (artifact path, sha256, evaluation, bytes)."""
    path, sha256, evaluation = trained_artifact(seed=seed)
    with default_storage.open(path, "rb") as handle:
        return path, sha256, evaluation, handle.read()


def registered_version(model_type: ModelType, engineer: User, *, seed: int) -> ModelVersion:
    """A job completed with a real artifact and registered by the registry's receiver (pending)."""
    path, sha256, evaluation, data = _trained(seed)
    if not default_storage.exists(path):  # each test has its own MEDIA_ROOT
        default_storage.save(path, ContentFile(data))
    with TestCase.captureOnCommitCallbacks(execute=True):
        job = TrainingJob.submit(model_type=model_type, by=engineer, algorithm="logistic_regression")
        lease = job.start(worker_id="fuzz-world")
        job.complete(lease=lease, evaluation=evaluation, artifact=path, artifact_sha256=sha256)
    return ModelVersion.objects.get(job=job)


def build_world() -> World:
    from learning_engine.tokens import RefreshToken

    users: dict[str, User | None] = {"anonymous": None}
    for role in roles.ROLES:
        users[role] = user_with_role(role)
    clinician, engineer, lead = users[roles.CLINICIAN], users[roles.ML_ENGINEER], users[roles.CLINICAL_LEAD]
    assert engineer is not None
    assert lead is not None

    model_type = ModelTypeFactory.create(diagnosis=True)
    active = registered_version(model_type, engineer, seed=0)
    approved = registered_version(model_type, engineer, seed=1)
    pending = registered_version(model_type, engineer, seed=2)
    with TestCase.captureOnCommitCallbacks(execute=True):
        for version in (active, approved):
            version.approve(by=lead, note="Evaluation reviewed.")
        active.activate(by=lead, reason="Fuzzing.")
    for version in (active, approved, pending):
        version.refresh_from_db()

    cases = [
        CaseFactory.create(record=record_dict(cohort=model_type.cohort)),
        CaseFactory.create(approved=True, record=record_dict(cohort=model_type.cohort)),
        CaseFactory.create(rejected=True),
        CaseFactory.create(retracted=True),
        CaseFactory.create(submitted_by=clinician),
    ]
    datasets = [
        DatasetSnapshotFactory.create(model_type=model_type, created_by=engineer, ready=True, with_file=True),
        DatasetSnapshotFactory.create(model_type=model_type, created_by=engineer),
        DatasetSnapshotFactory.create(model_type=model_type, created_by=engineer, failed=True),
    ]
    jobs = [
        TrainingJobFactory.create(model_type=model_type, created_by=engineer),
        TrainingJobFactory.create(model_type=model_type, created_by=engineer, executor="external"),
        TrainingJobFactory.create(model_type=model_type, created_by=engineer, executor="external", running=True),
        TrainingJobFactory.create(model_type=model_type, created_by=engineer, failed=True),
        TrainingJobFactory.create(model_type=model_type, created_by=engineer, completed=True),
    ]
    predictions = []
    for role in (roles.PREDICTION_CLIENT, roles.CLINICIAN):
        response = jwt_client(users[role]).post(
            f"/api/v1/model-types/{model_type.slug}/predict/", PNEUMONIA_FEATURES, format="json"
        )
        assert response.status_code == 200, response.content
        predictions.append(Prediction.objects.get(pk=response.json()["id"]))

    with TestCase.captureOnCommitCallbacks(execute=True):  # its arms serve from the next request
        ab_test = ABTest.start(
            model_type=model_type,
            version_a=active,
            version_b=approved,
            traffic_split=0.5,
            duration_hours=24,
            by=engineer,
        )

    world = World(
        users=users,
        model_type=model_type,
        cases=cases,
        datasets=datasets,
        jobs=jobs,
        versions=[active, approved, pending],
        predictions=predictions,
        ab_tests=[ab_test],
    )
    for role, user in users.items():
        if user is not None:
            world.tokens[role] = str(RefreshToken.for_user(user).access_token)
    return world
