"""Learning cycles in the admin (list, page, timeline, cancel) and the read-only API, with who may see them."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from learning.models import LearningCycle
from learning_engine import roles
from tests.conftest import jwt_client

Status = LearningCycle.Status
ENVELOPE = {
    "passed": False,
    "failed": ["calibration"],
    "criteria": [
        {"name": "non_inferiority", "figure": -0.01, "bound": -0.05, "passed": True, "detail": "bound"},
        {"name": "calibration", "figure": 0.31, "bound": 0.1, "passed": False, "detail": "ECE 0.31"},
    ],
}


@pytest.fixture
def cycle(world) -> LearningCycle:
    made = LearningCycle.objects.create(
        model_type=world.model_type,
        policy=world.policy(),
        trigger=LearningCycle.Trigger.DRIFT,
        trigger_detail={"input": "findings.spo2", "psi": 0.4},
        status=Status.REJECTED,
        champion=world.champion,
        envelope=ENVELOPE,
        envelope_passed=False,
        outcome="v1.1.0 rejected by the envelope: calibration.",
    )
    made.transitions.create(from_state="evaluating", to_state="rejected", reason="Outside the envelope: calibration.")
    return made


def login(client, make_user, role: str | None) -> Any:
    user = make_user(role, is_staff=True)
    client.force_login(user)
    return user


# --- API -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_staff_read_the_cycles_and_one_cycles_envelope_and_steps(world, cycle, make_user, role):
    client = jwt_client(make_user(role))
    base = f"/api/v1/model-types/{world.model_type.slug}/learning-cycles/"
    listed = client.get(base)
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [cycle.pk]
    detail = client.get(f"{base}{cycle.pk}/").json()
    assert detail["envelope"]["failed"] == ["calibration"]
    assert detail["steps"][0]["to_state"] == "rejected"
    assert detail["policy"]["version"] == cycle.policy.version
    assert detail["policy"]["retry_after_hours"] == 24
    assert detail["champion"] == world.champion.version


@pytest.mark.parametrize(
    ("role", "status"),
    [("anonymous", 401), (roles.CLINICIAN, 403), (roles.PREDICTION_CLIENT, 403), (roles.PRIVACY_OFFICER, 403)],
)
def test_other_roles_are_refused_the_cycles(world, cycle, make_user, role, status):
    client = jwt_client(None if role == "anonymous" else make_user(role))
    base = f"/api/v1/model-types/{world.model_type.slug}/learning-cycles/"
    for url in (base, f"{base}{cycle.pk}/"):
        response = client.get(url)
        assert response.status_code == status
        assert "code" in response.json()


def test_an_unknown_model_type_or_another_types_cycle_is_404(world, cycle, make_user):
    from tests.training.factories import ModelTypeFactory

    client = jwt_client(make_user(roles.ML_ENGINEER))
    assert client.get("/api/v1/model-types/nope/learning-cycles/").status_code == 404
    other = ModelTypeFactory.create()
    assert client.get(f"/api/v1/model-types/{other.slug}/learning-cycles/{cycle.pk}/").status_code == 404
    assert client.post(f"/api/v1/model-types/{world.model_type.slug}/learning-cycles/", {}).status_code == 405


# --- Admin -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_staff_see_the_list_the_page_with_its_envelope_and_the_timeline(world, cycle, client, make_user, role):
    login(client, make_user, role)
    assert client.get(reverse("admin:learning_learningcycle_changelist")).status_code == 200
    page = client.get(reverse("admin:learning_learningcycle_change", args=[cycle.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "calibration" in html
    assert "FAIL" in html
    assert "0.3100" in html
    timeline = client.get(reverse("admin:learning_learningcycle_timeline", args=[world.model_type.slug]))
    assert timeline.status_code == 200
    text = timeline.content.decode()
    assert f"Cycle {cycle.pk}" in text
    assert cycle.outcome in text
    assert "evaluating &rarr; rejected" in text


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.PRIVACY_OFFICER, roles.PREDICTION_CLIENT, None])
def test_other_roles_see_no_cycle_page(world, cycle, client, make_user, role):
    login(client, make_user, role)
    for url in (
        reverse("admin:learning_learningcycle_changelist"),
        reverse("admin:learning_learningcycle_change", args=[cycle.pk]),
        reverse("admin:learning_learningcycle_timeline", args=[world.model_type.slug]),
    ):
        assert client.get(url).status_code == 403, url


def test_the_timeline_of_an_unknown_model_type_is_404(world, client, make_user):
    login(client, make_user, roles.ML_ENGINEER)
    assert client.get(reverse("admin:learning_learningcycle_timeline", args=["nope"])).status_code == 404


def test_a_clinical_lead_cancels_an_open_cycle_after_confirming_with_a_reason(world, client, make_user):
    lead = login(client, make_user, roles.CLINICAL_LEAD)
    cycle = LearningCycle.objects.create(
        model_type=world.model_type, policy=world.policy(), trigger="manual", status=Status.TRAINING
    )
    url = reverse("admin:learning_learningcycle_changelist")
    form = {"action": "cancel_selected", "_selected_action": [cycle.pk]}
    confirm = client.post(url, form)
    assert confirm.status_code == 200
    assert "Cancel learning cycles" in confirm.content.decode()
    assert client.post(url, {**form, "post": "yes", "reason": ""}).status_code == 200  # the reason is required
    cycle.refresh_from_db()
    assert cycle.status == Status.TRAINING
    client.post(url, {**form, "post": "yes", "reason": "Data issue found."})
    cycle.refresh_from_db()
    assert cycle.status == Status.CANCELLED
    step = cycle.transitions.get()
    assert (step.actor, step.reason) == (lead, "Data issue found.")


def test_an_ml_engineer_cannot_cancel_a_cycle(world, client, make_user):
    login(client, make_user, roles.ML_ENGINEER)
    cycle = LearningCycle.objects.create(
        model_type=world.model_type, policy=world.policy(), trigger="manual", status=Status.TRAINING
    )
    url = reverse("admin:learning_learningcycle_changelist")
    client.post(url, {"action": "cancel_selected", "_selected_action": [cycle.pk], "post": "yes", "reason": "x"})
    cycle.refresh_from_db()
    assert cycle.status == Status.TRAINING


def test_the_cycle_list_shows_a_notice_for_each_proposal(world, client, make_user):
    login(client, make_user, roles.CLINICAL_LEAD)
    proposed = LearningCycle.objects.create(
        model_type=world.model_type,
        policy=world.policy(),
        trigger="manual",
        status=Status.PROPOSED,
        champion=world.champion,
        candidate=world.champion,
    )
    response = client.get(reverse("admin:learning_learningcycle_changelist"))
    notices = [str(message) for message in response.context["messages"]]
    assert any(f"Learning cycle {proposed.pk} proposes to promote" in notice for notice in notices)


def test_the_cycle_page_reads_counts_as_whole_numbers_and_the_trigger_as_figures(world, client, make_user):
    made = LearningCycle.objects.create(
        model_type=world.model_type,
        policy=world.policy(),
        trigger=LearningCycle.Trigger.NEW_CASES,
        trigger_detail={"new_cases": 412.0, "threshold": 200, "since_dataset": {"id": 7}},
        status=Status.REJECTED,
        champion=world.champion,
        envelope={"passed": True, "criteria": [{"name": "min_cases", "figure": 150.0, "bound": 100.0, "passed": True}]},
        envelope_passed=True,
    )
    login(client, make_user, roles.CLINICAL_LEAD)
    html = client.get(reverse("admin:learning_learningcycle_change", args=[made.pk])).content.decode()
    assert "<td>min_cases</td><td>150</td><td>100</td><td>pass</td>" in html
    assert "150.0000" not in html
    assert "<tr><td>new cases</td><td>412</td></tr>" in html
    assert "<tr><td>threshold</td><td>200</td></tr>" in html
    assert "{&quot;new_cases&quot;" not in html  # not the raw JSON
    assert '{"new_cases"' not in html


def test_the_cycle_page_names_its_ab_test_as_such(world, cycle, client, make_user):
    login(client, make_user, roles.CLINICAL_LEAD)
    html = client.get(reverse("admin:learning_learningcycle_change", args=[cycle.pk])).content.decode()
    assert "A/B test:" in html
    assert "Ab test" not in html
