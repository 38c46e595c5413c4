"""The registry API through HTTP with JWT clients: versions, transitions, rollback, performance, history, upload."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from learning_engine import roles
from models_registry.models import ActivationHistory, ModelVersion, PerformanceRecord, VersionTransition
from models_registry.registry import views
from tests.conftest import jwt_client
from tests.models_registry.registry.factories import (
    ModelVersionFactory,
    artifact_bytes,
    external_completed_job,
    ready_snapshot,
    train_artifact,
)
from tests.training.factories import ModelTypeFactory
from training.models import DatasetSnapshot, TrainingJob

pytestmark = pytest.mark.django_db

BASE = "/api/v1/model-types/diagnosis"


def versions_url(slug: str = "diagnosis") -> str:
    return f"/api/v1/model-types/{slug}/versions/"


def version_url(label: str, action: str = "") -> str:
    return f"{BASE}/versions/{label}/" + (f"{action}/" if action else "")


@pytest.fixture
def lead_client(lead):
    return jwt_client(lead)


def last_activation() -> ActivationHistory:
    row = ActivationHistory.objects.order_by("created_at", "id").last()
    assert row is not None
    return row


def last_audit(version: ModelVersion) -> VersionTransition:
    row = VersionTransition.objects.filter(version=version).order_by("created_at", "id").last()
    assert row is not None
    return row


# --- List and detail -------------------------------------------------------------------------------


def test_the_version_list_shows_key_metrics_and_both_states(engineer, lead):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead, job__accuracy=0.8)
    ModelVersionFactory.create(created_by=engineer, job__accuracy=0.9)
    first.activate(by=lead)

    response = jwt_client(engineer).get(versions_url())

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["version"] for row in rows] == ["v1.1.0", "v1.0.0"]  # newest first
    newest, oldest = rows
    assert newest["key_metrics"] == {"accuracy": 0.9, "f1_macro": pytest.approx(0.89), "test_size": 100}
    assert (newest["approval_status"], newest["deployment_status"]) == ("pending", "inactive")
    assert (oldest["approval_status"], oldest["deployment_status"]) == ("approved", "active")
    assert oldest["approved_by"] == lead.username
    assert oldest["created_by"] == engineer.username
    assert oldest["deployed_at"] is not None
    assert "transitions" not in oldest  # detail only


def test_the_list_filters_by_state_and_rejects_bad_filters(engineer, lead):
    ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    ModelVersionFactory.create(created_by=engineer)
    client = jwt_client(engineer)

    approved_only = client.get(versions_url() + "?approval_status=approved").json()["results"]
    assert [row["version"] for row in approved_only] == ["v1.0.0"]
    pending = client.get(versions_url() + "?approval_status=pending&deployment_status=inactive").json()["results"]
    assert [row["version"] for row in pending] == ["v1.1.0"]
    ordered = client.get(versions_url() + "?ordering=version").json()["results"]
    assert [row["version"] for row in ordered] == ["v1.0.0", "v1.1.0"]

    for query in ("approval_status=maybe", "ordering=artifact", "created_after=yesterday", "dataset=x"):
        response = client.get(versions_url() + "?" + query)
        assert response.status_code == 400, query
        assert response.json()["code"] == "invalid"


def test_an_unknown_model_type_or_version_is_404(engineer):
    ModelVersionFactory.create(created_by=engineer)
    client = jwt_client(engineer)
    assert client.get(versions_url("no-such-type")).status_code == 404
    missing = client.get(version_url("v9.0.0"))
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_the_detail_has_hyperparameters_metrics_and_the_audit_trail(engineer, lead):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)

    body = jwt_client(engineer).get(version_url(version.version)).json()

    assert body["version"] == "v1.0.0"
    assert body["model_type"] == "diagnosis"
    assert body["job"] == version.job_id
    assert body["metrics"]["accuracy"] == 0.9
    assert body["hyperparameters"] == version.hyperparameters
    assert body["approval_note"] == "Reviewed."
    assert [(row["from_state"], row["to_state"]) for row in body["transitions"]] == [
        ("", "pending"),
        ("pending", "approved"),
    ]
    assert body["transitions"][1]["actor"] == lead.username


def test_the_list_costs_the_same_queries_for_many_versions(engineer, lead):
    ModelVersionFactory.create(created_by=engineer)
    client = jwt_client(engineer)
    with CaptureQueriesContext(connection) as few:
        assert client.get(versions_url()).status_code == 200
    for _ in range(6):
        ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(versions_url()).json()["results"]) == 7
    assert len(many.captured_queries) == len(few.captured_queries)


# --- Approval ---------------------------------------------------------------------------------------


def test_a_clinical_lead_approves_with_a_note(engineer, lead_client, lead):
    version = ModelVersionFactory.create(created_by=engineer)

    response = lead_client.post(version_url(version.version, "approve"), {"note": "Subgroups look fine."})

    assert response.status_code == 200, response.json()
    assert response.json()["approval_status"] == "approved"
    version.refresh_from_db()
    assert (version.approval_status, version.approved_by, version.approval_note) == (
        "approved",
        lead,
        "Subgroups look fine.",
    )
    audit = last_audit(version)
    assert (audit.to_state, audit.actor, audit.reason) == ("approved", lead, "Subgroups look fine.")


def test_the_creator_of_the_job_cannot_approve_or_reject_its_version(lead, lead_client):
    version = ModelVersionFactory.create(created_by=lead)  # the lead trained it: another person must approve

    for action in ("approve", "reject"):
        response = lead_client.post(version_url(version.version, action), {"note": "Mine."})
        assert response.status_code == 409
        assert response.json()["code"] == "four_eyes_violation"
    version.refresh_from_db()
    assert version.approval_status == "pending"


def test_a_second_decision_is_409(engineer, lead_client):
    version = ModelVersionFactory.create(created_by=engineer)
    assert lead_client.post(version_url(version.version, "reject"), {"note": "Overfits."}).status_code == 200

    for action in ("approve", "reject"):
        response = lead_client.post(version_url(version.version, action), {})
        assert response.status_code == 409
        assert response.json()["code"] == "invalid_transition"
        assert response.json()["current_status"] == "rejected"


def test_an_overlong_note_is_400(engineer, lead_client):
    version = ModelVersionFactory.create(created_by=engineer)
    response = lead_client.post(version_url(version.version, "approve"), {"note": "x" * 5000})
    assert response.status_code == 400
    assert "note" in response.json()["errors"]


# --- Deployment -------------------------------------------------------------------------------------


def test_activating_switches_the_active_version_and_writes_history(engineer, lead, lead_client):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)

    assert lead_client.post(version_url(first.version, "activate"), {"reason": "First."}).status_code == 200
    response = lead_client.post(version_url(second.version, "activate"), {"reason": "Better F1."})

    assert response.status_code == 200
    assert response.json()["deployment_status"] == "active"
    first.refresh_from_db()
    assert first.deployment_status == "inactive"
    assert ModelVersion.objects.active().get() == second
    assert list(ActivationHistory.objects.values_list("from_version__version", "to_version__version", "reason")) == [
        (None, "v1.0.0", "First."),
        ("v1.0.0", "v1.1.0", "Better F1."),
    ]


def test_an_unapproved_version_cannot_be_activated(engineer, lead_client):
    version = ModelVersionFactory.create(created_by=engineer)
    response = lead_client.post(version_url(version.version, "activate"), {"reason": "Try."})
    assert response.status_code == 409
    assert response.json()["code"] == "not_approved"
    assert not ActivationHistory.objects.exists()


def test_deactivate_then_archive_and_the_wrong_states_are_409(engineer, lead, lead_client):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    assert lead_client.post(version_url(version.version, "deactivate"), {}).status_code == 409
    assert lead_client.post(version_url(version.version, "activate"), {"reason": "Go."}).status_code == 200

    refused = lead_client.post(version_url(version.version, "archive"), {"reason": "Old."})
    assert refused.status_code == 409
    assert refused.json()["current_status"] == "active"

    deactivated = lead_client.post(version_url(version.version, "deactivate"), {"reason": "Drift."})
    assert deactivated.json()["deployment_status"] == "inactive"
    archived = lead_client.post(version_url(version.version, "archive"), {"reason": "Superseded."})
    assert archived.json()["deployment_status"] == "archived"
    assert lead_client.post(version_url(version.version, "activate"), {}).status_code == 409
    last = last_activation()
    assert (last.from_version, last.to_version, last.reason) == (version, None, "Drift.")


# --- Rollback ---------------------------------------------------------------------------------------


def test_rollback_reactivates_the_previous_version_with_audit_and_history(engineer, lead, lead_client):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    first.activate(by=lead, reason="First.")
    second.activate(by=lead, reason="Second.")

    response = lead_client.post(f"{BASE}/rollback/", {"reason": "Complaints from the ward."})

    assert response.status_code == 200, response.json()
    assert (response.json()["version"], response.json()["deployment_status"]) == ("v1.0.0", "active")
    assert ModelVersion.objects.active().get() == first
    row = last_activation()
    assert (row.from_version, row.to_version, row.actor) == (second, first, lead)
    assert row.reason == "Rollback from v1.1.0 to v1.0.0: Complaints from the ward."
    audit = last_audit(first)
    assert (audit.from_state, audit.to_state) == ("inactive", "active")
    assert audit.reason.startswith("Rollback from v1.1.0 to v1.0.0")

    # The version active before v1.0.0 now is v1.1.0: a second rollback swaps back.
    again = lead_client.post(f"{BASE}/rollback/", {})
    assert again.json()["version"] == "v1.1.0"
    assert last_activation().reason == "Rollback from v1.0.0 to v1.1.0."


def test_rollback_after_a_deactivation_reactivates_the_deactivated_version(engineer, lead, lead_client):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    version.activate(by=lead)
    version.deactivate(by=lead, reason="Outage.")
    response = lead_client.post(f"{BASE}/rollback/", {})
    assert response.status_code == 200
    assert ModelVersion.objects.active().get() == version
    assert last_activation().reason == "Rollback from no active version to v1.0.0."


def test_rollback_without_a_previous_version_is_409(engineer, lead, lead_client):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    none_yet = lead_client.post(f"{BASE}/rollback/", {})
    assert none_yet.status_code == 409
    assert none_yet.json()["code"] == "no_previous_version"

    version.activate(by=lead)
    only_one = lead_client.post(f"{BASE}/rollback/", {})
    assert only_one.status_code == 409
    assert only_one.json()["code"] == "no_previous_version"
    assert ActivationHistory.objects.count() == 1


def test_rollback_to_an_archived_version_is_refused(engineer, lead, lead_client):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    first.activate(by=lead)
    second.activate(by=lead)
    first.refresh_from_db()
    first.archive(by=lead, reason="Retired.")
    response = lead_client.post(f"{BASE}/rollback/", {})
    assert response.status_code == 409
    assert response.json()["code"] == "rollback_target_unavailable"
    assert ModelVersion.objects.active().get() == second


def test_rollback_of_an_unknown_model_type_is_404(lead_client):
    assert lead_client.post("/api/v1/model-types/nothing/rollback/", {}).status_code == 404


# --- Performance ------------------------------------------------------------------------------------


def test_reported_performance_is_stored_as_reported_and_decides_nothing(engineer):
    version = ModelVersionFactory.create(created_by=engineer)
    client = jwt_client(engineer)

    response = client.post(
        version_url(version.version, "performance"),
        {"metrics": {"accuracy": 0.99, "f1_macro": 0.98}, "test_set_size": 500},
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["source"], body["metrics"], body["test_set_size"]) == (
        "reported",
        {"accuracy": 0.99, "f1_macro": 0.98},
        500,
    )
    assert body["created_by"] == engineer.username
    version.refresh_from_db()
    assert version.metrics["accuracy"] == 0.9  # the registry's own, untouched
    records = client.get(version_url(version.version, "performance")).json()["results"]
    assert [record["source"] for record in records] == ["offline", "reported"]
    reported = client.get(version_url(version.version, "performance") + "?source=reported").json()["results"]
    assert [record["metrics"]["accuracy"] for record in reported] == [0.99]
    assert client.get(version_url(version.version, "performance") + "?source=rumour").status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"test_set_size": 500}, "metrics"),
        ({"metrics": {"accuracy": 0.9}}, "test_set_size"),
        ({"metrics": [0.9], "test_set_size": 500}, "metrics"),
        ({"metrics": {}, "test_set_size": 500}, "metrics"),
        ({"metrics": {"accuracy": "high"}, "test_set_size": 500}, "metrics"),
        ({"metrics": {"accuracy": True}, "test_set_size": 500}, "metrics"),
        ({"metrics": {"accuracy": {"value": 1}}, "test_set_size": 500}, "metrics"),
        ({"metrics": {f"m{i}": 0.5 for i in range(51)}, "test_set_size": 500}, "metrics"),
        ({"metrics": {"x" * 65: 0.5}, "test_set_size": 500}, "metrics"),
        ({"metrics": {"accuracy": 0.9}, "test_set_size": 0}, "test_set_size"),
        ({"metrics": {"accuracy": 0.9}, "test_set_size": -5}, "test_set_size"),
        ({"metrics": {"accuracy": 0.9}, "test_set_size": 2.5}, "test_set_size"),
        ({"metrics": {"accuracy": 0.9}, "test_set_size": 10**12}, "test_set_size"),
    ],
)
def test_a_malformed_performance_report_is_400(engineer, body, field):
    version = ModelVersionFactory.create(created_by=engineer)
    response = jwt_client(engineer).post(version_url(version.version, "performance"), body)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not PerformanceRecord.objects.filter(source="reported").exists()


def test_non_finite_reported_metrics_are_400(engineer):
    version = ModelVersionFactory.create(created_by=engineer)
    response = jwt_client(engineer).post(
        version_url(version.version, "performance"),
        data='{"metrics": {"accuracy": NaN}, "test_set_size": 5}',
        content_type="application/json",
    )
    assert response.status_code == 400


# --- History ------------------------------------------------------------------------------------------


def test_history_lists_versions_with_performance_and_the_activations(engineer, lead):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead, job__accuracy=0.8)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead, job__accuracy=0.85)
    PerformanceRecord.objects.create(version=first, source="live", metrics={"accuracy": 0.7}, test_set_size=20)
    first.activate(by=lead, reason="Go.")
    second.activate(by=lead, reason="Better.")

    response = jwt_client(lead).get(f"{BASE}/history/")

    assert response.status_code == 200
    body = response.json()
    assert body["model_type"] == "diagnosis"
    assert body["active_version"] == "v1.1.0"
    assert [v["version"] for v in body["versions"]] == ["v1.0.0", "v1.1.0"]
    first_row = body["versions"][0]
    assert [(p["source"], p["metrics"]["accuracy"]) for p in first_row["performance"]] == [
        ("offline", 0.8),
        ("live", 0.7),
    ]
    assert first_row["performance_truncated"] is False
    assert [(a["from_version"], a["to_version"], a["reason"]) for a in body["activations"]] == [
        (None, "v1.0.0", "Go."),
        ("v1.0.0", "v1.1.0", "Better."),
    ]
    assert body["activations"][0]["actor"] == lead.username


def test_history_keeps_the_latest_records_per_version(engineer, monkeypatch):
    monkeypatch.setattr(views, "HISTORY_RECORDS_PER_VERSION", 3)
    version = ModelVersionFactory.create(created_by=engineer)
    for accuracy in (0.1, 0.2, 0.3, 0.4):
        PerformanceRecord.objects.create(version=version, source="live", metrics={"accuracy": accuracy})
    row = jwt_client(engineer).get(f"{BASE}/history/").json()["versions"][0]
    assert [p["metrics"]["accuracy"] for p in row["performance"]] == [0.2, 0.3, 0.4]
    assert row["performance_truncated"] is True


def test_history_leaves_out_reported_metrics_that_are_not_numbers(engineer):
    version = ModelVersionFactory.create(created_by=engineer)
    PerformanceRecord.objects.create(
        version=version, source="reported", metrics={"accuracy": "great", "f1_macro": 10**400, "brier": [1]}
    )
    response = jwt_client(engineer).get(f"{BASE}/history/")
    assert response.status_code == 200
    metrics = response.json()["versions"][0]["performance"][-1]["metrics"]
    assert (metrics["accuracy"], metrics["f1_macro"], metrics["brier"]) == (None, None, None)


def test_history_at_a_time_answers_which_version_was_active(engineer, lead):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    before = timezone.now()
    first.activate(by=lead)
    between = timezone.now()
    second.activate(by=lead)
    after = timezone.now()
    client = jwt_client(lead)

    def at(moment: dt.datetime) -> dict[str, Any]:
        response = client.get(f"{BASE}/history/", {"at": moment.isoformat()})
        assert response.status_code == 200
        return response.json()

    assert at(before - dt.timedelta(seconds=1))["active_version"] is None
    assert at(between)["active_version"]["version"] == "v1.0.0"
    latest = at(after)
    assert latest["active_version"]["version"] == "v1.1.0"
    assert latest["activated_at"] is not None
    second.deactivate(by=lead)
    assert at(timezone.now())["active_version"] is None
    assert at(between)["active_version"]["version"] == "v1.0.0"  # the past does not change


def test_history_with_a_bad_time_is_400(engineer):
    response = jwt_client(engineer).get(f"{BASE}/history/?at=last-tuesday")
    assert response.status_code == 400
    assert "at" in response.json()["errors"]


# --- Upload of an external trainer's artifact ---------------------------------------------------------


@pytest.fixture
def artifact(snapshot) -> Any:
    """A real trained model's TrainingResult (its skops file in storage)."""
    return train_artifact(snapshot)


