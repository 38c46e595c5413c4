"""The training admin, through the HTTP client: job list and actions, job form, job and dataset pages."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.db import connection
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.tasks.backends.dummy import DummyBackend
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from learning_engine import roles
from learning_engine.charts import line_chart
from tests.training.test_evaluation import CLASSES, ID, PROBABILITIES, TRUTH, StubModel, stub_rows
from training.admin.display import history_charts
from training.evaluation import evaluate
from training.models import DatasetSnapshot, JobTransition, ModelType, TrainingJob

JOBS = reverse("admin:training_trainingjob_changelist")
JOB_ADD = reverse("admin:training_trainingjob_add")
DATASETS = reverse("admin:training_datasetsnapshot_changelist")
DATASET_ADD = reverse("admin:training_datasetsnapshot_add")
MODEL_TYPES = reverse("admin:training_modeltype_changelist")


def job_url(job: TrainingJob) -> str:
    return reverse("admin:training_trainingjob_change", args=[job.pk])


def live_url(job: TrainingJob) -> str:
    return reverse("admin:training_trainingjob_live", args=[job.pk])


def dataset_url(dataset: DatasetSnapshot) -> str:
    return reverse("admin:training_datasetsnapshot_change", args=[dataset.pk])


def queue() -> DummyBackend:
    """The tests' task backend (pyproject sets the dummy one): it records what was enqueued."""
    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    assert isinstance(backend, DummyBackend)
    return backend


pytestmark = pytest.mark.usefixtures("empty_task_queue")


@pytest.fixture
def owner(make_user):
    return make_user(roles.ML_ENGINEER)


def submit(model_type: ModelType, by: Any, **kwargs: Any) -> TrainingJob:
    return TrainingJob.submit(model_type=model_type, by=by, **kwargs)


def set_state(job: TrainingJob, **fields: Any) -> TrainingJob:
    """Simulate what a worker wrote (status, history, evaluation, ...) without running one."""
    TrainingJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


def ready_dataset(model_type: ModelType, by: Any, **results: Any) -> DatasetSnapshot:
    snapshot = DatasetSnapshot.objects.create(model_type=model_type, filters={"cohort": "respiratory"}, created_by=by)
    manifest = {"train": list(range(1, 8)), "validation": [8, 9], "test": [10, 11, 12]}
    snapshot.complete(
        **{
            "manifest": manifest,
            "label_counts": {
                "train": {"J18.9": 4, "J45.909": 3},
                "validation": {"J18.9": 1, "J45.909": 1},
                "test": {"J18.9": 2, "J45.909": 1},
            },
            "case_count": 12,
            "patient_count": 10,
            "policy_version": "deid-v1",
            "content_hash": "ab" * 32,
            "file": "datasets/1-abababababab.parquet",
            "file_sha256": "cd" * 32,
            "file_size": 20480,
            "scan_report": {"clean": True, "cases_scanned": 12, "strings_scanned": 80, "findings": []},
            **results,
        }
    )
    return snapshot


def real_evaluation() -> dict[str, Any]:
    """What training.evaluation.evaluate stores, for a hand-made model (3 labels, 2 sexes, 2 age bands)."""
    sexes = ["female", "male"] * 5
    bands: list[str | None] = ["40-49", "40-49", "50-59", "50-59", "90+"] * 2
    rows = stub_rows(TRUTH, sexes=sexes, bands=bands)
    return evaluate(StubModel(CLASSES, PROBABILITIES), rows, numeric_features=[ID], resamples=50)


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def action_post(client, action: str, jobs: list[TrainingJob], **data: Any):
    return client.post(JOBS, {"action": action, "index": "0", "_selected_action": [job.pk for job in jobs], **data})


def confirm_post(client, action: str, jobs: list[TrainingJob], **data: Any):
    payload = {"action": action, "post": "yes", "_selected_action": [job.pk for job in jobs], **data}
    return client.post(JOBS, payload, follow=True)


def training_tasks() -> list[Any]:
    return [result for result in queue().results if result.task.name == "run_training_job"]


# --- The job list ---------------------------------------------------------------------------------


