"""The training API through HTTP with real JWT clients: model types, datasets, jobs, external trainers."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Group

from cases.access_log import AccessLogEntry
from learning_engine import roles
from tests.conftest import jwt_client
from tests.training.factories import (
    DatasetSnapshotFactory,
    ModelTypeFactory,
    TrainingJobFactory,
    approved_cohort,
    task_queue,
)
from training.models import DatasetSnapshot, JobTransition, TrainingJob
from training.signals import job_completed
from training.tasks import build_dataset

JOBS = "/api/v1/training/jobs/"
DATASETS = "/api/v1/datasets/"
MODEL_TYPES = "/api/v1/model-types/"
SPEC_PAYLOAD = {"model_type": "diagnosis", "batch_size": 32, "epochs": 10}

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_task_queue")]


@pytest.fixture
def client(engineer):
    return jwt_client(engineer)


def job_url(job: TrainingJob | int, action: str = "") -> str:
    pk = job if isinstance(job, int) else job.pk
    return f"{JOBS}{pk}/{action + '/' if action else ''}"


def dataset_url(snapshot: DatasetSnapshot | int, action: str = "") -> str:
    pk = snapshot if isinstance(snapshot, int) else snapshot.pk
    return f"{DATASETS}{pk}/{action + '/' if action else ''}"


def enqueued(task_name: str) -> list[Any]:
    return [result for result in task_queue().results if result.task.name == task_name]


# --- Model types ----------------------------------------------------------------------------------


def test_model_types_are_listed_and_looked_up_by_slug(client, model_type):
    ModelTypeFactory.create(slug="breast-mass", cohort="breast", default_algorithm="gradient_boosting")

    listed = client.get(MODEL_TYPES).json()["results"]
    detail = client.get(f"{MODEL_TYPES}diagnosis/")

    assert [item["slug"] for item in listed] == ["breast-mass", "diagnosis"]
    assert detail.status_code == 200
    assert detail.json() == {
        "slug": "diagnosis",
        "name": model_type.name,
        "description": "",
        "cohort": "respiratory",
        "label_field": "diagnosis.code",
        "default_algorithm": "logistic_regression",
        "default_hyperparameters": {},
        "epoch_algorithm": "sgd",
        "min_cases_to_train": model_type.min_cases_to_train,
        "min_quality": model_type.min_quality,
        "created_at": detail.json()["created_at"],
    }


def test_an_unknown_model_type_slug_is_a_json_404(client, model_type):
    response = client.get(f"{MODEL_TYPES}no-such-type/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# --- Jobs: create ---------------------------------------------------------------------------------


def test_the_specification_payload_queues_an_epoch_based_job(client, engineer, model_type):
    response = client.post(JOBS, SPEC_PAYLOAD, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["algorithm"] == model_type.epoch_algorithm == "sgd"
    assert body["hyperparameters"]["epochs"] == 10
    assert body["hyperparameters"]["batch_size"] == 32
    assert body["model_type"] == "diagnosis"
    assert body["created_by"] == engineer.username
    assert body["dataset"] is None
    assert body["executor"] == "worker"
    assert "lease" not in body
    job = TrainingJob.objects.get(pk=body["id"])
    assert (job.status, job.algorithm, job.hyperparameters) == ("queued", "sgd", body["hyperparameters"])


def test_a_created_job_is_enqueued_only_when_the_request_commits(
    client, model_type, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(JOBS, {**SPEC_PAYLOAD, "priority": 40}, format="json")
    assert response.status_code == 201
    assert enqueued("run_training_job") == []

    for callback in callbacks:
        callback()

    (result,) = enqueued("run_training_job")
    assert result.args == [response.json()["id"]]
    assert result.task.priority == 40


def test_hyperparameters_may_be_top_level_keys_or_an_object(client, model_type):
    body = {"model_type": "diagnosis", "algorithm": "mlp", "epochs": 3, "hyperparameters": {"hidden_layers": [8, 4]}}

    response = client.post(JOBS, body, format="json")

    assert response.status_code == 201, response.json()
    hyperparameters = response.json()["hyperparameters"]
    assert hyperparameters["epochs"] == 3
    assert hyperparameters["hidden_layers"] == [8, 4]
    assert response.json()["algorithm"] == "mlp"


def test_without_epochs_the_model_types_default_algorithm_runs(client, model_type):
    response = client.post(JOBS, {"model_type": "diagnosis", "C": 0.5}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["algorithm"] == "logistic_regression"
    assert response.json()["hyperparameters"]["C"] == 0.5


def test_a_job_can_name_a_ready_dataset_of_its_model_type(client, model_type):
    snapshot = DatasetSnapshotFactory.create(model_type=model_type, ready=True)

    response = client.post(JOBS, {"model_type": "diagnosis", "dataset": snapshot.pk}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["dataset"] == snapshot.pk


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"priority": 101}, "invalid", "priority"),
        ({"priority": -101}, "invalid", "priority"),
        ({"priority": "high"}, "invalid", "priority"),
        ({"algorithm": "xgboost"}, "invalid", "algorithm"),
        ({"hyperparameters": {"dropout": 0.5}}, "invalid_hyperparameters", None),
        ({"hyperparameters": "fast"}, "invalid", "hyperparameters"),
        ({"epochs": 0}, "invalid_hyperparameters", None),
        ({"batch_size": "32"}, "invalid_hyperparameters", None),
        ({"algorithm": "logistic_regression", "epochs": 10}, "invalid_hyperparameters", None),
        ({"epoch": 10}, "invalid", "epoch"),  # a typo is refused, not ignored
        ({"epochs": 10, "hyperparameters": {"epochs": 5}}, "invalid", "epochs"),
        ({"dataset": 999999}, "invalid", "dataset"),
        ({"dataset": "latest"}, "invalid", "dataset"),
        ({"max_attempts": 0}, "invalid", "max_attempts"),
        ({"executor": "cluster"}, "invalid", "executor"),
        ({"executor": "external"}, "invalid", "dataset"),  # an external trainer needs a dataset
        ({"model_type": "no-such-type"}, "invalid", "model_type"),
    ],
)
def test_bad_job_requests_get_a_400_with_a_code_and_create_nothing(client, model_type, body, code, field):
    response = client.post(JOBS, {"model_type": "diagnosis", **body}, format="json")

    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    if field:
        assert field in response.json()["errors"]
    assert not TrainingJob.objects.exists()


def test_a_job_refuses_a_dataset_that_is_not_ready_or_of_another_model_type(client, model_type):
    building = DatasetSnapshotFactory.create(model_type=model_type)
    other = DatasetSnapshotFactory.create(model_type=ModelTypeFactory.create(slug="breast-mass"), ready=True)

    for snapshot in (building, other):
        response = client.post(JOBS, {"model_type": "diagnosis", "dataset": snapshot.pk}, format="json")
        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["dataset"]
    assert not TrainingJob.objects.exists()


def test_a_job_body_must_be_a_json_object(client, model_type):
    assert client.post(JOBS, [SPEC_PAYLOAD], format="json").status_code == 400
    assert client.post(JOBS, "epochs=10", content_type="application/x-www-form-urlencoded").status_code == 415


# --- Jobs: read -----------------------------------------------------------------------------------


def test_the_detail_shows_history_evaluation_and_error_log_and_the_list_does_not(client, model_type):
    job = TrainingJobFactory.create(failed=True)

    detail = client.get(job_url(job)).json()
    (listed,) = client.get(JOBS).json()["results"]

    assert detail["status"] == "failed"
    assert "out of memory" in detail["error_log"]
    assert detail["history"] == []
    assert detail["evaluation"] == {}
    assert detail["attempts"] == 1
    assert detail["worker_id"] == "test-worker:1"
    assert not {"history", "evaluation", "error_log", "lease"} & set(listed)
    assert {key: listed[key] for key in listed} == {key: detail[key] for key in listed}


def test_the_job_list_filters_by_status_model_type_creator_and_executor(client, model_type, make_user):
    alice = make_user("ml_engineer", username="alice")
    breast = ModelTypeFactory.create(slug="breast-mass", cohort="breast")
    queued = TrainingJobFactory.create(created_by=alice)
    failed = TrainingJobFactory.create(failed=True)
    other = TrainingJobFactory.create(model_type=breast, cancelled=True)
    external = TrainingJobFactory.create(executor="external", dataset=DatasetSnapshotFactory.create(ready=True))

    def ids(query: str) -> set[int]:
        response = client.get(f"{JOBS}?{query}")
        assert response.status_code == 200, response.json()
        return {item["id"] for item in response.json()["results"]}

    assert ids("status=failed") == {failed.pk}
    assert ids("status=queued&status=cancelled") == {queued.pk, other.pk, external.pk}
    assert ids("model_type=breast-mass") == {other.pk}
    assert ids("created_by=alice") == {queued.pk}
    assert ids("executor=external") == {external.pk}
    assert ids("created_by=nobody") == set()


@pytest.mark.parametrize(
    "query", ["status=done", "model_type=no-such-type", "executor=cluster", "ordering=lease", "created_after=May"]
)
def test_bad_job_list_parameters_are_a_400(client, model_type, query):
    response = client.get(f"{JOBS}?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_the_job_list_orders_by_priority(client, model_type):
    low, high = TrainingJobFactory.create(priority=-5), TrainingJobFactory.create(priority=50)

    results = client.get(f"{JOBS}?ordering=-priority").json()["results"]

    assert [item["id"] for item in results] == [high.pk, low.pk]


# --- Jobs: cancel and retry -----------------------------------------------------------------------


def test_cancelling_a_queued_job_means_it_never_runs(client, engineer, model_type):
    job = TrainingJobFactory.create()

    response = client.post(job_url(job, "cancel"), {"reason": "Wrong hyperparameters."}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert JobTransition.objects.filter(job=job, to_state="cancelled", actor=engineer).get().reason == (
        "Wrong hyperparameters."
    )
    # The queued task, when a worker picks it up, finds the job cancelled and skips it.
    from training.tasks import run_training_job

    assert run_training_job.call(job.pk)["outcome"] == "skipped"
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.started_at is None


def test_cancelling_a_finished_job_is_a_409_with_the_current_status(client, model_type):
    job = TrainingJobFactory.create(completed=True)

    response = client.post(job_url(job, "cancel"), {}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert response.json()["current_status"] == "completed"


def test_retrying_a_failed_job_queues_it_again(client, model_type, django_capture_on_commit_callbacks):
    job = TrainingJobFactory.create(failed=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(job_url(job, "retry"))

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "queued"
    assert [result.args for result in enqueued("run_training_job")] == [[job.pk]]


@pytest.mark.parametrize("state", ["queued", "completed", "cancelled"])
def test_only_a_failed_job_can_be_retried(client, model_type, state):
    job = TrainingJobFactory.create(state=state)

    response = client.post(job_url(job, "retry"))

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"


def test_a_job_out_of_attempts_cannot_be_retried(client, model_type):
    job = TrainingJobFactory.create(failed=True, max_attempts=1)

    response = client.post(job_url(job, "retry"))

    assert response.status_code == 409
    assert response.json()["code"] == "attempts_exhausted"
    job.refresh_from_db()
    assert job.status == "failed"


def test_actions_on_a_missing_job_are_a_json_404(client, model_type):
    for action in ("cancel", "retry", "start", "complete", "fail"):
        response = client.post(job_url(999999, action), {}, format="json")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


# --- Jobs: external trainers ----------------------------------------------------------------------


@pytest.fixture
def external_job(model_type):
    return TrainingJobFactory.create(executor="external", dataset=DatasetSnapshotFactory.create(ready=True))


def test_an_external_job_is_not_enqueued(client, model_type, django_capture_on_commit_callbacks):
    snapshot = DatasetSnapshotFactory.create(model_type=model_type, ready=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(JOBS, {**SPEC_PAYLOAD, "executor": "external", "dataset": snapshot.pk}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["executor"] == "external"
    assert enqueued("run_training_job") == []


def test_an_external_trainer_starts_reports_and_completes_a_job(client, engineer, external_job):
    announced: list[int] = []

    def receiver(sender: Any, job_id: int, **kwargs: Any) -> None:
        announced.append(job_id)

    started = client.post(job_url(external_job, "start"))
    assert started.status_code == 200, started.json()
    lease = started.json()["lease"]
    assert started.json()["status"] == "running"
    assert started.json()["worker_id"] == f"api:{engineer.username}"
    assert uuid.UUID(lease)

    for epoch in (1, 2):
        response = client.patch(
            job_url(external_job, "progress"),
            {
                "lease": lease,
                "progress": 45.0 * epoch,
                "stage": f"Epoch {epoch}/2",
                "metrics": {"train_loss": 1.0 / epoch},
                "epoch": {"epoch": epoch, "train_loss": 1.0 / epoch},
            },
            format="json",
        )
        assert response.status_code == 200, response.json()
    progress = client.get(job_url(external_job)).json()
    assert (progress["stage"], progress["progress"]) == ("Epoch 2/2", 90.0)
    assert progress["history"] == [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]
    assert progress["metrics"] == {"train_loss": 0.5}

    job_completed.connect(receiver)
    try:
        completed = client.post(
            job_url(external_job, "complete"), {"lease": lease, "metrics": {"accuracy": 0.91}}, format="json"
        )
    finally:
        job_completed.disconnect(receiver)

    assert completed.status_code == 200, completed.json()
    body = completed.json()
    assert body["status"] == "completed"
    assert body["progress"] == 100.0
    assert body["metrics"] == {"accuracy": 0.91}
    assert body["evaluation"] == {"reported_by_client": {"accuracy": 0.91}}
    assert body["artifact_sha256"] == ""
    assert "lease" not in body
    # A late write with the old lease is refused: the job is finished.
    late = client.patch(job_url(external_job, "progress"), {"lease": lease, "progress": 1, "stage": "x"})
    assert late.status_code == 409
    assert late.json()["code"] == "lease_lost"


def test_complete_without_metrics_keeps_the_last_reported_ones(client, external_job):
    lease = client.post(job_url(external_job, "start")).json()["lease"]
    client.patch(
        job_url(external_job, "progress"),
        {"lease": lease, "progress": 50, "stage": "Fitting", "metrics": {"loss": 0.3}},
        format="json",
    )

    body = client.post(job_url(external_job, "complete"), {"lease": lease}, format="json").json()

    assert body["metrics"] == {"loss": 0.3}
    assert body["evaluation"] == {"reported_by_client": {"loss": 0.3}}


@pytest.mark.parametrize("lease", [None, "missing", "random"])
@pytest.mark.parametrize("action", ["progress", "complete", "fail"])
def test_a_missing_or_wrong_lease_is_refused_with_409(client, external_job, lease, action):
    client.post(job_url(external_job, "start"))
    body: dict[str, Any] = {"progress": 10, "stage": "Fitting", "reason": "Crashed."}
    if lease == "random":
        body["lease"] = str(uuid.uuid4())
    elif lease is None:
        body["lease"] = None

    call = client.patch if action == "progress" else client.post
    response = call(job_url(external_job, action), body, format="json")

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "lease_lost"
    external_job.refresh_from_db()
    assert (external_job.status, external_job.stage) == ("running", "Starting")


def test_a_cancelled_external_jobs_lease_is_refused(client, external_job):
    lease = client.post(job_url(external_job, "start")).json()["lease"]
    assert client.post(job_url(external_job, "cancel"), {}, format="json").status_code == 200

    response = client.patch(job_url(external_job, "progress"), {"lease": lease, "progress": 5, "stage": "Epoch 1/2"})

    assert response.status_code == 409
    assert response.json()["code"] == "lease_lost"


def test_an_external_trainer_fails_its_job_with_the_reason(client, external_job):
    lease = client.post(job_url(external_job, "start")).json()["lease"]

    response = client.post(
        job_url(external_job, "fail"), {"lease": lease, "reason": "CUDA out of memory."}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "failed"
    assert "CUDA out of memory." in response.json()["error_log"]


def test_an_external_job_cannot_be_started_twice(client, external_job):
    assert client.post(job_url(external_job, "start")).status_code == 200

    response = client.post(job_url(external_job, "start"))

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert "lease" not in response.json()


def test_completing_a_queued_external_job_is_a_409(client, external_job):
    response = client.post(job_url(external_job, "complete"), {"lease": str(uuid.uuid4())}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"


@pytest.mark.parametrize("action", ["start", "progress", "complete", "fail"])
def test_a_worker_job_refuses_external_writes(client, model_type, action):
    job = TrainingJobFactory.create(running=True)
    lease = str(job.lease)
    body = {"lease": lease, "progress": 50, "stage": "Epoch 9/10", "reason": "x", "metrics": {"accuracy": 1.0}}

    call = client.patch if action == "progress" else client.post
    response = call(job_url(job, action), body, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "worker_job"
    job.refresh_from_db()
    assert (job.status, job.stage, str(job.lease)) == ("running", "Starting", lease)


@pytest.mark.parametrize(
    "body",
    [
        {"progress": 150, "stage": "Epoch 1/2"},
        {"progress": "NaN", "stage": "Epoch 1/2"},
        {"progress": 10},
        {"progress": 10, "stage": "x" * 201},
        {"progress": 10, "stage": "Fitting", "metrics": [1, 2]},
        {"progress": 10, "stage": "Fitting", "epoch": {"blob": "x" * 5000}},
        {"progress": 10, "stage": "Fitting", "lease": "not-a-uuid"},
    ],
)
def test_bad_progress_bodies_are_a_400(client, external_job, body):
    lease = client.post(job_url(external_job, "start")).json()["lease"]

    response = client.patch(job_url(external_job, "progress"), {"lease": lease, **body}, format="json")

    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid"


# --- Datasets -------------------------------------------------------------------------------------


def test_creating_a_dataset_answers_202_building_and_enqueues_the_build(
    client, engineer, model_type, django_capture_on_commit_callbacks
):
    body = {"model_type": "diagnosis", "min_quality": 0.4, "test_fraction": 0.25, "validation_fraction": 0.1, "seed": 7}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(DATASETS, body, format="json")

    assert response.status_code == 202, response.json()
    data = response.json()
    assert data["status"] == "building"
    assert data["created_by"] == engineer.username
    assert (data["seed"], data["test_fraction"], data["validation_fraction"]) == (7, 0.25, 0.1)
    assert data["filters"]["min_quality"] == 0.4
    assert data["filters"]["cohort"] == "respiratory"
    assert response["Location"] == dataset_url(data["id"])
    assert [result.args for result in enqueued("build_dataset")] == [[data["id"]]]


def test_a_dataset_without_a_minimum_quality_takes_the_model_types(client, model_type):
    response = client.post(DATASETS, {"model_type": "diagnosis"}, format="json")

    assert response.status_code == 202
    assert response.json()["filters"]["min_quality"] == model_type.min_quality


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"test_fraction": 0}, "test_fraction"),
        ({"test_fraction": 1}, "test_fraction"),
        ({"test_fraction": -0.2}, "test_fraction"),
        ({"validation_fraction": -0.1}, "validation_fraction"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "test_fraction"),
        ({"test_fraction": "NaN"}, "test_fraction"),
        ({"min_quality": 1.5}, "min_quality"),
        ({"seed": -1}, "seed"),
        ({"model_type": "no-such-type"}, "model_type"),
        ({"encounter_after": "2026-01-01", "encounter_before": "2025-12-31"}, "encounter_before"),
        ({"encounter_after": "yesterday"}, "encounter_after"),
    ],
)
def test_bad_dataset_requests_get_a_400_and_create_nothing(client, model_type, body, field):
    response = client.post(DATASETS, {"model_type": "diagnosis", **body}, format="json")

    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert not DatasetSnapshot.objects.exists()
    assert enqueued("build_dataset") == []


def test_without_phi_permission_a_dataset_date_range_covers_whole_years(client, model_type):
    day = client.post(
        DATASETS,
        {"model_type": "diagnosis", "encounter_after": "2026-03-14", "encounter_before": "2026-03-14"},
        format="json",
    )
    years = client.post(
        DATASETS,
        {"model_type": "diagnosis", "encounter_after": "2025-01-01", "encounter_before": "2026-12-31"},
        format="json",
    )

    assert day.status_code == 400
    assert set(day.json()["errors"]) == {"encounter_after", "encounter_before"}
    assert years.status_code == 202, years.json()
    assert years.json()["filters"]["encounter_after"] == "2025-01-01"


def test_a_user_who_may_see_phi_may_ask_for_a_day_wide_dataset_range(engineer, model_type):
    engineer.groups.add(Group.objects.get(name=roles.CLINICIAN))
    body = {"model_type": "diagnosis", "encounter_after": "2026-03-14", "encounter_before": "2026-03-14"}

    response = jwt_client(engineer).post(DATASETS, body, format="json")

    assert response.status_code == 202, response.json()
    assert response.json()["filters"]["encounter_before"] == "2026-03-14"


def test_a_snapshot_over_a_day_wide_range_is_hidden_from_users_without_phi(client, engineer, model_type):
    def snapshot(after: str, before: str) -> DatasetSnapshot:
        filters = {"cohort": model_type.cohort, "label_field": "diagnosis.code", "min_quality": 0.0}
        filters |= {"encounter_after": after, "encounter_before": before}
        return DatasetSnapshotFactory.create(model_type=model_type, ready=True, with_file=True, filters=filters)

    day = snapshot("2026-03-14", "2026-03-14")  # made by someone with the PHI permission
    years = snapshot("2025-01-01", "2026-12-31")

    listed = {row["id"] for row in client.get(DATASETS).json()["results"]}
    detail = client.get(f"{DATASETS}{day.pk}/?include=manifest")
    download = client.get(f"{DATASETS}{day.pk}/download/")
    engineer.groups.add(Group.objects.get(name=roles.CLINICIAN))
    with_phi = {row["id"] for row in jwt_client(engineer).get(DATASETS).json()["results"]}

    assert listed == {years.pk}
    assert (detail.status_code, download.status_code) == (404, 404)
    assert with_phi == {day.pk, years.pk}


def test_a_job_cannot_be_submitted_on_a_snapshot_hidden_from_its_submitter(client, engineer, model_type):
    # A job on the day-wide snapshot would show its counts (job page, evaluation) to ML staff.
    filters = {"cohort": model_type.cohort, "label_field": "diagnosis.code", "min_quality": 0.0}
    filters |= {"encounter_after": "2026-03-14", "encounter_before": "2026-03-14"}
    day = DatasetSnapshotFactory.create(model_type=model_type, ready=True, with_file=True, filters=filters)

    refused = client.post(JOBS, {"model_type": "diagnosis", "dataset": day.pk}, format="json")
    engineer.groups.add(Group.objects.get(name=roles.CLINICIAN))
    with_phi = jwt_client(engineer).post(JOBS, {"model_type": "diagnosis", "dataset": day.pk}, format="json")

    assert refused.status_code == 400, refused.json()
    assert "dataset" in refused.json()["errors"]
    assert with_phi.status_code == 201, with_phi.json()
    assert list(TrainingJob.objects.values_list("dataset", flat=True)) == [day.pk]


@pytest.fixture
def respiratory_cases(model_type) -> None:
    """Twelve approved respiratory cases of twelve patients, two labels: enough for a real build."""
    approved_cohort(model_type.cohort, patients=12)


def test_a_built_dataset_downloads_as_its_parquet_file(client, model_type, respiratory_cases):
    created = client.post(DATASETS, {"model_type": "diagnosis", "seed": 3}, format="json").json()
    assert build_dataset.call(created["id"])["outcome"] == "ready"  # what the worker runs
    snapshot = DatasetSnapshot.objects.get(pk=created["id"])

    response = client.get(dataset_url(snapshot, "download"), HTTP_ACCEPT="application/vnd.apache.parquet")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"].startswith("attachment;")
    assert f"dataset-{snapshot.pk}-{snapshot.content_hash[:12]}.parquet" in response["Content-Disposition"]
    data = b"".join(response.streaming_content)
    assert hashlib.sha256(data).hexdigest() == snapshot.file_sha256
    assert response["Repr-Digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == snapshot.case_count == 12
    assert set(table.column("case_id").to_pylist()) == {i for ids in snapshot.manifest.values() for i in ids}

    detail = client.get(dataset_url(snapshot)).json()
    assert detail["status"] == "ready"
    assert sum(detail["split_counts"].values()) == 12
    assert detail["label_counts"] == snapshot.label_counts
    assert detail["scan_report"]["clean"] is True
    assert detail["file_size"] == len(data)


def test_a_dataset_with_the_content_of_a_ready_one_is_a_409_naming_it_unless_forced(
    client, model_type, respiratory_cases
):
    first = client.post(DATASETS, {"model_type": "diagnosis", "seed": 3}, format="json").json()
    assert build_dataset.call(first["id"])["outcome"] == "ready"
    task_queue().clear()

    again = client.post(DATASETS, {"model_type": "diagnosis", "seed": 3}, format="json")

    assert again.status_code == 409, again.json()
    assert again.json()["code"] == "duplicate_dataset"
    assert again.json()["dataset_id"] == first["id"]
    assert f"Dataset {first['id']} is ready with this content" in again.json()["detail"]
    assert DatasetSnapshot.objects.count() == 1
    assert enqueued("build_dataset") == []

    other_split = client.post(DATASETS, {"model_type": "diagnosis", "seed": 4}, format="json")
    assert other_split.status_code == 202  # another seed, other splits: other content
    forced = client.post(DATASETS, {"model_type": "diagnosis", "seed": 3, "force": True}, format="json")
    assert forced.status_code == 202
    assert DatasetSnapshot.objects.count() == 3


def test_a_dataset_download_is_in_the_phi_access_log_with_every_case(client, engineer, model_type, respiratory_cases):
    created = client.post(DATASETS, {"model_type": "diagnosis", "seed": 3}, format="json").json()
    assert build_dataset.call(created["id"])["outcome"] == "ready"
    snapshot = DatasetSnapshot.objects.get(pk=created["id"])
    assert not AccessLogEntry.objects.exists()

    response = client.get(dataset_url(snapshot, "download"), REMOTE_ADDR="198.51.100.23")

    assert response.status_code == 200
    entry = AccessLogEntry.objects.get()
    assert (entry.actor, entry.action, entry.channel) == (engineer, "download_dataset", "api")
    assert (entry.target, entry.address, entry.case_count) == (f"dataset {snapshot.pk}", "198.51.100.23", 12)
    assert entry.case_ids() == sorted(i for ids in snapshot.manifest.values() for i in ids)


def test_a_refused_dataset_download_is_not_logged(client, model_type):
    snapshot = DatasetSnapshotFactory.create(state="failed")

    assert client.get(dataset_url(snapshot, "download")).status_code == 409
    assert not AccessLogEntry.objects.exists()


@pytest.mark.parametrize("state", ["building", "failed"])
def test_downloading_a_snapshot_that_is_not_ready_is_a_409(client, model_type, state):
    snapshot = DatasetSnapshotFactory.create(state=state)

    response = client.get(dataset_url(snapshot, "download"), HTTP_ACCEPT="application/vnd.apache.parquet")

    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "dataset_not_ready"
    assert response.json()["current_status"] == state


def test_a_ready_snapshot_whose_file_is_gone_is_a_409_not_a_500(client, model_type):
    snapshot = DatasetSnapshotFactory.create(ready=True, with_file=True)
    assert snapshot.file.name
    snapshot.file.storage.delete(snapshot.file.name)

    response = client.get(dataset_url(snapshot, "download"))

    assert response.status_code == 409
    assert response.json()["code"] == "dataset_file_missing"


def test_the_manifest_is_in_the_detail_only_when_asked_for(client, model_type):
    snapshot = DatasetSnapshotFactory.create(ready=True)

    plain = client.get(dataset_url(snapshot)).json()
    with_manifest = client.get(f"{dataset_url(snapshot)}?include=manifest").json()
    (listed,) = client.get(DATASETS).json()["results"]
    bad = client.get(f"{dataset_url(snapshot)}?include=everything")

    assert "manifest" not in plain
    assert with_manifest["manifest"] == snapshot.manifest
    assert not {"manifest", "scan_report"} & set(listed)
    assert listed["split_counts"] == {"train": 4, "validation": 1, "test": 2}
    assert bad.status_code == 400


def test_a_building_snapshot_has_an_empty_manifest(client, model_type):
    snapshot = DatasetSnapshotFactory.create(model_type=model_type)

    response = client.get(f"{dataset_url(snapshot)}?include=manifest")

    assert response.status_code == 200
    assert response.json()["manifest"] == {}
    assert response.json()["scan_report"] is None
    assert response.json()["split_counts"] == {}


def test_the_scan_report_shows_case_field_and_kind_only(client, model_type):
    report = {
        "clean": False,
        "findings": [{"case_id": 12, "field": "label_text", "kind": "PHONE", "value": "617-555-0100"}],
        "findings_total": 1,
        "matched_text": "617-555-0100",
    }
    snapshot = DatasetSnapshotFactory.create(failed=True, scan_report=report)

    response = client.get(dataset_url(snapshot))

    assert response.json()["scan_report"] == {
        "clean": False,
        "findings": [{"case_id": 12, "field": "label_text", "kind": "PHONE"}],
        "findings_total": 1,
    }
    assert "617-555-0100" not in response.content.decode()
    assert response.json()["error"] == "Too few cases."


def test_the_dataset_list_filters_by_status_and_model_type(client, model_type):
    ready = DatasetSnapshotFactory.create(ready=True)
    building = DatasetSnapshotFactory.create(model_type=ModelTypeFactory.create(slug="breast-mass"))

    def ids(query: str) -> set[int]:
        return {item["id"] for item in client.get(f"{DATASETS}?{query}").json()["results"]}

    assert ids("status=ready") == {ready.pk}
    assert ids("model_type=breast-mass") == {building.pk}
    assert client.get(f"{DATASETS}?model_type=nope").status_code == 400
    assert client.get(f"{DATASETS}?ordering=manifest").status_code == 400


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_a_job_on_a_day_wide_snapshot_is_hidden_from_users_without_phi(make_user, model_type, role):
    def job_on(after: str, before: str) -> TrainingJob:
        filters = {"cohort": model_type.cohort, "label_field": "diagnosis.code", "min_quality": 0.0}
        filters |= {"encounter_after": after, "encounter_before": before}
        snapshot = DatasetSnapshotFactory.create(model_type=model_type, ready=True, filters=filters)
        return TrainingJobFactory.create(dataset=snapshot)

    day = job_on("2026-03-14", "2026-03-14")  # trained by someone with the PHI permission
    years = job_on("2025-01-01", "2026-12-31")
    user = make_user(role)
    client = jwt_client(user)

    listed = {row["id"] for row in client.get(JOBS).json()["results"]}
    detail = client.get(f"{JOBS}{day.pk}/")
    user.groups.add(Group.objects.get(name=roles.CLINICIAN))
    with_phi = jwt_client(user)

    assert listed == {years.pk}
    assert detail.status_code == 404
    assert {row["id"] for row in with_phi.get(JOBS).json()["results"]} == {day.pk, years.pk}
    assert with_phi.get(f"{JOBS}{day.pk}/").status_code == 200


def test_a_nul_character_in_a_progress_report_is_a_400_not_a_database_error(client, external_job):
    # PostgreSQL stores NUL in neither text nor JSON: the schema fuzzer's metrics key "\u0000" was a 500 there.
    lease = client.post(job_url(external_job, "start")).json()["lease"]
    body = json.dumps({"lease": lease, "stage": "x", "progress": 1.0, "metrics": {"\x00": {}}})  # "\u0000" on the wire
    response = client.patch(job_url(external_job, "progress"), data=body, content_type="application/json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "parse_error"