def upload(client: Any, job_id: Any, data: bytes, **extra: Any) -> Any:
    body = {"job": job_id, "artifact": SimpleUploadedFile("model.skops", data), **extra}
    return client.post(f"{BASE}/versions/upload/", body, format="multipart")


def test_an_uploaded_artifact_is_evaluated_by_the_registry_and_registered(engineer, snapshot, artifact):
    reported = {"accuracy": 0.999, "f1_macro": 0.998}
    job = external_completed_job(snapshot, by=engineer, reported=reported)

    response = upload(jwt_client(engineer), job.pk, artifact_bytes(artifact))

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["version"], body["job"], body["dataset"]) == ("v1.0.0", job.pk, snapshot.pk)
    assert (body["approval_status"], body["deployment_status"]) == ("pending", "inactive")
    version = ModelVersion.objects.get(job=job)
    # The registry's own evaluation: the same model on the same test split as the trainer's.
    assert version.metrics["accuracy"] == pytest.approx(artifact.evaluation["accuracy"])
    assert version.metrics["accuracy"] != reported["accuracy"]
    assert version.artifact_sha256 == artifact.artifact_sha256
    assert version.load_artifact().classes == ["J06.9", "J18.9"]
    offline = PerformanceRecord.objects.get(version=version, source="offline")
    assert offline.metrics["evaluated_by"] == "registry"
    assert (offline.dataset, offline.test_set_size) == (snapshot, 60)
    stored = PerformanceRecord.objects.get(version=version, source="reported")
    assert stored.metrics == reported
    assert "uploaded by" in VersionTransition.objects.get(version=version).reason


