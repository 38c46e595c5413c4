"""Who may call which training endpoint, and proof that the lease never leaves ``start``'s answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from learning_engine import roles
from tests.conftest import jwt_client
from tests.training.factories import DatasetSnapshotFactory, ModelTypeFactory, TrainingJobFactory, task_queue
from training.models import DatasetSnapshot, ModelType, TrainingJob

JOBS = "/api/v1/training/jobs/"
DATASETS = "/api/v1/datasets/"
MODEL_TYPES = "/api/v1/model-types/"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_task_queue")]


@dataclass
class World:
    model_type: ModelType
    ready: DatasetSnapshot  # with a file
    queued: TrainingJob  # a worker job
    failed: TrainingJob
    external_queued: TrainingJob
    external_running: TrainingJob  # .lease holds its lease

    def jobs(self) -> list[TrainingJob]:
        return [self.queued, self.failed, self.external_queued, self.external_running]


@dataclass(frozen=True)
class Endpoint:
    call: Callable[[APIClient, World], Any]
    allowed_status: int
    allowed_roles: frozenset[str]


VIEWERS = frozenset({roles.ML_ENGINEER, roles.CLINICAL_LEAD})
ENGINEERS = frozenset({roles.ML_ENGINEER})


def job(w: World, name: str, action: str = "") -> str:
    return f"{JOBS}{getattr(w, name).pk}/{action + '/' if action else ''}"


ENDPOINTS: dict[str, Endpoint] = {
    # Model types
    "model_types.list": Endpoint(lambda c, w: c.get(MODEL_TYPES), 200, VIEWERS),
    "model_types.options": Endpoint(lambda c, w: c.options(MODEL_TYPES), 200, VIEWERS),
    "model_types.retrieve": Endpoint(lambda c, w: c.get(f"{MODEL_TYPES}{w.model_type.slug}/"), 200, VIEWERS),
    # Datasets
    "datasets.list": Endpoint(lambda c, w: c.get(DATASETS), 200, VIEWERS),
    "datasets.options": Endpoint(lambda c, w: c.options(DATASETS), 200, VIEWERS),
    "datasets.retrieve": Endpoint(lambda c, w: c.get(f"{DATASETS}{w.ready.pk}/?include=manifest"), 200, VIEWERS),
    "datasets.create": Endpoint(lambda c, w: c.post(DATASETS, {"model_type": w.model_type.slug}), 202, ENGINEERS),
    "datasets.download": Endpoint(lambda c, w: c.get(f"{DATASETS}{w.ready.pk}/download/"), 200, ENGINEERS),
    # Training jobs
    "jobs.list": Endpoint(lambda c, w: c.get(JOBS), 200, VIEWERS),
    "jobs.options": Endpoint(lambda c, w: c.options(JOBS), 200, VIEWERS),
    "jobs.retrieve": Endpoint(lambda c, w: c.get(job(w, "queued")), 200, VIEWERS),
    "jobs.create": Endpoint(
        lambda c, w: c.post(JOBS, {"model_type": w.model_type.slug, "batch_size": 32, "epochs": 10}), 201, ENGINEERS
    ),
    "jobs.cancel": Endpoint(lambda c, w: c.post(job(w, "queued", "cancel"), {}), 200, ENGINEERS),
    "jobs.retry": Endpoint(lambda c, w: c.post(job(w, "failed", "retry")), 200, ENGINEERS),
    "jobs.start": Endpoint(lambda c, w: c.post(job(w, "external_queued", "start")), 200, ENGINEERS),
    "jobs.progress": Endpoint(
        lambda c, w: c.patch(
            job(w, "external_running", "progress"),
            {"lease": str(w.external_running.lease), "progress": 50, "stage": "Epoch 5/10"},
        ),
        200,
        ENGINEERS,
    ),
    "jobs.complete": Endpoint(
        lambda c, w: c.post(job(w, "external_running", "complete"), {"lease": str(w.external_running.lease)}),
        200,
        ENGINEERS,
    ),
    "jobs.fail": Endpoint(
        lambda c, w: c.post(
            job(w, "external_running", "fail"), {"lease": str(w.external_running.lease), "reason": "Crashed."}
        ),
        200,
        ENGINEERS,
    ),
    # Nothing is deleted or edited through the API: 405 once authenticated.
    "jobs.delete": Endpoint(lambda c, w: c.delete(job(w, "queued")), 405, frozenset(roles.ROLES)),
    "jobs.update": Endpoint(lambda c, w: c.patch(job(w, "queued"), {"priority": 100}), 405, frozenset(roles.ROLES)),
    "datasets.delete": Endpoint(lambda c, w: c.delete(f"{DATASETS}{w.ready.pk}/"), 405, frozenset(roles.ROLES)),
    "model_types.create": Endpoint(lambda c, w: c.post(MODEL_TYPES, {"slug": "x"}), 405, frozenset(roles.ROLES)),
}
ROLES = ("anonymous", *roles.ROLES)


@pytest.fixture
def world() -> World:
    model_type = ModelTypeFactory.create(diagnosis=True)
    ready = DatasetSnapshotFactory.create(model_type=model_type, ready=True, with_file=True)
    return World(
        model_type=model_type,
        ready=ready,
        queued=TrainingJobFactory.create(model_type=model_type),
        failed=TrainingJobFactory.create(model_type=model_type, failed=True),
        external_queued=TrainingJobFactory.create(model_type=model_type, executor="external", dataset=ready),
        external_running=TrainingJobFactory.create(
            model_type=model_type, executor="external", dataset=ready, running=True
        ),
    )


def job_states(world: World) -> list[tuple[Any, ...]]:
    rows = TrainingJob.objects.filter(pk__in=[j.pk for j in world.jobs()]).order_by("pk")
    return list(rows.values_list("pk", "status", "stage", "progress", "lease", "attempts", "priority"))


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(api_client_for, world, role, endpoint):
    spec = ENDPOINTS[endpoint]
    counts = (TrainingJob.objects.count(), DatasetSnapshot.objects.count(), ModelType.objects.count())
    states = job_states(world)

    response = spec.call(api_client_for(role), world)

    if role in spec.allowed_roles:
        assert response.status_code == spec.allowed_status, getattr(response, "content", b"")
        return
    expected = 401 if role == "anonymous" else 403
    assert response.status_code == expected, response.content
    assert response.json()["code"] == ("not_authenticated" if role == "anonymous" else "permission_denied")
    # A refused request changes nothing and enqueues nothing.
    assert (TrainingJob.objects.count(), DatasetSnapshot.objects.count(), ModelType.objects.count()) == counts
    assert job_states(world) == states
    assert task_queue().results == []


def test_every_action_is_in_the_matrix():
    from training.views import DatasetSnapshotViewSet, ModelTypeViewSet, TrainingJobViewSet

    covered = set(ENDPOINTS)
    for prefix, viewset in (
        ("model_types", ModelTypeViewSet),
        ("datasets", DatasetSnapshotViewSet),
        ("jobs", TrainingJobViewSet),
    ):
        assert {f"{prefix}.{action}" for action in viewset.action_permissions} <= covered


def test_a_superuser_may_do_everything(make_user, world):
    client = jwt_client(make_user(None, is_superuser=True))

    assert client.get(JOBS).json()["count"] == 4
    assert client.post(f"{JOBS}{world.queued.pk}/cancel/", {}).status_code == 200
    assert client.get(f"{DATASETS}{world.ready.pk}/download/").status_code == 200


# --- The lease stays with the trainer that started the job ----------------------------------------


def test_the_lease_never_appears_in_list_or_retrieve_bodies(api_client_for, world):
    worker_running = TrainingJobFactory.create(model_type=world.model_type, running=True)
    engineer = api_client_for(roles.ML_ENGINEER)
    start = engineer.post(f"{JOBS}{world.external_queued.pk}/start/")
    assert start.status_code == 200
    leases = {str(world.external_running.lease), str(worker_running.lease), start.json()["lease"]}
    assert all(uuid.UUID(lease) for lease in leases)

    for role in (roles.ML_ENGINEER, roles.CLINICAL_LEAD):
        client = api_client_for(role)
        responses = [
            client.get(JOBS),
            client.get(f"{JOBS}?page_size=500&status=running"),
            client.get(JOBS, HTTP_ACCEPT="text/html"),
            *(client.get(f"{JOBS}{j.pk}/") for j in [*world.jobs(), worker_running]),
            client.get(f"{JOBS}{worker_running.pk}/", HTTP_ACCEPT="text/html"),
            client.options(f"{JOBS}{worker_running.pk}/"),
        ]
        for response in responses:
            assert response.status_code == 200
            text = response.content.decode()
            assert not [lease for lease in leases if lease in text], response.request["PATH_INFO"]
            if response["Content-Type"] == "application/json":
                body = response.json()
                items = body.get("results", [body])
                assert all("lease" not in item for item in items)
    # The positive control: the start answer did carry one of them.
    assert start.json()["lease"] in start.content.decode()


def test_a_refused_start_does_not_reveal_the_lease(api_client_for, world):
    response = api_client_for(roles.ML_ENGINEER).post(f"{JOBS}{world.external_running.pk}/start/")

    assert response.status_code == 409
    assert str(world.external_running.lease) not in response.content.decode()