def test_the_job_list_shows_a_progress_bar_status_and_stage_per_job(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    queued = submit(model_type, owner)
    running = set_state(submit(model_type, owner), status="running", progress=42.0, stage="Epoch 5/10")

    response = client.get(JOBS)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<progress") == 2
    assert 'value="42.0" max="100"' in html
    assert "Epoch 5/10" in html
    assert "job-status-running" in html
    assert "1 running" in html
    assert "1 queued" in html
    assert {job.pk for job in response.context["cl"].result_list} == {queued.pk, running.pk}


def test_the_job_list_costs_the_same_number_of_queries_for_5_and_200_jobs(staff, make_user):
    client, _user = staff(roles.ML_ENGINEER)
    model_types = [ModelType.objects.create(slug=f"type-{i}", name=f"Type {i}", cohort=f"cohort-{i}") for i in range(3)]
    creators = [make_user(roles.ML_ENGINEER) for _ in range(3)]

    def add_jobs(count: int, offset: int) -> None:
        TrainingJob.objects.bulk_create(
            TrainingJob(
                model_type=model_types[(offset + i) % 3],
                created_by=creators[(offset + i) % 3],
                algorithm="sgd",
                status=["queued", "running", "completed", "failed"][i % 4],
                progress=float(i % 100),
                stage=f"Epoch {i % 10 + 1}/10",
                history=[{"epoch": 1, "train_loss": 0.5}] * 3,
            )
            for i in range(count)
        )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(JOBS)
        assert response.status_code == 200
        return len(captured.captured_queries)

    add_jobs(5, 0)
    few = queries()
    add_jobs(195, 5)
    many = queries()

    assert TrainingJob.objects.count() == 200
    assert many == few


def test_the_job_list_does_not_read_history_or_evaluation(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    submit(model_type, owner)

    with CaptureQueriesContext(connection) as captured:
        client.get(JOBS)

    list_queries = [q["sql"] for q in captured.captured_queries if 'FROM "training_trainingjob" INNER JOIN' in q["sql"]]
    assert list_queries
    for sql in list_queries:
        assert '"training_trainingjob"."history"' not in sql
        assert '"training_trainingjob"."evaluation"' not in sql


def test_the_job_list_filters_by_status_and_model_type_and_searches_by_id(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    other_type = ModelType.objects.create(slug="breast-mass", name="Breast mass", cohort="breast")
    queued = submit(model_type, owner)
    failed = set_state(submit(other_type, owner), status="failed")

    by_status = client.get(JOBS, {"status__exact": "failed"}).context["cl"].result_list
    by_type = client.get(JOBS, {"model_type__id__exact": model_type.pk}).context["cl"].result_list
    by_id = client.get(JOBS, {"q": str(queued.pk)}).context["cl"].result_list
    not_an_id = client.get(JOBS, {"q": "not-a-number"})

    assert [job.pk for job in by_status] == [failed.pk]
    assert [job.pk for job in by_type] == [queued.pk]
    assert [job.pk for job in by_id] == [queued.pk]
    assert not_an_id.status_code == 200
    assert list(not_an_id.context["cl"].result_list) == []


# --- Actions --------------------------------------------------------------------------------------


def test_cancel_selected_shows_a_confirmation_page_first_and_changes_nothing(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    queued = submit(model_type, owner)
    completed = set_state(submit(model_type, owner), status="completed", progress=100.0)

    response = action_post(client, "cancel_selected", [queued, completed])

    assert response.status_code == 200
    html = response.content.decode()
    assert "Cancel jobs" in html
    assert 'name="post" value="yes"' in html
    assert 'name="reason"' in html
    assert f"Job {completed.pk} (diagnosis, logistic_regression, completed): will be skipped" in html
    assert set(TrainingJob.objects.values_list("status", flat=True)) == {"queued", "completed"}


def test_cancel_selected_cancels_queued_jobs_and_skips_finished_ones_with_counts(staff, model_type, owner):
    client, user = staff(roles.ML_ENGINEER)
    queued = submit(model_type, owner)
    running = set_state(submit(model_type, owner), status="running")
    completed = set_state(submit(model_type, owner), status="completed", progress=100.0)

    response = confirm_post(client, "cancel_selected", [queued, running, completed], reason="Wrong dataset.")

    assert response.status_code == 200
    statuses = dict(TrainingJob.objects.values_list("pk", "status"))
    assert statuses == {queued.pk: "cancelled", running.pk: "cancelled", completed.pk: "completed"}
    last = JobTransition.objects.filter(job=queued).last()
    assert last is not None
    assert (last.from_state, last.to_state, last.actor, last.reason) == ("queued", "cancelled", user, "Wrong dataset.")
    texts = message_texts(response)
    assert texts[0] == "Cancelled 2 training jobs."
    assert texts[1].startswith("Skipped 1 training job:")
    assert "completed" in texts[1]
    assert len(texts) == 2


def test_cancel_selected_needs_a_reason(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    queued = submit(model_type, owner)

    response = confirm_post(client, "cancel_selected", [queued], reason="")

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    queued.refresh_from_db()
    assert queued.status == "queued"


def test_retry_selected_requeues_a_failed_job_and_enqueues_it(
    staff, model_type, owner, django_capture_on_commit_callbacks
):
    client, user = staff(roles.ML_ENGINEER)
    failed = set_state(submit(model_type, owner), status="failed", attempts=1, error_log="[t] boom")
    exhausted = set_state(submit(model_type, owner), status="failed", attempts=3, max_attempts=3)

    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_post(client, "retry_selected", [failed, exhausted])

    failed.refresh_from_db()
    exhausted.refresh_from_db()
    assert failed.status == "queued"
    assert exhausted.status == "failed"
    assert [task.args for task in training_tasks()] == [[failed.pk]]
    assert JobTransition.objects.filter(job=failed, to_state="queued", actor=user).exists()
    texts = message_texts(response)
    assert texts[0] == "Requeued 1 training job."
    assert "used all 3 attempts" in texts[1]


def test_start_selected_enqueues_queued_worker_jobs_again_and_skips_the_rest(
    staff, model_type, owner, django_capture_on_commit_callbacks
):
    client, _user = staff(roles.ML_ENGINEER)
    queued = submit(model_type, owner, priority=7)
    running = set_state(submit(model_type, owner), status="running")
    external = submit(model_type, owner, executor=TrainingJob.Executor.EXTERNAL)

    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_post(client, "start_selected", [queued, running, external])

    tasks = training_tasks()
    assert [task.args for task in tasks] == [[queued.pk]]
    assert tasks[0].task.priority == 7
    queued.refresh_from_db()
    assert queued.status == "queued"  # the worker, not the admin, starts it
    texts = message_texts(response)
    assert texts[0] == "Enqueued 1 training job."
    assert texts[1].startswith("Skipped 2 training jobs:")
    assert "external trainer" in texts[1]


def test_a_job_can_be_cancelled_from_its_own_page(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    queued = submit(model_type, owner)
    url = job_url(queued)
    form_action = {"CHANGE_FORM-action": "cancel_selected", "_selected_action": queued.pk}

    confirmation = client.post(url, form_action)
    response = client.post(url, {**form_action, "post": "yes", "reason": "Not needed."}, follow=True)

    assert confirmation.status_code == 200
    assert "Cancel jobs" in confirmation.content.decode()
    assert response.status_code == 200
    queued.refresh_from_db()
    assert queued.status == "cancelled"


# --- The add form ---------------------------------------------------------------------------------


def job_form(model_type: ModelType, **overrides: Any) -> dict[str, Any]:
    data = {
        "model_type": model_type.pk,
        "algorithm": "",
        "epochs": "",
        "batch_size": "",
        "learning_rate": "",
        "hyperparameters": "",
        "dataset": "",
        "priority": "0",
        "max_attempts": "3",
        "_save": "Save",
    }
    return data | overrides


def test_the_add_form_creates_a_queued_job_with_epochs_and_batch_size(
    staff, model_type, django_capture_on_commit_callbacks
):
    client, user = staff(roles.ML_ENGINEER)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(JOB_ADD, job_form(model_type, epochs="10", batch_size="32", priority="5"))

    job = TrainingJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == job_url(job)
    assert job.status == "queued"
    assert job.algorithm == "sgd"  # epochs without an algorithm: the model type's epoch-based default
    assert job.hyperparameters["epochs"] == 10
    assert job.hyperparameters["batch_size"] == 32
    assert job.priority == 5
    assert job.created_by == user
    assert list(job.transitions.values_list("to_state", "actor")) == [("queued", user.pk)]
    assert [task.args for task in training_tasks()] == [[job.pk]]


def test_the_add_form_takes_a_ready_dataset_and_json_hyperparameters(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    dataset = ready_dataset(model_type, owner)
    data = job_form(model_type, algorithm="mlp", hyperparameters='{"hidden_layers": [16, 8]}', dataset=dataset.pk)

    response = client.post(JOB_ADD, data)

    assert response.status_code == 302
    job = TrainingJob.objects.get()
    assert job.dataset == dataset
    assert job.hyperparameters["hidden_layers"] == [16, 8]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"hyperparameters": '{"nonsense": 1}'}, "is not a hyperparameter of logistic_regression"),
        ({"hyperparameters": "[1, 2]"}, "Must be a JSON object"),
        ({"hyperparameters": "{not json"}, "Enter a valid JSON"),
        ({"algorithm": "sgd", "hyperparameters": '{"epochs": 0}'}, "must be between 1 and 1000"),
        (
            {"algorithm": "logistic_regression", "learning_rate": "0.1"},
            "is not a hyperparameter of logistic_regression",
        ),
        ({"epochs": "0"}, "greater than or equal to 1"),
        ({"epochs": "5", "hyperparameters": '{"epochs": 6}'}, "give it once"),
        ({"priority": "101"}, "less than or equal to 100"),
        ({"algorithm": "no_such_algorithm"}, "Select a valid choice"),
    ],
)
def test_the_add_form_rejects_bad_input_with_a_form_error(staff, model_type, overrides, error):
    client, _user = staff(roles.ML_ENGINEER)

    response = client.post(JOB_ADD, job_form(model_type, **overrides))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_the_add_form_rejects_a_dataset_of_another_model_type(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    other_type = ModelType.objects.create(slug="breast-mass", name="Breast mass", cohort="breast")
    foreign = ready_dataset(other_type, owner)

    response = client.post(JOB_ADD, job_form(model_type, dataset=foreign.pk))

    assert response.status_code == 200
    assert "belongs to breast-mass, not diagnosis" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_the_add_form_neither_offers_nor_takes_a_snapshot_hidden_from_the_user(staff, model_type, owner):
    # A day-wide snapshot (made by someone with the PHI permission): its case count in the choice
    # label, or a job on it, would tell ML staff how many cases were seen that day.
    client, user = staff(roles.ML_ENGINEER)
    visible = ready_dataset(model_type, owner)
    day = ready_dataset(model_type, owner)
    day_filters = {**day.filters, "encounter_after": "2026-03-14", "encounter_before": "2026-03-14"}
    DatasetSnapshot.objects.filter(pk=day.pk).update(filters=day_filters)

    offered = [value for value, _label in response_choices(client.get(JOB_ADD), "dataset")]
    refused = client.post(JOB_ADD, job_form(model_type, dataset=day.pk))
    user.groups.add(Group.objects.get(name=roles.CLINICIAN))
    offered_with_phi = [value for value, _label in response_choices(client.get(JOB_ADD), "dataset")]

    assert str(day.pk) not in offered
    assert str(visible.pk) in offered
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    assert not TrainingJob.objects.exists()
    assert str(day.pk) in offered_with_phi


def test_the_add_form_offers_only_ready_datasets(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    ready = ready_dataset(model_type, owner)
    building = DatasetSnapshot.objects.create(model_type=model_type, created_by=owner)

    choices = [value for value, _label in response_choices(client.get(JOB_ADD), "dataset")]

    assert str(ready.pk) in choices
    assert str(building.pk) not in choices


def response_choices(response, field: str) -> list[tuple[str, str]]:
    form = response.context["adminform"].form
    return [(str(value), str(label)) for value, label in form.fields[field].choices if value != ""]


# --- The job page ---------------------------------------------------------------------------------


HISTORY = [
    {"epoch": k, "epochs": 4, "train_loss": 1.0 / k, "val_loss": 1.1 / k, "val_accuracy": 0.5 + k / 10}
    for k in range(1, 5)
]


def test_the_job_page_draws_the_loss_and_accuracy_curves_as_svg(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    job = set_state(
        submit(model_type, owner, algorithm="sgd"),
        status="running",
        progress=60.0,
        stage="Epoch 4/10",
        history=HISTORY,
        metrics={"train_loss": 0.25, "val_loss": 0.275, "val_accuracy": 0.9},
    )

    response = client.get(job_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html
    assert "<polyline" in html
    assert "Loss per epoch" in html
    assert "Validation accuracy per epoch" in html
    assert "train loss" in html
    assert "validation loss" in html
    assert "Epoch 4/10" in html
    assert "cdn" not in html.lower()
    assert '<script src="http' not in html


def test_a_running_job_page_polls_its_live_fragment_and_a_finished_one_does_not(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    running = set_state(submit(model_type, owner, algorithm="sgd"), status="running", history=HISTORY)
    completed = set_state(submit(model_type, owner), status="completed", progress=100.0)

    running_page = client.get(job_url(running)).content.decode()
    fragment = client.get(live_url(running))
    completed_fragment = client.get(live_url(completed)).content.decode()

    assert f'data-live-url="{live_url(running)}"' in running_page
    assert "training/live_refresh.js" in running_page
    assert 'data-live-state="active"' in running_page
    assert fragment.status_code == 200
    fragment_html = fragment.content.decode()
    assert 'data-live-state="active"' in fragment_html
    assert "<svg" in fragment_html
    assert "<html" not in fragment_html  # a fragment, not a page
    assert 'data-live-state="done"' in completed_fragment


def test_the_job_heading_has_no_status_that_could_go_stale_and_the_live_fragment_carries_every_changing_field(
    staff, model_type, owner
):
    from django.utils import timezone

    client, _user = staff(roles.ML_ENGINEER)
    job = submit(model_type, owner, algorithm="sgd")
    page = client.get(job_url(job)).content.decode()
    # The breadcrumb and the <title> name the job only; the status beside the heading is a live slot.
    assert "(queued)" not in page
    assert f'<li aria-current="page">Job {job.pk}</li>' in page
    assert 'data-live-slot="job-status"' in page
    assert "Attempts:" not in page  # no static copy of what the live panel shows

    started = timezone.now()
    set_state(job, status="running", attempts=1, started_at=started, heartbeat_at=started, worker_id="w-1")
    fragment = client.get(live_url(job)).content.decode()
    assert 'data-live-slot-source="job-status"' in fragment
    assert "job-status-running" in fragment
    assert "1 of 3" in fragment
    assert "not yet" in fragment  # not finished yet
    assert "w-1" in fragment
    assert "ago" in fragment  # the heartbeat


def test_the_job_page_shows_the_evaluation_confusion_matrix_and_subgroups(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    evaluation = real_evaluation()
    job = set_state(
        submit(model_type, owner),
        status="completed",
        progress=100.0,
        stage="Completed",
        evaluation=evaluation,
        metrics={"accuracy": evaluation["accuracy"], "accuracy_ci": evaluation["accuracy_ci"]},
    )

    response = client.get(job_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Evaluation on the test split" in html
    assert f"{evaluation['accuracy'] * 100:.1f}%" in html  # a share of cases as a percentage
    assert f"{evaluation['auroc_macro']:.3f}" in html  # AUROC stays a decimal
    assert "AUROC (macro, one-vs-rest)" in html
    assert "Brier score" in html
    # The confusion matrix: a row per true label, the diagonal (hits) marked.
    confusion = response.context["confusion"]
    assert confusion["labels"] == ["A", "B", "C"]
    assert [[cell["count"] for cell in row["cells"]] for row in confusion["rows"]] == [[3, 1, 0], [1, 2, 0], [0, 1, 2]]
    assert html.count('<td class="hit">') == 3
    # Subgroups with their sizes.
    assert "By sex" in html
    assert "By age band" in html
    assert "90+" in html
    sizes = {row["value"]: row["n"] for table in response.context["subgroups"] for row in table["rows"]}
    assert sizes == {"female": "5", "male": "5", "40-49": "4", "50-59": "4", "90+": "2"}
    assert "Single-row prediction latency" in html
    assert "Per class" in html
    assert "No per-epoch history" in html
    # Calibration: the ECE with its interval in the table, and the reliability diagram.
    assert "Expected calibration error" in html
    assert "Reliability diagram" in html
    assert response.context["calibration_chart"] is not None
    assert "brier_score_loss" in html


def test_a_failed_job_page_shows_the_error_log_without_an_evaluation(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    job = set_state(
        submit(model_type, owner),
        status="failed",
        stage="Failed",
        error_log="[2026-05-02T10:00:00] too_few_cases: Dataset 3 has 12 cases",
        evaluation={"accuracy": 0.5},  # partial: a table of what is there, no crash
    )

    response = client.get(job_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Error log" in html
    assert "too_few_cases: Dataset 3 has 12 cases" in html
    assert response.context["confusion"] is None
    assert "training/live_refresh.js" not in html


def test_the_job_page_survives_odd_values_an_external_trainer_wrote(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    job = set_state(
        submit(model_type, owner, executor=TrainingJob.Executor.EXTERNAL),
        status="running",
        history=[
            {"epoch": "one", "train_loss": "<script>", "val_loss": 10**400},
            {"epoch": 2, "train_loss": 0.4, "val_accuracy": [1, 2]},
            "not an epoch",
        ],
        metrics={"note": "<b>bold</b>", "nested": {"a": 1}, "big": 10**400},
        evaluation={"confusion_matrix": {"labels": ["A", "B"], "matrix": [[1, "x"], [10**400]]}, "subgroups": []},
    )

    response = client.get(job_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<b>bold</b>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<polyline" in html
    rows = response.context["confusion"]["rows"]
    assert [[cell["count"] for cell in row["cells"]] for row in rows] == [[1, 0], [0, 0]]


def test_the_job_page_is_read_only_and_shows_the_audit_trail(staff, model_type, owner):
    client, user = staff(roles.ML_ENGINEER)
    job = submit(model_type, owner)
    job.cancel(by=user, reason="Duplicate.")

    html = client.get(job_url(job)).content.decode()
    response = client.post(job_url(job), {"priority": "100", "_save": "Save"})

    assert 'name="_save"' not in html
    assert "audit trail" in html.lower()
    assert "Duplicate." in html
    assert "transitions-0-DELETE" not in html
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.priority == 0


def test_jobs_and_datasets_cannot_be_deleted_in_the_admin(admin_client, model_type, owner):
    job = submit(model_type, owner)
    dataset = ready_dataset(model_type, owner)

    assert admin_client.get(reverse("admin:training_trainingjob_delete", args=[job.pk])).status_code == 403
    assert admin_client.get(reverse("admin:training_datasetsnapshot_delete", args=[dataset.pk])).status_code == 403
    assert "delete_selected" not in admin_client.get(JOBS).content.decode()
    assert "delete_selected" not in admin_client.get(DATASETS).content.decode()


# --- Roles ----------------------------------------------------------------------------------------


def test_a_clinical_lead_sees_jobs_and_datasets_but_cannot_act(staff, model_type, owner):
    client, _user = staff(roles.CLINICAL_LEAD)
    queued = submit(model_type, owner)
    dataset = ready_dataset(model_type, owner)

    changelist = client.get(JOBS)
    page = client.get(job_url(queued))
    cancel = confirm_post(client, "cancel_selected", [queued], reason="No.")

    assert changelist.status_code == 200
    assert page.status_code == 200
    assert client.get(DATASETS).status_code == 200
    assert client.get(dataset_url(dataset)).status_code == 200
    assert 'name="action"' not in changelist.content.decode()
    assert "CHANGE_FORM-action" not in page.content.decode()
    assert client.get(JOB_ADD).status_code == 403
    assert client.get(DATASET_ADD).status_code == 403
    queued.refresh_from_db()
    assert queued.status == "queued"
    assert cancel.status_code == 200
    assert not TrainingJob.objects.exclude(status="queued").exists()


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.PREDICTION_CLIENT])
def test_users_without_training_roles_are_refused_every_training_page(staff, model_type, owner, role):
    client, _user = staff(role)
    job = submit(model_type, owner)
    dataset = ready_dataset(model_type, owner)

    dataset_live = reverse("admin:training_datasetsnapshot_live", args=[dataset.pk])
    pages = (JOBS, job_url(job), live_url(job), JOB_ADD, DATASETS, dataset_url(dataset), dataset_live, DATASET_ADD)
    for url in (*pages, MODEL_TYPES):
        assert client.get(url).status_code == 403, url
    response = confirm_post(client, "cancel_selected", [job], reason="x")
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == "queued"
    assert "Datasets and training" not in client.get(reverse("admin:index")).content.decode()


def test_ml_engineers_find_datasets_and_jobs_on_the_admin_index(staff):
    client, _user = staff(roles.ML_ENGINEER)

    html = client.get(reverse("admin:index")).content.decode()

    assert JOBS in html
    assert DATASETS in html
    assert MODEL_TYPES in html


def test_the_live_fragment_sends_anonymous_users_to_the_login(client, model_type, owner):
    job = submit(model_type, owner)

    response = client.get(live_url(job))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


# --- Datasets -------------------------------------------------------------------------------------


def test_the_dataset_list_shows_counts_per_split_and_a_short_hash(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    dataset = ready_dataset(model_type, owner)
    DatasetSnapshot.objects.create(model_type=model_type, created_by=owner)  # still building

    response = client.get(DATASETS)

    assert response.status_code == 200
    html = response.content.decode()
    row = re.search(rf'<tr>.*?href="{re.escape(dataset_url(dataset))}".*?</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r'<td class="field-(\w+)[^"]*">(.*?)</td>', row.group(0), re.S)
    values = dict(cells)
    assert (values["train_cases"], values["validation_cases"], values["test_cases"]) == ("7", "2", "3")
    assert values["cases"] == "12"
    assert "abababababab" in values["short_hash"]
    assert "deid-v1" in html


def test_the_dataset_list_costs_the_same_number_of_queries_for_5_and_200_datasets(staff, make_user):
    client, _user = staff(roles.ML_ENGINEER)
    model_types = [ModelType.objects.create(slug=f"t-{i}", name=f"T {i}", cohort=f"c-{i}") for i in range(3)]
    creators = [make_user(roles.ML_ENGINEER) for _ in range(3)]

    def add(count: int, offset: int) -> None:
        DatasetSnapshot.objects.bulk_create(
            DatasetSnapshot(
                model_type=model_types[(offset + i) % 3],
                created_by=creators[(offset + i) % 3],
                status="ready",
                label_counts={"train": {"A": 3}, "validation": {"A": 1}, "test": {"A": 1}},
                manifest={"train": [1, 2, 3], "validation": [4], "test": [5]},
                content_hash=f"{offset + i:064x}",
            )
            for i in range(count)
        )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(DATASETS)
        assert response.status_code == 200
        for query in captured.captured_queries:
            assert '"training_datasetsnapshot"."manifest"' not in query["sql"]
        return len(captured.captured_queries)

    add(5, 0)
    few = queries()
    add(195, 5)
    many = queries()

    assert many == few


def test_the_dataset_page_shows_counts_per_split_and_label_with_charts_and_no_raw_manifest(staff, model_type, owner):
    client, _user = staff(roles.CLINICAL_LEAD)
    dataset = ready_dataset(
        model_type,
        owner,
        manifest={
            "train": [987601, 987602, 987603, 987604, 987605, 987606, 987607],
            "validation": [987608, 987609],
            "test": [987610, 987611, 987612],
        },
    )

    response = client.get(dataset_url(dataset))

    assert response.status_code == 200
    html = response.content.decode()
    composition = response.context["composition"]
    assert [(row["label"], row["counts"], row["total"]) for row in composition["rows"]] == [
        ("J18.9", [4, 1, 2], 7),
        ("J45.909", [3, 1, 1], 5),
    ]
    assert composition["totals"] == [7, 2, 3]
    assert html.count('class="bar-chart-svg"') == 3
    assert "train: cases per label" in html
    assert response.context["manifest_sizes"] == [("train", 7), ("validation", 2), ("test", 3)]
    assert "7 ids" in html
    assert "98760" not in html  # case ids of the manifest are not dumped (ids no sequence reaches in a test run)
    assert "datasets/1-abababababab.parquet" in html
    assert "20.0\xa0KB" in html
    assert "ab" * 32 in html
    assert '<th scope="row">cohort</th><td>respiratory</td>' in html  # the filters used
    assert 'name="_save"' not in html
    assert "Clean:" in html


def test_a_failed_dataset_page_shows_the_error_and_the_scan_report_by_kind_and_case(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    dataset = DatasetSnapshot.objects.create(model_type=model_type, created_by=owner)
    dataset.fail(
        reason="The residual-identifier scan found 3 identifier(s) in 2 case(s); the dataset was not kept.",
        scan_report={
            "clean": False,
            "cases_scanned": 40,
            "strings_scanned": 300,
            "findings": [
                {"case_id": 17, "field": "note", "kind": "phone"},
                {"case_id": 17, "field": "note", "kind": "name"},
                {"case_id": 23, "field": "note", "kind": "phone"},
            ],
            "findings_total": 3,
            "findings_truncated": False,
        },
    )

    response = client.get(dataset_url(dataset))

    assert response.status_code == 200
    html = response.content.decode()
    assert "The residual-identifier scan found 3 identifier(s)" in html
    kinds = {row["kind"]: (row["count"], row["case_ids"]) for row in response.context["scan"]["by_kind"]}
    assert kinds == {"name": (1, "17"), "phone": (2, "17, 23")}
    assert "Found 3 identifiers" in html
    assert "audit trail" in html.lower()
    assert "training/live_refresh.js" not in html


def test_a_building_dataset_page_polls_its_status(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    dataset = DatasetSnapshot.objects.create(model_type=model_type, created_by=owner)
    live = reverse("admin:training_datasetsnapshot_live", args=[dataset.pk])

    page = client.get(dataset_url(dataset)).content.decode()
    fragment = client.get(live).content.decode()

    assert f'data-live-url="{live}"' in page
    assert 'data-live-state="active"' in fragment


def test_a_building_dataset_page_shows_stage_and_progress_live_and_its_final_state_without_a_reload(
    staff, model_type, owner, settings, tmp_path
):
    from tests.training.factories import approved_cohort
    from training.datasets import build_snapshot

    settings.MEDIA_ROOT = tmp_path / "media"
    ModelType.objects.filter(pk=model_type.pk).update(min_cases_to_train=10)
    approved_cohort(model_type.cohort, patients=12)
    client, _user = staff(roles.ML_ENGINEER)
    from training.datasets import create_snapshot

    dataset = create_snapshot(ModelType.objects.get(pk=model_type.pk), by=owner)
    live = reverse("admin:training_datasetsnapshot_live", args=[dataset.pk])
    page = client.get(dataset_url(dataset)).content.decode()
    assert "data-live-keep" in page  # the last fragment stays: no reload
    assert "waiting for a worker" in client.get(live).content.decode()

    dataset.heartbeat("Writing", 1234, 5000)
    fragment = client.get(live).content.decode()
    assert 'data-live-state="active"' in fragment
    assert '<td class="dataset-stage">Writing</td>' in fragment
    assert "1,234 of 5,000 (24.7%)" in fragment
    dataset.heartbeat("Selecting cases", 800, 0)
    assert "800 so far" in client.get(live).content.decode()

    ready = build_snapshot(dataset.pk)
    fragment = client.get(live).content.decode()

    assert 'data-live-state="done"' in fragment
    assert '<span class="dataset-status job-status job-status-ready">Ready</span>' in fragment
    assert '<td class="num dataset-cases">12</td>' in fragment
    assert ready.content_hash in fragment
    assert 'class="composition"' in fragment  # cases per split and label, with the charts
    assert "dataset-stage" not in fragment
    assert reverse("admin:training_datasetsnapshot_download", args=[dataset.pk]) in fragment
    assert "Train on this dataset" in fragment


def dataset_form(model_type: ModelType, **overrides: Any) -> dict[str, Any]:
    data = {
        "model_type": model_type.pk,
        "min_quality": "0.6",
        "encounter_after": "",
        "encounter_before": "",
        "validation_fraction": "0.15",
        "test_fraction": "0.2",
        "seed": "7",
        "_save": "Save",
    }
    return data | overrides


def test_the_dataset_add_form_creates_a_building_snapshot_and_enqueues_its_build(
    staff, model_type, django_capture_on_commit_callbacks
):
    client, user = staff(roles.ML_ENGINEER)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(DATASET_ADD, dataset_form(model_type, encounter_after="2026-01-01"))

    snapshot = DatasetSnapshot.objects.get()
    assert response.status_code == 302
    assert response["Location"] == dataset_url(snapshot)
    assert snapshot.status == "building"
    assert snapshot.created_by == user
    assert snapshot.seed == 7
    assert snapshot.filters["min_quality"] == 0.6
    assert snapshot.filters["encounter_after"] == "2026-01-01"
    builds = [r for r in queue().results if r.task.name == "build_dataset"]
    assert [task.args for task in builds] == [[snapshot.pk]]


def test_the_dataset_add_form_points_to_a_ready_dataset_with_the_same_content_unless_forced(
    staff, model_type, settings, tmp_path
):
    from tests.training.factories import approved_cohort
    from training.datasets import build_snapshot

    settings.MEDIA_ROOT = tmp_path / "media"
    ModelType.objects.filter(pk=model_type.pk).update(min_cases_to_train=10)
    approved_cohort(model_type.cohort, patients=12)
    client, _user = staff(roles.ML_ENGINEER)
    assert client.post(DATASET_ADD, dataset_form(model_type, min_quality="")).status_code == 302
    ready = build_snapshot(DatasetSnapshot.objects.get().pk)
    assert ready.status == "ready"

    response = client.post(DATASET_ADD, dataset_form(model_type, min_quality=""))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert f'<a href="{dataset_url(ready)}">Dataset {ready.pk}</a> is ready with this content' in errors["force"][0]
    assert f'<a href="{dataset_url(ready)}">Dataset {ready.pk}</a>' in response.content.decode()
    assert DatasetSnapshot.objects.count() == 1
    assert client.post(DATASET_ADD, dataset_form(model_type, min_quality="", seed="8")).status_code == 302
    assert client.post(DATASET_ADD, dataset_form(model_type, min_quality="", force="on")).status_code == 302
    assert DatasetSnapshot.objects.count() == 3


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"test_fraction": "0"}, "The test fraction must be greater than 0"),
        ({"validation_fraction": "0.5", "test_fraction": "0.5"}, "add up to 1"),
        ({"min_quality": "1.5"}, "less than or equal to 1"),
        ({"encounter_after": "2026-02-01", "encounter_before": "2026-01-01"}, "ends before it starts"),
    ],
)
def test_the_dataset_add_form_rejects_bad_parameters_with_a_form_error(staff, model_type, overrides, error):
    client, _user = staff(roles.ML_ENGINEER)

    response = client.post(DATASET_ADD, dataset_form(model_type, **overrides))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not DatasetSnapshot.objects.exists()


def test_the_dataset_add_form_refuses_a_day_wide_range_beside_its_fields_without_phi(staff, model_type):
    client, _user = staff(roles.ML_ENGINEER)

    response = client.post(
        DATASET_ADD, dataset_form(model_type, encounter_after="2024-05-11", encounter_before="2024-05-11")
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "a 1 January" in errors["encounter_after"][0]
    assert "a 31 December" in errors["encounter_before"][0]
    assert not DatasetSnapshot.objects.exists()


def test_the_dataset_add_form_takes_a_day_wide_range_from_a_user_who_may_see_phi(make_user, client, model_type):
    user = make_user(roles.ML_ENGINEER, is_staff=True)
    user.groups.add(Group.objects.get(name=roles.CLINICIAN))
    client.force_login(user)

    response = client.post(
        DATASET_ADD, dataset_form(model_type, encounter_after="2024-05-11", encounter_before="2024-05-11")
    )

    assert response.status_code == 302
    assert DatasetSnapshot.objects.get().filters["encounter_before"] == "2024-05-11"


def test_a_snapshot_over_a_day_wide_range_is_not_in_the_admin_without_phi(staff, model_type, owner):
    filters = {"cohort": model_type.cohort, "min_quality": 0.0, "encounter_after": "2024-05-11"}
    day = DatasetSnapshot.objects.create(model_type=model_type, created_by=owner, filters=filters)
    client, _user = staff(roles.ML_ENGINEER)

    listing = client.get(DATASETS).content.decode()
    page = client.get(dataset_url(day))

    assert dataset_url(day) not in listing
    assert page.status_code == 302  # the admin's "does not exist" redirect
    assert not DatasetSnapshot.objects.exclude(pk=day.pk).exists()


# --- Model types ----------------------------------------------------------------------------------


def test_model_types_are_read_only_for_ml_engineers(staff, model_type):
    client, _user = staff(roles.ML_ENGINEER)
    url = reverse("admin:training_modeltype_change", args=[model_type.pk])

    listing = client.get(MODEL_TYPES).content.decode()
    page = client.get(url).content.decode()
    response = client.post(url, {"slug": "renamed", "name": "x", "cohort": "x", "_save": "Save"})

    assert "Respiratory diagnosis" in listing
    assert 'name="_save"' not in page
    assert response.status_code == 403
    assert client.get(reverse("admin:training_modeltype_add")).status_code == 403
    model_type.refresh_from_db()
    assert model_type.slug == "diagnosis"


def test_a_superuser_edits_model_types_and_bad_default_hyperparameters_are_refused(admin_client, model_type):
    url = reverse("admin:training_modeltype_change", args=[model_type.pk])
    data = {
        "slug": "diagnosis",
        "name": "Respiratory diagnosis (v2)",
        "description": "",
        "cohort": "respiratory",
        "label_field": "diagnosis.code",
        "default_algorithm": "logistic_regression",
        "default_hyperparameters": json.dumps({"C": 0.5}),
        "epoch_algorithm": "sgd",
        "min_cases_to_train": "40",
        "min_quality": "0.5",
        "_save": "Save",
    }

    bad = admin_client.post(url, data | {"default_hyperparameters": json.dumps({"epochs": 5})})
    good = admin_client.post(url, data)

    assert bad.status_code == 200
    assert "is not a hyperparameter of logistic_regression" in bad.content.decode()
    assert good.status_code == 302
    model_type.refresh_from_db()
    assert model_type.name == "Respiratory diagnosis (v2)"
    assert model_type.default_hyperparameters == {"C": 0.5}


# --- Chart geometry -------------------------------------------------------------------------------


def test_history_charts_break_lines_at_missing_values_and_pin_accuracy_to_0_1():
    history = [*HISTORY[:2], {"epoch": 3, "train_loss": 0.3, "val_loss": None, "val_accuracy": None}, HISTORY[3]]

    loss, accuracy = history_charts(history)

    assert loss is not None
    assert accuracy is not None
    train, validation = loss.series
    assert len(train.segments) == 1
    assert len(validation.segments) == 2  # the missing epoch leaves a gap, not a zero
    labels = [tick.label for tick in accuracy.y_ticks]
    assert (labels[0], labels[-1]) == ("0.0", "1.0")
    assert history_charts([]) == (None, None)


def test_a_line_chart_of_one_constant_point_still_has_an_axis():
    chart = line_chart([("loss", [(1, 0.5)])], title="One epoch")

    assert not chart.empty
    assert chart.y_ticks
    assert chart.series[0].markers
    assert line_chart([("loss", [(1, None)])], title="Nothing").empty


# --- Actions that fit the state (issue 12.3) ------------------------------------------------------


def _change_form_actions(html: str) -> set[str]:
    picker = re.search(r'<select name="CHANGE_FORM-action".*?</select>', html, re.S)
    return set(re.findall(r'<option value="(\w+)"', picker.group(0))) if picker else set()


def test_a_completed_job_page_offers_no_start_cancel_or_retry_and_says_why(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    completed = set_state(submit(model_type, owner), status="completed", progress=100.0)
    html = client.get(job_url(completed)).content.decode()
    assert _change_form_actions(html) == set()
    assert "Start this job: not offered, it is completed." in html
    assert "Retry this job: not offered, it is completed, not failed." in html


def test_each_job_page_offers_only_what_applies_in_the_singular(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    queued = submit(model_type, owner)
    running = set_state(submit(model_type, owner), status="running")
    failed = set_state(submit(model_type, owner), status="failed", attempts=1)
    assert _change_form_actions(client.get(job_url(queued)).content.decode()) == {"start_selected", "cancel_selected"}
    assert _change_form_actions(client.get(job_url(running)).content.decode()) == {"cancel_selected"}
    html = client.get(job_url(failed)).content.decode()
    assert _change_form_actions(html) == {"retry_selected"}
    assert ">Retry this job</option>" in html


def test_an_action_no_longer_applying_when_posted_from_the_page_changes_nothing(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    completed = set_state(submit(model_type, owner), status="completed", progress=100.0)
    form_action = {"CHANGE_FORM-action": "cancel_selected", "_selected_action": completed.pk}
    response = client.post(job_url(completed), {**form_action, "post": "yes", "reason": "x"}, follow=True)
    assert response.status_code == 200
    assert message_texts(response) == ["Nothing was done: Cancel this job: it is completed."]
    completed.refresh_from_db()
    assert completed.status == "completed"


def test_a_confirmation_page_where_nothing_applies_says_why_and_offers_no_button(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    completed = set_state(submit(model_type, owner), status="completed", progress=100.0)
    html = action_post(client, "cancel_selected", [completed]).content.decode()
    assert "The selected training job cannot be acted on" in html
    assert "will be skipped, it is completed" in html
    assert 'name="post" value="yes"' not in html


def test_latest_metrics_and_algorithms_are_named_for_people(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    job = set_state(
        submit(model_type, owner),
        status="running",
        metrics={"f1_macro": 0.5, "accuracy_ci": [0.1, 0.2], "test_size": 1200, "val_loss": -0.00001},
    )
    fragment = client.get(live_url(job)).content.decode()
    assert "F1 (macro)" in fragment
    assert "Accuracy, 95% interval" in fragment
    assert "1,200" in fragment
    assert "f1 macro" not in fragment
    assert "-0.000" not in fragment
    listing = client.get(JOBS).content.decode()
    assert "Logistic regression" in listing  # the column and the filter
    assert ">logistic_regression<" not in listing


# --- The ML workflow from a dataset's page (issue 12.5) --------------------------------------------


def test_a_dataset_page_offers_its_download_and_a_job_on_it_to_an_ml_engineer(staff, model_type, owner):
    from cases.access_log import AccessLogEntry
    from tests.models_registry.registry.factories import ready_snapshot

    client, engineer = staff(roles.ML_ENGINEER)
    snapshot = ready_snapshot(model_type, by=owner)
    download = reverse("admin:training_datasetsnapshot_download", args=[snapshot.pk])
    train = f"{JOB_ADD}?model_type={model_type.pk}&amp;dataset={snapshot.pk}"

    html = client.get(dataset_url(snapshot)).content.decode()
    assert f'href="{download}"' in html
    assert f'href="{train}" class="dataset-train">Train on this dataset</a>' in html

    response = client.get(download)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert b"".join(response.streaming_content)[:4] == b"PAR1"
    entry = AccessLogEntry.objects.get(action=AccessLogEntry.Action.DOWNLOAD_DATASET)
    assert (entry.actor, entry.channel) == (engineer, AccessLogEntry.Channel.ADMIN)

    form = client.get(f"{JOB_ADD}?model_type={model_type.pk}&dataset={snapshot.pk}").content.decode()
    assert re.search(rf'<option value="{snapshot.pk}" selected>', form)


def test_who_may_not_download_through_the_api_gets_no_link_and_a_403(staff, model_type, owner):
    from tests.models_registry.registry.factories import ready_snapshot

    client, _lead = staff(roles.CLINICAL_LEAD)
    snapshot = ready_snapshot(model_type, by=owner)
    html = client.get(dataset_url(snapshot)).content.decode()
    assert "/download/" not in html
    assert "Train on this dataset" not in html
    assert client.get(reverse("admin:training_datasetsnapshot_download", args=[snapshot.pk])).status_code == 403


def test_a_building_dataset_has_nothing_to_download_and_says_so(staff, model_type, owner):
    client, _user = staff(roles.ML_ENGINEER)
    building = DatasetSnapshot.objects.create(model_type=model_type, created_by=owner)
    assert "/download/" not in client.get(dataset_url(building)).content.decode()
    response = client.get(reverse("admin:training_datasetsnapshot_download", args=[building.pk]), follow=True)
    assert message_texts(response) == [
        f"Nothing to download: Dataset {building.pk} is building; only a ready snapshot has a file."
    ]


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_a_job_on_a_day_wide_snapshot_is_not_in_the_admin_without_phi(staff, model_type, owner, role):
    def job_on(after: str) -> TrainingJob:
        filters = {"cohort": model_type.cohort, "min_quality": 0.0, "encounter_after": after}
        snapshot = DatasetSnapshot.objects.create(model_type=model_type, created_by=owner, filters=filters)
        return TrainingJob.objects.create(model_type=model_type, dataset=snapshot, created_by=owner)

    day, years = job_on("2024-05-11"), job_on("2024-01-01")
    client, user = staff(role)

    listing = client.get(JOBS).content.decode()
    page = client.get(job_url(day))
    user.groups.add(Group.objects.get(name=roles.CLINICIAN))
    with_phi = client.get(job_url(day))

    assert job_url(years) in listing
    assert job_url(day) not in listing
    assert page.status_code == 302  # the admin's "does not exist" redirect
    assert with_phi.status_code == 200


def test_a_line_charts_legend_grows_with_its_longest_name_and_the_plot_keeps_its_width():
    short = line_chart([("loss", [(1, 0.5), (2, 0.4)])], title="Short")
    long_name = "findings.pleuritic_chest_pain"
    long = line_chart([(long_name, [(1, 0.5), (2, 0.4)])], title="Long")
    assert short.width == 680
    assert long.right - long.left == short.right - short.left
    # The legend's text (at legend_x + 28) and "name (0.4)" at ~6.6 px a character fit in the SVG.
    assert long.legend_text_x + 6.6 * len(f"{long_name} (0.4)") <= long.width