# --- The two-person rule across the upload route ------------------------------------------------------

JOBS = "/api/v1/training/jobs/"


@pytest.fixture
def engineer_and_lead(make_user):
    """A user in both the ml_engineer and the clinical_lead groups."""
    user = make_user("ml_engineer")
    user.groups.add(Group.objects.get(name="clinical_lead"))
    return user


def external_job_through_the_api(snapshot: Any, *, creator: Any, starter: Any, completer: Any) -> TrainingJob:
    job = TrainingJob.submit(model_type=snapshot.model_type, by=creator, dataset=snapshot, executor="external")
    started = jwt_client(starter).post(f"{JOBS}{job.pk}/start/")
    assert started.status_code == 200, started.json()
    completed = jwt_client(completer).post(
        f"{JOBS}{job.pk}/complete/", {"lease": started.json()["lease"]}, format="json"
    )
    assert completed.status_code == 200, completed.json()
    return job


@pytest.mark.parametrize("part", ["starter", "completer", "uploader", "all"])
def test_whoever_started_completed_or_uploaded_a_version_cannot_approve_it(
    part, engineer, engineer_and_lead, snapshot, artifact
):
    # The job is another engineer's; the dual-role user does one part (or all) of making the version.
    dual = engineer_and_lead
    people = {name: dual if part in (name, "all") else engineer for name in ("starter", "completer", "uploader")}
    job = external_job_through_the_api(
        snapshot, creator=engineer, starter=people["starter"], completer=people["completer"]
    )
    uploaded = upload(jwt_client(people["uploader"]), job.pk, artifact_bytes(artifact))
    assert uploaded.status_code == 201, uploaded.json()
    version = ModelVersion.objects.get(job=job)

    for action in ("approve", "reject"):
        response = jwt_client(dual).post(version_url(version.version, action), {"note": "Looks fine."})
        assert response.status_code == 409, response.json()
        assert response.json()["code"] == "four_eyes_violation"
    version.refresh_from_db()
    assert version.approval_status == "pending"
    assert version.actor_ids() == {engineer.pk, dual.pk}


