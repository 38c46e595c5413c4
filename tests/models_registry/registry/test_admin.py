"""The registry admin through the HTTP client: version list, actions behind confirmation, compare page, records."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.urls import reverse

from learning_engine import roles
from models_registry.models import ActivationHistory, ModelVersion, PerformanceRecord, VersionTransition
from models_registry.registry.admin import comparison_chart
from models_registry.registry.models import ArtifactRejection
from models_registry.registry.registration import register_completed_job
from tests.conftest import jwt_client
from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
from tests.training.factories import ModelTypeFactory, TrainingJobFactory
from training.models import DatasetSnapshot, TrainingJob

pytestmark = pytest.mark.django_db

VERSIONS = reverse("admin:models_registry_modelversion_changelist")
COMPARE = reverse("admin:models_registry_modelversion_compare")
HISTORY = reverse("admin:models_registry_activationhistory_changelist")
RECORDS = reverse("admin:models_registry_performancerecord_changelist")
MODEL_TYPES = reverse("admin:training_modeltype_changelist")


@pytest.fixture
def other_lead(make_user):
    return make_user(roles.CLINICAL_LEAD)


def last_activation() -> ActivationHistory:
    row = ActivationHistory.objects.order_by("created_at", "id").last()
    assert row is not None
    return row


def last_audit(version: ModelVersion) -> VersionTransition:
    row = VersionTransition.objects.filter(version=version).order_by("created_at", "id").last()
    assert row is not None
    return row


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def action_post(client, action: str, versions: list[ModelVersion], **data: Any):
    return client.post(VERSIONS, {"action": action, "index": "0", "_selected_action": [v.pk for v in versions], **data})


def confirm_post(client, action: str, versions: list[ModelVersion], **data: Any):
    payload = {"action": action, "post": "yes", "_selected_action": [v.pk for v in versions], **data}
    return client.post(VERSIONS, payload, follow=True)


def fresh(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.get(pk=version.pk)


# --- The version list --------------------------------------------------------------------------------


def test_the_version_list_shows_key_metrics_and_badges(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(
        approved=True, created_by=engineer, approved_by=other_lead, job__accuracy=0.873
    )
    version.activate(by=other_lead)
    ModelVersionFactory.create(created_by=engineer)

    response = client.get(VERSIONS)

    assert response.status_code == 200
    html = response.content.decode()
    assert "87.3%" in html
    assert 'class="version-badge version-approval-approved"' in html
    assert 'class="version-badge version-deployment-active"' in html
    assert 'class="version-badge version-approval-pending"' in html
    for action in ("approve_selected", "activate_selected", "archive_selected", "compare_selected"):
        assert f'value="{action}"' in html


def test_an_ml_engineer_sees_versions_but_not_the_lead_actions(staff, engineer):
    client, _user = staff(roles.ML_ENGINEER)
    ModelVersionFactory.create(created_by=engineer)
    html = client.get(VERSIONS).content.decode()
    assert "v1.0.0" in html
    assert 'value="compare_selected"' in html
    for action in ("approve_selected", "reject_selected", "activate_selected", "deactivate_selected"):
        assert f'value="{action}"' not in html


def test_a_clinician_cannot_open_the_registry(staff):
    client, _user = staff(roles.CLINICIAN)
    assert client.get(VERSIONS).status_code == 403


def test_a_version_page_is_view_only_with_its_records(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    response = client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html
    assert "audit trail" in html.lower()
    assert "offline" in html  # the performance record inline
    assert client.get(reverse("admin:models_registry_modelversion_add")).status_code == 403


def test_a_version_page_shows_its_calibration(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1)
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    assert {"ece", "ece_ci", "calibration", "brier_definition"} <= set(version.metrics)

    html = client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk])).content.decode()

    assert "Expected calibration error" in html
    assert "Reliability diagram" in html
    assert "Confusion matrix" in html  # the evaluation as the job's page shows it
    assert "brier_score_loss" in html
    body = jwt_client(engineer).get(f"/api/v1/model-types/diagnosis/versions/{version.version}/").json()
    assert body["key_metrics"]["ece"] == version.metrics["ece"]
    assert len(body["metrics"]["calibration"]["bins"]) == 10


# --- Actions behind a confirmation page ----------------------------------------------------------


def test_approve_selected_asks_first_and_changes_nothing(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(created_by=engineer)

    response = action_post(client, "approve_selected", [version])

    assert response.status_code == 200
    html = response.content.decode()
    assert "Approve model versions" in html
    assert 'name="post" value="yes"' in html
    assert 'name="note"' in html
    assert fresh(version).approval_status == "pending"


def test_approve_selected_approves_and_skips_the_leads_own_version(staff, engineer):
    client, lead = staff(roles.CLINICAL_LEAD)
    theirs = ModelVersionFactory.create(created_by=engineer)
    own = ModelVersionFactory.create(created_by=lead)

    response = confirm_post(client, "approve_selected", [theirs, own], note="Evaluation reviewed.")

    assert fresh(theirs).approval_status == "approved"
    assert fresh(own).approval_status == "pending"
    audit = last_audit(theirs)
    assert (audit.to_state, audit.actor, audit.reason) == ("approved", lead, "Evaluation reviewed.")
    texts = messages_of(response)
    assert texts[0] == "Approved 1 model version."
    assert texts[1].startswith("Skipped 1 model version:")
    assert "two-person rule" in texts[1]


def test_approve_selected_skips_a_version_whose_job_the_lead_completed(staff, engineer):
    client, lead = staff(roles.CLINICAL_LEAD)
    job = TrainingJob.submit(
        model_type=ModelTypeFactory.create(diagnosis=True), by=engineer, algorithm="logistic_regression"
    )
    lease = job.start(worker_id="test", by=lead)  # the lead ran another engineer's job
    job.complete(
        lease=lease,
        evaluation={"accuracy": 0.9, "test_size": 100},
        artifact="models/x.skops",
        artifact_sha256="a" * 64,
        by=lead,
    )
    register_completed_job(sender=TrainingJob, job_id=job.pk)
    version = ModelVersion.objects.get(job=job)

    page = client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk])).content.decode()
    response = confirm_post(client, "approve_selected", [version], note="Looks fine.")

    assert "you took part in making it" in page  # not offered, and the page says why
    assert fresh(version).approval_status == "pending"
    assert "two-person rule" in " ".join(messages_of(response))


def test_reject_selected_needs_a_note(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(created_by=engineer)
    response = confirm_post(client, "reject_selected", [version], note="")
    assert "This field is required." in response.content.decode()
    assert fresh(version).approval_status == "pending"
    confirm_post(client, "reject_selected", [version], note="Overfits the training cohort.")
    assert fresh(version).approval_status == "rejected"


def test_activate_selected_switches_the_active_version_with_the_reason(staff, engineer, other_lead):
    client, lead = staff(roles.CLINICAL_LEAD)
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    first.activate(by=other_lead)

    response = confirm_post(client, "activate_selected", [second], reason="Better macro-F1.")

    assert messages_of(response) == ["Activated 1 model version."]
    assert ModelVersion.objects.active().get() == second
    row = last_activation()
    assert (row.from_version, row.to_version, row.actor, row.reason) == (first, second, lead, "Better macro-F1.")


def test_activate_selected_skips_two_versions_of_one_model_type(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)

    response = confirm_post(client, "activate_selected", [first, second], reason="Both?")

    assert not ModelVersion.objects.active().exists()
    texts = messages_of(response)
    assert len(texts) == 1
    assert texts[0].startswith("Skipped 2 model versions:")


def test_activate_selected_needs_a_reason_and_skips_unapproved_versions(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    pending = ModelVersionFactory.create(created_by=engineer)
    page = confirm_post(client, "activate_selected", [pending], reason="").content.decode()
    assert "The selected model version cannot be acted on" in page  # no form, no button
    assert "will be skipped, it is pending, not approved" in page
    response = confirm_post(client, "activate_selected", [pending], reason="Try.")
    assert "only an approved version can be activated" in messages_of(response)[0]
    assert fresh(pending).deployment_status == "inactive"


def test_deactivate_and_archive_selected(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    version.activate(by=other_lead)

    archive_first = confirm_post(client, "archive_selected", [version], reason="Old.")
    assert messages_of(archive_first)[0].startswith("Skipped 1 model version:")
    confirm_post(client, "deactivate_selected", [version], reason="Drift in the ward.")
    assert fresh(version).deployment_status == "inactive"
    assert last_activation().reason == "Drift in the ward."
    confirm_post(client, "archive_selected", [version], reason="Superseded.")
    assert fresh(version).deployment_status == "archived"


def test_an_ml_engineer_cannot_run_a_lead_action_by_posting_it(staff, engineer, other_lead):
    client, _user = staff(roles.ML_ENGINEER)
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    confirm_post(client, "activate_selected", [version], reason="Sneaky.")
    assert fresh(version).deployment_status == "inactive"


# --- The compare page ----------------------------------------------------------------------------


def test_compare_selected_needs_exactly_two_versions(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(created_by=engineer)
    response = client.post(
        VERSIONS, {"action": "compare_selected", "index": "0", "_selected_action": [version.pk]}, follow=True
    )
    assert "Select exactly two versions" in messages_of(response)[0]


def test_compare_selected_opens_a_table_and_a_chart_of_the_two_versions(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1)
    chance = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, shuffle_labels=True)
    good = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    PerformanceRecord.objects.create(version=good, source="live", metrics={"accuracy": 0.8125}, test_set_size=16)

    redirect = client.post(
        VERSIONS, {"action": "compare_selected", "index": "0", "_selected_action": [good.pk, chance.pk]}
    )
    assert redirect.status_code == 302
    assert redirect["Location"] == f"{COMPARE}?a={chance.pk}&b={good.pk}"

    response = client.get(redirect["Location"])

    assert response.status_code == 200
    html = response.content.decode()
    assert f"<strong>{good.version}</strong> is better" in html
    assert "McNemar" in html
    assert "<svg" in html
    assert "<script" not in html.split('id="content-main"')[1]
    assert "81.2% (16 predictions)" in html  # 0.8125: accuracy as a percentage, one decimal
    assert html.count("<rect") >= 12  # two bars per charted metric
    assert "exact, from the discordant pairs" in html
    assert "<th>F1 (macro)</th>" in html  # the same metric names as the job's evaluation
    assert "<th>f1_macro</th>" not in html
    assert re.search(r"<td class=\"num\">\d+\.\d%</td>", html)  # the table's accuracy and F1 as percentages
    assert " points" in html  # their differences in percentage points


def test_the_compare_page_says_when_the_evidence_is_insufficient(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1)
    first = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 1.0})
    second = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5})

    html = client.get(f"{COMPARE}?a={first.pk}&b={second.pk}").content.decode()

    assert "Not enough evidence" in html
    assert "not a sign that they are equivalent" in html
    assert "No significant difference" not in html


def test_the_compare_page_reports_an_error_instead_of_failing(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    first = ModelVersionFactory.create(created_by=engineer)  # fake artifact path: cannot be loaded
    second = ModelVersionFactory.create(created_by=engineer)
    response = client.get(f"{COMPARE}?a={first.pk}&b={second.pk}", follow=True)
    assert response.redirect_chain[-1][0] == VERSIONS
    assert "cannot be compared" in messages_of(response)[0]
    for query in ("", "?a=x&b=1", f"?a={first.pk}&b=999999", f"?a={first.pk}&b={first.pk}"):
        assert client.get(COMPARE + query).status_code == 302, query


def test_the_compare_page_needs_the_view_permission(staff):
    client, _user = staff(roles.CLINICIAN)
    assert client.get(f"{COMPARE}?a=1&b=2").status_code == 403


def test_the_comparison_chart_scales_values_to_the_plot():
    chart = comparison_chart([("accuracy", 0.5, 1.0), ("f1_macro", None, 0.25)], names=("v1.0.0", "v1.1.0"))
    plot = chart.baseline - chart.top
    first, second = chart.groups
    assert [bar.height for bar in first.bars] == [round(plot * 0.5, 2), round(plot, 2)]
    assert second.bars[0].height == 0.0
    assert second.bars[1].title == "v1.1.0 f1_macro: 0.250"


# --- Read-only records, model types and the index ---------------------------------------------


def test_the_activation_history_is_read_only(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    version.activate(by=other_lead, reason="Go live.")
    row = ActivationHistory.objects.get()

    assert "Go live." in client.get(HISTORY).content.decode()
    change_url = reverse("admin:models_registry_activationhistory_change", args=[row.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    client.post(change_url, {"reason": "Rewritten."})
    assert ActivationHistory.objects.get().reason == "Go live."
    assert client.get(reverse("admin:models_registry_activationhistory_add")).status_code == 403
    assert client.get(reverse("admin:models_registry_activationhistory_delete", args=[row.pk])).status_code == 403


def test_performance_records_are_read_only(staff, engineer):
    client, _user = staff(roles.ML_ENGINEER)
    version = ModelVersionFactory.create(created_by=engineer, job__accuracy=0.912)
    record = PerformanceRecord.objects.get(version=version)
    assert "91.2%" in client.get(RECORDS).content.decode()
    assert client.get(reverse("admin:models_registry_performancerecord_add")).status_code == 403
    assert client.get(reverse("admin:models_registry_performancerecord_delete", args=[record.pk])).status_code == 403


def test_model_types_show_their_active_version(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    ModelTypeFactory.create(slug="dormant", cohort="cardiology")
    version.activate(by=other_lead)
    html = client.get(MODEL_TYPES).content.decode()
    assert "column-active_version" in html
    assert '<td class="field-active_version">v1.0.0</td>' in html


def test_the_admin_index_shows_each_model_types_active_version_and_live_accuracy(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=other_lead)
    version.activate(by=other_lead)
    ModelTypeFactory.create(slug="dormant", cohort="cardiology")
    PerformanceRecord.objects.create(version=version, source="live", metrics={"accuracy": 0.6}, test_set_size=10)
    PerformanceRecord.objects.create(version=version, source="live", metrics={"accuracy": 0.75}, test_set_size=20)

    html = client.get(reverse("admin:index")).content.decode()

    assert "Active models" in html
    block = html.split("app-registry-overview")[1].split("</table>")[0]
    assert "diagnosis" in block
    assert "v1.0.0" in block
    assert "0.750 (20)" in block
    assert "dormant" in block
    assert "none" in block


def test_the_index_block_is_hidden_from_those_who_cannot_view_versions(staff):
    client, _user = staff(roles.CLINICIAN)
    html = client.get(reverse("admin:index")).content.decode()
    assert "Active models" not in html


def _change_form_actions(html: str) -> dict[str, str]:
    picker = re.search(r'<select name="CHANGE_FORM-action".*?</select>', html, re.S)
    return dict(re.findall(r'<option value="(\w+)">([^<]*)</option>', picker.group(0))) if picker else {}


def test_a_version_page_offers_its_actions_in_the_singular_and_only_those_that_apply(staff, engineer, other_lead):
    client, _lead = staff(roles.CLINICAL_LEAD)
    pending = ModelVersionFactory.create(created_by=engineer)
    html = client.get(reverse("admin:models_registry_modelversion_change", args=[pending.pk])).content.decode()
    assert _change_form_actions(html) == {
        "approve_selected": "Approve this version",
        "reject_selected": "Reject this version",
        "archive_selected": "Archive this version",
    }
    pending.approve(by=other_lead)
    html = client.get(reverse("admin:models_registry_modelversion_change", args=[pending.pk])).content.decode()
    assert set(_change_form_actions(html)) == {"activate_selected", "archive_selected"}
    assert "Approve this version: not offered, it is already approved." in html


def test_the_confirmation_page_of_one_version_is_titled_in_the_singular(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(created_by=engineer)
    url = reverse("admin:models_registry_modelversion_change", args=[version.pk])
    html = client.post(url, {"CHANGE_FORM-action": "approve_selected", "_selected_action": version.pk}).content.decode()
    assert "<h1>Approve this version</h1>" in html


def test_a_lead_who_made_the_version_is_not_offered_approve_and_is_told_why(staff):
    client, lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(created_by=lead)
    html = client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk])).content.decode()
    assert "approve_selected" not in _change_form_actions(html)
    assert "Approve this version: not offered, you took part in making it" in html


def test_a_version_page_is_headed_with_its_model_type_and_shows_the_whole_evaluation(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1)
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    other = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5})

    html = client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk])).content.decode()

    assert (
        f"<h2>{version.model_type.name} ({version.model_type.slug}) {version.version}: Logistic regression</h2>" in html
    )
    assert "Confusion matrix" in html
    assert 'class="per-class"' in html
    assert "subgroup-sex" in html
    assert "Reliability diagram" in html
    # "Compare with..." the other versions of the model type, on the comparison page.
    assert f'action="{COMPARE}"' in html
    assert f'<input type="hidden" name="a" value="{version.pk}">' in html
    assert f'<option value="{other.pk}">{other.version}' in html


def test_a_performance_record_page_names_its_metrics_like_every_other_page(staff, engineer):
    client, _lead = staff(roles.CLINICAL_LEAD)
    version = ModelVersionFactory.create(created_by=engineer)
    record = version.performance.get()
    html = client.get(reverse("admin:models_registry_performancerecord_change", args=[record.pk])).content.decode()
    assert "<th>Accuracy</th>" in html
    assert '"f1_macro"' not in html  # no raw JSON


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_a_version_on_a_day_wide_snapshot_is_not_in_the_admin_without_phi(staff, engineer, role):
    shown, hidden = ModelVersionFactory.create(created_by=engineer), ModelVersionFactory.create(created_by=engineer)
    filters = {"cohort": hidden.model_type.cohort, "min_quality": 0.0, "encounter_after": "2024-05-11"}
    day = DatasetSnapshot.objects.create(model_type=hidden.model_type, created_by=engineer, filters=filters)
    ModelVersion.objects.filter(pk=hidden.pk).update(dataset=day)
    record = PerformanceRecord.objects.create(version=hidden, source="live", metrics={"accuracy": 0.5})
    page_of = reverse("admin:models_registry_modelversion_change", args=[hidden.pk])
    record_page = reverse("admin:models_registry_performancerecord_change", args=[record.pk])
    client, user = staff(role)

    listing = client.get(VERSIONS).content.decode()
    records = client.get(RECORDS).content.decode()
    statuses = [client.get(page_of).status_code, client.get(record_page).status_code]
    compare = client.get(f"{COMPARE}?a={shown.pk}&b={hidden.pk}", follow=True)
    choices = client.get(reverse("admin:models_registry_modelversion_change", args=[shown.pk])).content.decode()
    user.groups.add(Group.objects.get(name=roles.CLINICIAN))
    with_phi = client.get(page_of)

    assert reverse("admin:models_registry_modelversion_change", args=[shown.pk]) in listing
    assert page_of not in listing
    assert record_page not in records
    assert statuses == [302, 302]  # the admin's "does not exist" redirect
    assert f'value="{hidden.pk}"' not in choices  # nor offered under "Compare with..."
    assert "One of the versions does not exist." in messages_of(compare)
    assert with_phi.status_code == 200


def test_a_version_page_shows_the_measured_latency_beside_the_approval(staff, engineer, settings):
    settings.ARTIFACT_MAX_PREDICT_MS = 250
    measured = ModelVersionFactory.create(created_by=engineer)
    unmeasured = ModelVersionFactory.create(created_by=engineer)
    record = measured.performance.get(source="offline")
    record.metrics = {**record.metrics, "latency_ms": {"median": 3.25, "p95": 7.5, "calls": 200}}
    record.save()
    client, _lead = staff(roles.CLINICAL_LEAD)

    page = client.get(reverse("admin:models_registry_modelversion_change", args=[measured.pk])).content.decode()
    other = client.get(reverse("admin:models_registry_modelversion_change", args=[unmeasured.pk])).content.decode()

    assert "median 3.2 ms, p95 7.5 ms (200 calls); uploads above 250 ms are refused" in page
    assert "single-row prediction latency" in page.lower()
    assert "not measured" in other


def test_a_rejection_of_a_job_on_a_day_wide_snapshot_is_not_in_the_admin_without_phi(staff, engineer):
    job = TrainingJobFactory.create(
        with_artifact=True, model_type=ModelTypeFactory.create(diagnosis=True), created_by=engineer
    )
    filters = {"cohort": job.model_type.cohort, "min_quality": 0.0, "encounter_after": "2024-05-11"}
    day = DatasetSnapshot.objects.create(model_type=job.model_type, created_by=engineer, filters=filters)
    TrainingJob.objects.filter(pk=job.pk).update(dataset=day)
    rejection = ArtifactRejection.objects.create(job=job, sha256="b" * 64, code="artifact_unusable", purpose="upload")
    page_of = reverse("admin:models_registry_artifactrejection_change", args=[rejection.pk])
    client, user = staff(roles.ML_ENGINEER)

    listing = client.get(reverse("admin:models_registry_artifactrejection_changelist")).content.decode()
    page = client.get(page_of)
    user.groups.add(Group.objects.get(name=roles.CLINICIAN))

    assert page_of not in listing
    assert page.status_code == 302
    assert client.get(page_of).status_code == 200
