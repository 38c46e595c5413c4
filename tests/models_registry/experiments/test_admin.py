"""The A/B test admin through the HTTP client: start form, the test's page, stop and conclude actions."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from learning_engine import roles
from models_registry.models import ABTest, ABTestTransition, ModelVersion
from tests.models_registry.experiments.factories import log_arm

pytestmark = pytest.mark.django_db

TESTS = reverse("admin:models_registry_abtest_changelist")
ADD = reverse("admin:models_registry_abtest_add")


def change_url(test: ABTest) -> str:
    return reverse("admin:models_registry_abtest_change", args=[test.pk])


def shown_decisions(html: str) -> dict[str, str]:
    """The decisions the confirmation page carries in its hidden field."""
    match = re.search(r'name="decisions" value="([^"]*)"', html)
    assert match is not None
    return json.loads(unescape(match.group(1)))


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def start_form(pair, **changes: Any) -> dict[str, Any]:
    a, b = pair
    return {
        "model_type": a.model_type_id,
        "version_a": a.pk,
        "version_b": b.pk,
        "mode": "split",
        "traffic_split": "0.5",
        "duration_hours": "24",
        "min_labelled_per_arm": "100",
        "significance_level": "0.05",
        **changes,
    }


def test_an_engineer_starts_a_test_from_the_form(staff, pair):
    client, user = staff(roles.ML_ENGINEER)
    page = client.get(ADD)
    assert page.status_code == 200
    assert "Start the test" in page.content.decode()

    response = client.post(ADD, start_form(pair), follow=True)

    test = ABTest.objects.get()
    assert (test.status, test.created_by, test.duration_hours) == ("running", user, 24)
    assert response.redirect_chain[-1][0] == change_url(test)
    assert any("Started" in m for m in messages_of(response))


def test_a_bad_setup_shows_the_reason_and_starts_nothing(staff, pair):
    client, _user = staff(roles.ML_ENGINEER)
    a, _b = pair
    response = client.post(ADD, start_form(pair, version_b=a.pk))
    assert response.status_code == 200
    assert "against itself" in response.content.decode()
    assert not ABTest.objects.exists()


def test_a_second_running_test_is_refused_on_the_form(staff, pair, running):
    client, _user = staff(roles.ML_ENGINEER)
    a, b = pair
    response = client.post(ADD, start_form(pair, version_a=b.pk, version_b=a.pk))
    assert "already has a running A/B test" in response.content.decode()
    assert ABTest.objects.count() == 1


@pytest.mark.parametrize("role", [roles.CLINICAL_LEAD, roles.CLINICIAN, roles.PREDICTION_CLIENT, None])
def test_only_engineers_may_start_a_test(staff, pair, role):
    client, _user = staff(role)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, start_form(pair)).status_code == 403
    assert not ABTest.objects.exists()


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.PREDICTION_CLIENT, None])
def test_other_roles_do_not_see_tests(staff, running, role):
    client, _user = staff(role)
    assert client.get(TESTS).status_code == 403
    assert client.get(change_url(running)).status_code == 403


def test_the_test_page_shows_figures_intervals_srm_decision_and_chart(staff, running, engineer):
    log_arm(running, "a", predicted=300, labelled=300, correct=180, by=engineer)
    log_arm(running, "b", predicted=300, labelled=300, correct=270, by=engineer)
    client, _user = staff(roles.CLINICAL_LEAD)

    html = client.get(change_url(running)).content.decode()

    assert "Current decision: <strong>Ship B: the candidate is more accurate</strong>" in html
    assert "90.0%" in html  # B's accuracy, as a percentage
    assert "60.0%" in html
    assert " to " in html  # the intervals
    assert "sample ratio check" in html
    assert "consistent with the split" in html
    assert "<svg" in html
    assert "Cumulative accuracy per arm" in html
    assert "A v1.0.0" in html
    assert "B v1.1.0" in html
    assert 'value="conclude_selected"' in html


def test_the_test_page_says_when_the_split_is_broken(staff, running, engineer):
    log_arm(running, "a", predicted=900, by=engineer)
    log_arm(running, "b", predicted=500, by=engineer)
    client, _user = staff(roles.ML_ENGINEER)
    html = client.get(change_url(running)).content.decode()
    assert "the test is invalid" in html
    assert "Current decision: <strong>Invalid: the split of subjects is broken</strong>" in html


def test_the_list_shows_the_actions_of_the_role(staff, running):
    client, _user = staff(roles.ML_ENGINEER)
    html = client.get(TESTS).content.decode()
    assert 'value="stop_selected"' in html
    assert 'value="conclude_selected"' not in html
    client, _user = staff(roles.CLINICAL_LEAD)
    html = client.get(TESTS).content.decode()
    assert 'value="stop_selected"' in html
    assert 'value="conclude_selected"' in html


def test_stop_asks_for_confirmation_then_stops_with_the_reason(staff, running):
    client, user = staff(roles.ML_ENGINEER)
    selection = {"action": "stop_selected", "_selected_action": [running.pk]}

    page = client.post(TESTS, {**selection, "index": "0"})
    assert page.status_code == 200
    assert "Stop A/B tests" in page.content.decode()
    assert ABTest.objects.get(pk=running.pk).status == "running"

    response = client.post(TESTS, {**selection, "post": "yes", "reason": "Set up wrongly."}, follow=True)

    stored = ABTest.objects.get(pk=running.pk)
    assert (stored.status, stored.reason, stored.concluded_by) == ("stopped", "Set up wrongly.", user)
    assert any("Stopped 1" in m for m in messages_of(response))
    audit = ABTestTransition.objects.filter(test=running).order_by("id").last()
    assert audit is not None
    assert (audit.to_state, audit.actor) == ("stopped", user)


def test_conclude_shows_the_current_decision_and_promotes_on_ship_b(staff, running, engineer, pair):
    _a, b = pair
    log_arm(running, "a", predicted=300, labelled=300, correct=180, by=engineer)
    log_arm(running, "b", predicted=300, labelled=300, correct=270, by=engineer)
    client, user = staff(roles.CLINICAL_LEAD)
    selection = {"action": "conclude_selected", "_selected_action": [running.pk]}

    page = client.post(TESTS, {**selection, "index": "0"})
    html = page.content.decode()
    assert "current decision: Ship B: the candidate is more accurate" in html
    shown = shown_decisions(html)
    assert shown == {str(running.pk): "ship_b"}

    response = client.post(
        TESTS, {**selection, "post": "yes", "reason": "Clear win.", "decisions": json.dumps(shown)}, follow=True
    )

    stored = ABTest.objects.get(pk=running.pk)
    assert (stored.status, stored.decision, stored.promoted, stored.concluded_by) == (
        "concluded",
        "ship_b",
        True,
        user,
    )
    b.refresh_from_db()
    assert b.deployment_status == "active"
    assert any("Concluded 1" in m for m in messages_of(response))


def test_a_decision_that_changed_since_the_confirmation_page_concludes_nothing(staff, running, engineer, pair):
    a, b = pair
    client, _user = staff(roles.CLINICAL_LEAD)
    selection = {"action": "conclude_selected", "_selected_action": [running.pk]}
    shown = shown_decisions(client.post(TESTS, {**selection, "index": "0"}).content.decode())
    assert shown == {str(running.pk): "hold"}  # no feedback yet: the lead means "keep A"
    # Feedback arrives before the confirmed post: the decision becomes ship_b.
    log_arm(running, "a", predicted=300, labelled=300, correct=180, by=engineer)
    log_arm(running, "b", predicted=300, labelled=300, correct=270, by=engineer)

    response = client.post(
        TESTS, {**selection, "post": "yes", "reason": "Keep A.", "decisions": json.dumps(shown)}, follow=True
    )

    assert any("Skipped 1" in m and "decision" in m for m in messages_of(response))
    assert ABTest.objects.get(pk=running.pk).status == "running"
    assert ModelVersion.objects.get(pk=b.pk).deployment_status == "inactive"
    assert ModelVersion.objects.get(pk=a.pk).deployment_status == "active"


def test_a_conclusion_posted_without_the_shown_decisions_is_refused(staff, running):
    client, _user = staff(roles.CLINICAL_LEAD)
    payload = {"action": "conclude_selected", "post": "yes", "reason": "Forged.", "_selected_action": [running.pk]}
    response = client.post(TESTS, payload)
    assert "out of date" in response.content.decode()
    assert ABTest.objects.get(pk=running.pk).status == "running"


def test_ending_an_ended_test_is_skipped_with_the_reason(staff, running, lead):
    running.stop(by=lead, reason="Earlier.")
    client, _user = staff(roles.CLINICAL_LEAD)
    payload = {
        "action": "conclude_selected",
        "post": "yes",
        "reason": "Late.",
        "_selected_action": [running.pk],
        "decisions": "{}",
    }
    response = client.post(TESTS, payload, follow=True)
    assert any("Skipped 1" in m for m in messages_of(response))
    assert ABTest.objects.get(pk=running.pk).status == "stopped"


def test_an_engineer_cannot_run_the_conclude_action(staff, running):
    client, _user = staff(roles.ML_ENGINEER)
    payload = {"action": "conclude_selected", "post": "yes", "reason": "Mine.", "_selected_action": [running.pk]}
    client.post(TESTS, payload)
    assert ABTest.objects.get(pk=running.pk).status == "running"


def test_a_concluded_test_shows_its_final_state_and_conclusion_not_live_figures(staff, running, engineer, lead):
    log_arm(running, "a", predicted=300, labelled=300, correct=180, by=engineer)
    log_arm(running, "b", predicted=300, labelled=300, correct=270, by=engineer)
    running.conclude(by=lead, reason="Clear win.")
    client, _user = staff(roles.CLINICAL_LEAD)

    html = client.get(change_url(running)).content.decode()

    assert "Final figures (when the test ended)" in html
    assert "decision: <strong>Ship B: the candidate is more accurate</strong>" in html
    assert "was promoted and became the active version" in html
    assert "Live figures" not in html
    assert "Current decision" not in html
    assert "(planned)" not in html  # no future "ends" for a test that is over
    assert "ended " in html
    assert 'value="conclude_selected"' not in html  # only actions that apply to a test that is over
    assert 'value="stop_selected"' not in html


def test_a_stopped_test_says_nothing_was_promoted(staff, running, engineer):
    running.stop(by=engineer, reason="Set up wrongly.")
    client, _user = staff(roles.ML_ENGINEER)
    html = client.get(change_url(running)).content.decode()
    assert "Stopped: nothing was promoted" in html
    assert "Live figures" not in html