def test_a_superuser_who_uploaded_a_version_cannot_approve_it(engineer, make_user, snapshot, artifact):
    admin = make_user(None, is_superuser=True, is_staff=True)
    job = external_job_through_the_api(snapshot, creator=engineer, starter=engineer, completer=engineer)
    assert upload(jwt_client(admin), job.pk, artifact_bytes(artifact)).status_code == 201
    version = ModelVersion.objects.get(job=job)

    response = jwt_client(admin).post(version_url(version.version, "approve"), {"note": "Mine to approve."})

    assert response.status_code == 409
    assert response.json()["code"] == "four_eyes_violation"
    assert VersionTransition.objects.get(version=version, to_state="pending").actor == admin


def test_a_lead_who_took_no_part_approves_an_uploaded_version(engineer, engineer_and_lead, lead, snapshot, artifact):
    job = external_job_through_the_api(snapshot, creator=engineer, starter=engineer_and_lead, completer=engineer)
    assert upload(jwt_client(engineer_and_lead), job.pk, artifact_bytes(artifact)).status_code == 201
    version = ModelVersion.objects.get(job=job)

    response = jwt_client(lead).post(version_url(version.version, "approve"), {"note": "Reviewed."})

    assert response.status_code == 200, response.json()


def test_an_upload_may_name_its_own_label(engineer, snapshot, artifact):
    job = external_completed_job(snapshot, by=engineer)
    response = upload(jwt_client(engineer), job.pk, artifact_bytes(artifact), version="hospital-2026.1")
    assert response.status_code == 201, response.json()
    assert response.json()["version"] == "hospital-2026.1"
    assert not PerformanceRecord.objects.filter(source="reported").exists()  # nothing was reported
    detail = jwt_client(engineer).get(version_url("hospital-2026.1"))
    assert detail.status_code == 200


@pytest.mark.parametrize("label", ["upload", "has space", "-dash-first", "x" * 33, "a/b"])
def test_an_unusable_label_is_400(engineer, snapshot, artifact, label):
    job = external_completed_job(snapshot, by=engineer)
    response = upload(jwt_client(engineer), job.pk, artifact_bytes(artifact), version=label)
    assert response.status_code == 400
    assert "version" in response.json()["errors"]


def test_garbage_bytes_are_refused_with_a_code(engineer, snapshot):
    job = external_completed_job(snapshot, by=engineer)
    response = upload(jwt_client(engineer), job.pk, b"not a skops file at all")
    assert response.status_code == 400
    assert response.json()["code"] == "artifact_invalid"
    assert not ModelVersion.objects.exists()


def test_uploads_for_jobs_that_cannot_take_one_are_refused(engineer, snapshot, artifact):
    client = jwt_client(engineer)
    data = artifact_bytes(artifact)

    unknown = upload(client, 999999, data)
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_job")

    worker_job = TrainingJob.submit(model_type=snapshot.model_type, by=engineer, dataset=snapshot)
    assert upload(client, worker_job.pk, data).json()["code"] == "worker_job"

    running = TrainingJob.submit(model_type=snapshot.model_type, by=engineer, dataset=snapshot, executor="external")
    running.start(worker_id="api:x")
    not_done = upload(client, running.pk, data)
    assert (not_done.status_code, not_done.json()["code"]) == (409, "job_not_completed")

    done = external_completed_job(snapshot, by=engineer)
    assert upload(client, done.pk, data).status_code == 201
    again = upload(client, done.pk, data)
    assert (again.status_code, again.json()["code"]) == (409, "already_registered")
    assert ModelVersion.objects.count() == 1


def test_an_upload_for_another_model_types_job_is_an_unknown_job(engineer, artifact):
    other = ready_snapshot(ModelTypeFactory.create(slug="other", cohort="cardiology"), by=engineer, seed=5)
    job = external_completed_job(other, by=engineer)
    response = upload(jwt_client(engineer), job.pk, artifact_bytes(artifact))
    assert response.json()["code"] == "unknown_job"


def test_an_upload_without_a_file_or_job_is_400(engineer):
    response = jwt_client(engineer).post(f"{BASE}/versions/upload/", {}, format="multipart")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"job", "artifact"}


def test_an_oversized_artifact_is_413(engineer, snapshot, artifact, monkeypatch):
    monkeypatch.setattr(views, "MAX_ARTIFACT_BYTES", 100)
    job = external_completed_job(snapshot, by=engineer)
    response = upload(jwt_client(engineer), job.pk, artifact_bytes(artifact))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_a_json_body_on_the_upload_is_415(engineer):
    response = jwt_client(engineer).post(f"{BASE}/versions/upload/", {"job": 1})
    assert response.status_code == 415


# --- Concurrency (PostgreSQL) -------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_never_leave_two_active_versions_nor_answer_500(make_user):
    engineer, lead = make_user("ml_engineer"), make_user("clinical_lead")
    versions = [ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead) for _ in range(6)]
    clients = [jwt_client(make_user("clinical_lead")) for _ in versions]
    barrier = threading.Barrier(len(versions))
    statuses: dict[str, list[int]] = {"activate": [], "deactivate": []}
    lock = threading.Lock()

    def race(client: Any, version: ModelVersion) -> None:
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            for _ in range(3):  # several rounds: activate, then try to step down again
                for action in ("activate", "deactivate"):
                    response = client.post(version_url(version.version, action), {"reason": "Race."})
                    with lock:
                        statuses[action].append(response.status_code)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=race, args=pair) for pair in zip(clients, versions, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(statuses["activate"]) == len(statuses["deactivate"]) == 3 * len(versions)
    assert set(statuses["activate"]) | set(statuses["deactivate"]) <= {200, 409}
    assert 200 in statuses["activate"]
    assert ModelVersion.objects.active().count() <= 1
    # Every successful change wrote one history row, and the rows form one chain: each change
    # starts from the version the previous one left active.
    rows = list(ActivationHistory.objects.order_by("created_at", "id"))
    assert len(rows) == statuses["activate"].count(200) + statuses["deactivate"].count(200)
    previous = None
    for row in rows:
        assert row.from_version_id == previous
        previous = row.to_version_id
    active = ModelVersion.objects.active().first()
    assert previous == (active.pk if active else None)


def on_a_day_wide_snapshot(version: ModelVersion, by: Any) -> None:
    """Move a version (and its job) onto a snapshot over one day, as a PHI user could have made."""
    filters = {"cohort": version.model_type.cohort, "min_quality": 0.0, "encounter_after": "2024-05-11"}
    day = DatasetSnapshot.objects.create(model_type=version.model_type, created_by=by, filters=filters)
    ModelVersion.objects.filter(pk=version.pk).update(dataset=day)
    assert version.job_id is not None
    TrainingJob.objects.filter(pk=version.job_id).update(dataset=day)


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_a_version_on_a_day_wide_snapshot_is_hidden_from_users_without_phi(make_user, engineer, role):
    shown, hidden = ModelVersionFactory.create(created_by=engineer), ModelVersionFactory.create(created_by=engineer)
    on_a_day_wide_snapshot(hidden, engineer)
    PerformanceRecord.objects.create(version=hidden, source="live", metrics={"accuracy": 0.5})
    user = make_user(role)
    client = jwt_client(user)

    listed = [row["version"] for row in client.get(versions_url()).json()["results"]]
    history = [row["version"] for row in client.get(f"{BASE}/history/").json()["versions"]]
    statuses = [
        client.get(version_url(hidden.version)).status_code,
        client.get(version_url(hidden.version, "performance")).status_code,
        client.get(f"{BASE}/compare/?a={shown.version}&b={hidden.version}").status_code,
    ]
    user.groups.add(Group.objects.get(name=roles.CLINICIAN))
    with_phi = jwt_client(user)

    assert listed == [shown.version]
    assert history == [shown.version]
    assert statuses == [404, 404, 404]
    assert with_phi.get(version_url(hidden.version)).status_code == 200
    # Found (these fake versions have nothing to compare: 409), not hidden.
    assert with_phi.get(f"{BASE}/compare/?a={shown.version}&b={hidden.version}").status_code == 409
