"""The A/B test API: roles, set-up errors (400), conflicts (409), live figures, conclusion, comparison."""

from __future__ import annotations

from typing import Any

import pytest

from learning_engine import roles
from models_registry.models import ABTest, ABTestTransition, ActivationHistory
from tests.conftest import ROLE_NAMES, jwt_client
from tests.models_registry.experiments.factories import log_arm, start_test, version_pair
from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
from tests.training.factories import ModelTypeFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/model-types/diagnosis/ab-tests/"
SPEC = {"model_version_a": "v1.0.0", "model_version_b": "v1.1.0", "traffic_split": 0.5, "duration_hours": 168}
ENGINEERS = {roles.ML_ENGINEER}
LEADS = {roles.CLINICAL_LEAD}
VIEWERS = ENGINEERS | LEADS


def state() -> tuple[int, int, int]:
    return ABTest.objects.count(), ABTestTransition.objects.count(), ActivationHistory.objects.count()


# --- Permissions -------------------------------------------------------------------------------------

# (method, path, body, roles allowed); {id} is the running test's id.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("get", BASE, None, VIEWERS),
    ("get", BASE + "{id}/", None, VIEWERS),
    ("post", BASE, {**SPEC, "model_version_a": "v1.1.0", "model_version_b": "v1.0.0"}, ENGINEERS),
    ("post", BASE + "{id}/stop/", {"reason": "Stop."}, VIEWERS),
    ("post", BASE + "{id}/conclude/", {"reason": "Done."}, LEADS),
]


@pytest.mark.parametrize("role", ROLE_NAMES)
@pytest.mark.parametrize(("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_each_endpoint_admits_exactly_its_roles(api_client_for, running, role, method, path, body, allowed):
    client = api_client_for(role)
    url = path.format(id=running.pk)
    before = state()

    response = getattr(client, method)(url, body, format="json") if body is not None else client.get(url)

    assert response.status_code < 500
    if role in allowed:
        assert response.status_code not in (401, 403), response.json()
    else:
        assert response.status_code == (401 if role == "anonymous" else 403)
        assert response.json()["code"] in ("not_authenticated", "permission_denied")
        assert state() == before


def test_an_engineer_cannot_conclude_and_a_lead_cannot_set_up(running, engineer, lead):
    assert jwt_client(engineer).post(BASE + f"{running.pk}/conclude/", {"reason": "x"}).status_code == 403
    running.stop(by=lead, reason="Make room.")
    assert jwt_client(lead).post(BASE, SPEC, format="json").status_code == 403
    assert ABTest.objects.running().count() == 0


def test_an_unknown_model_type_is_404_for_a_viewer_and_403_for_others(engineer, make_user):
    assert jwt_client(engineer).get("/api/v1/model-types/nope/ab-tests/").status_code == 404
    clinician = jwt_client(make_user(roles.CLINICIAN))
    assert clinician.get("/api/v1/model-types/nope/ab-tests/").status_code == 403


# --- Create ------------------------------------------------------------------------------------------


def test_the_specification_payload_starts_a_running_test(pair, engineer):
    a, b = pair
    response = jwt_client(engineer).post(BASE, SPEC, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["model_version_a"], body["model_version_b"], body["traffic_split"]) == ("v1.0.0", "v1.1.0", 0.5)
    assert (body["status"], body["mode"], body["duration_hours"]) == ("running", "split", 168)
    assert (body["min_labelled_per_arm"], body["significance_level"]) == (100, 0.05)
    assert body["created_by"] == engineer.username
    assert body["figures"]["decision"] == "hold"
    assert [t["to_state"] for t in body["transitions"]] == ["running"]
    test = ABTest.objects.get(pk=body["id"])
    assert (test.version_a, test.version_b) == (a, b)


def test_the_optional_fields_are_taken(pair, engineer):
    body = {**SPEC, "mode": "shadow", "min_labelled_per_arm": 250, "significance_level": 0.01}
    response = jwt_client(engineer).post(BASE, body, format="json")
    assert response.status_code == 201, response.json()
    test = ABTest.objects.get()
    assert (test.mode, test.min_labelled_per_arm, test.significance_level) == ("shadow", 250, 0.01)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"traffic_split": 1.5}, "invalid"),
        ({"traffic_split": -0.2}, "invalid"),
        ({"traffic_split": "half"}, "invalid"),
        ({"traffic_split": 0.0}, "invalid_split"),
        ({"duration_hours": 0}, "invalid"),
        ({"mode": "bandit"}, "invalid"),
        ({"significance_level": 0}, "invalid"),
        ({"significance_level": 0.9}, "invalid"),
        ({"min_labelled_per_arm": 0}, "invalid"),
        ({"model_version_b": "v9.9.9"}, "unknown_version"),
        ({"model_version_a": "v9.9.9"}, "unknown_version"),
        ({"model_version_b": "v1.0.0"}, "same_version"),
        ({"model_version_a": None}, "invalid"),
    ],
)
def test_a_bad_setup_is_400_with_a_code_and_creates_nothing(pair, engineer, changes, code):
    body = {**SPEC, **changes}
    response = jwt_client(engineer).post(BASE, body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert not ABTest.objects.exists()


def test_an_unapproved_version_is_400(pair, engineer):
    ModelVersionFactory.create(created_by=engineer)  # v1.2.0, pending
    response = jwt_client(engineer).post(BASE, {**SPEC, "model_version_b": "v1.2.0"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "not_approved")


def test_a_version_of_another_model_type_is_unknown_here(pair, engineer, lead):
    version_pair(
        engineer=engineer, lead=lead, model_type=ModelTypeFactory.create(slug="triage", cohort="respiratory")
    )  # triage v1.0.0, v1.1.0
    response = jwt_client(engineer).post(BASE, {**SPEC, "model_version_b": "v1.2.0"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_version")


def test_a_second_running_test_is_409(running, engineer):
    response = jwt_client(engineer).post(BASE, {**SPEC, "traffic_split": 0.2}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "ab_test_running"
    assert response.json()["ab_test"] == running.pk
    assert ABTest.objects.count() == 1


# --- Read ---------------------------------------------------------------------------------------------


def test_the_list_is_newest_first_and_filters_by_status(running, engineer, lead):
    running.stop(by=lead, reason="Restart.")
    newer = start_test(running.version_b, running.version_a, by=engineer)
    client = jwt_client(engineer)
    body = client.get(BASE).json()
    assert [row["id"] for row in body["results"]] == [newer.pk, running.pk]
    assert "figures" not in body["results"][0]
    stopped = client.get(BASE + "?status=stopped").json()["results"]
    assert [row["id"] for row in stopped] == [running.pk]


def test_the_list_costs_the_same_queries_for_many_tests(pair, engineer, lead, django_assert_max_num_queries):
    client = jwt_client(engineer)
    for _ in range(5):
        start_test(*pair, by=engineer).stop(by=lead, reason="Next.")
    with django_assert_max_num_queries(6):
        assert len(client.get(BASE).json()["results"]) == 5


def test_the_detail_shows_live_figures_and_the_decision(running, engineer, lead):
    log_arm(running, "a", predicted=400, labelled=300, correct=180, by=engineer)
    log_arm(running, "b", predicted=400, labelled=300, correct=270, by=engineer)

    body = jwt_client(lead).get(BASE + f"{running.pk}/").json()

    figures = body["figures"]
    a, b = figures["arms"]["a"], figures["arms"]["b"]
    assert (a["version"], a["assigned"], a["predicted"], a["labelled"], a["correct"]) == ("v1.0.0", 400, 400, 300, 180)
    assert b["accuracy"] == pytest.approx(0.9)
    low, high = b["accuracy_interval"]
    assert low < 0.9 < high
    assert set(a["latency_ms"]) == {"p50", "p90", "p99"}
    assert a["latency_ms"]["p50"] <= a["latency_ms"]["p99"]
    assert figures["srm"]["failed"] is False
    assert figures["srm"]["p_value"] == pytest.approx(1.0)
    assert figures["decision"] == "ship_b"
    assert figures["difference"][0] > 0
    assert body["decision"] == ""  # nothing recorded while running


def test_the_detail_flags_a_sample_ratio_mismatch_as_invalid(running, engineer):
    log_arm(running, "a", predicted=900, by=engineer)
    log_arm(running, "b", predicted=500, by=engineer)
    figures = jwt_client(engineer).get(BASE + f"{running.pk}/").json()["figures"]
    assert figures["srm"]["failed"] is True
    assert figures["srm"]["p_value"] < 0.001
    assert figures["decision"] == "invalid"


def test_a_test_of_another_model_type_is_404_here(engineer, lead):
    a, b = version_pair(
        engineer=engineer, lead=lead, model_type=ModelTypeFactory.create(slug="triage", cohort="respiratory")
    )
    other = start_test(a, b, by=engineer)
    ModelTypeFactory.create(diagnosis=True)
    assert jwt_client(engineer).get(BASE + f"{other.pk}/").status_code == 404


# --- Stop and conclude --------------------------------------------------------------------------------


def test_stop_through_the_api_then_again_is_409(running, engineer):
    client = jwt_client(engineer)
    response = client.post(BASE + f"{running.pk}/stop/", {"reason": "Wrong set-up."}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["reason"]) == ("stopped", "Wrong set-up.")
    assert response.json()["concluded_by"] == engineer.username

    again = client.post(BASE + f"{running.pk}/stop/", {"reason": "Again."}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"


def test_a_reason_is_required_to_end_a_test(running, lead):
    response = jwt_client(lead).post(BASE + f"{running.pk}/conclude/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert ABTest.objects.get(pk=running.pk).status == "running"


def test_concluding_ship_b_through_the_api_promotes_b(running, engineer, lead, pair):
    _a, b = pair
    log_arm(running, "a", predicted=300, labelled=300, correct=180, by=engineer)
    log_arm(running, "b", predicted=300, labelled=300, correct=270, by=engineer)

    response = jwt_client(lead).post(BASE + f"{running.pk}/conclude/", {"reason": "Clear win."}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["decision"], body["promoted"]) == ("concluded", "ship_b", True)
    b.refresh_from_db()
    assert b.deployment_status == "active"
    assert f"A/B test {running.pk}" in ActivationHistory.objects.order_by("id").last().reason  # type: ignore[union-attr]
    concluding = jwt_client(lead).post(BASE + f"{running.pk}/conclude/", {"reason": "Twice."}, format="json")
    assert concluding.status_code == 409


def test_concluding_hold_through_the_api_keeps_a(running, lead, pair):
    a, _b = pair
    response = jwt_client(lead).post(BASE + f"{running.pk}/conclude/", {"reason": "Out of time."}, format="json")
    assert (response.json()["decision"], response.json()["promoted"]) == ("hold", False)
    a.refresh_from_db()
    assert a.deployment_status == "active"


# --- Comparison -----------------------------------------------------------------------------------------


def test_the_comparison_includes_the_running_or_latest_test_of_the_pair(engineer, lead):
    model_type = ModelTypeFactory.create(diagnosis=True)
    snapshot = ready_snapshot(model_type, by=engineer)
    a = ModelVersionFactory.create(trained=True, approved=True, dataset=snapshot, created_by=engineer, approved_by=lead)
    b = ModelVersionFactory.create(
        trained=True, approved=True, dataset=snapshot, created_by=engineer, approved_by=lead, hyperparameters={"C": 0.1}
    )
    client = jwt_client(lead)
    url = f"/api/v1/model-types/diagnosis/compare/?a={a.version}&b={b.version}"
    assert client.get(url).json()["ab_test"] is None

    first = start_test(a, b, by=engineer)
    log_arm(first, "b", predicted=10, labelled=4, correct=3, by=engineer)
    first.stop(by=lead, reason="Restart.")
    second = start_test(b, a, by=engineer)  # the other way round, and running: this one is shown

    body = client.get(url).json()
    assert body["ab_test"]["id"] == second.pk
    assert body["ab_test"]["status"] == "running"
    assert body["ab_test"]["figures"]["decision"] == "hold"
    second.stop(by=lead, reason="Done.")
    shown = client.get(url).json()["ab_test"]
    assert shown["id"] == second.pk  # the latest when none runs


def test_conclude_with_an_expected_decision_that_changed_is_409(running, engineer, lead):
    log_arm(running, "a", predicted=300, labelled=300, correct=180, by=engineer)
    log_arm(running, "b", predicted=300, labelled=300, correct=270, by=engineer)
    url = BASE + f"{running.pk}/conclude/"

    response = jwt_client(lead).post(url, {"reason": "Keep A.", "expected_decision": "hold"}, format="json")

    assert response.status_code == 409
    assert (response.json()["code"], response.json()["decision"]) == ("decision_changed", "ship_b")
    assert ABTest.objects.get(pk=running.pk).status == "running"
    response = jwt_client(lead).post(url, {"reason": "Win.", "expected_decision": "ship_b"}, format="json")
    assert response.status_code == 200
    assert response.json()["promoted"] is True


def test_activating_another_version_while_a_test_runs_is_409(running, engineer, lead, pair):
    a, _b = pair
    third = ModelVersionFactory.create(created_by=engineer, model_type=a.model_type)
    third.approve(by=lead)
    url = f"/api/v1/model-types/diagnosis/versions/{third.version}/activate/"
    response = jwt_client(lead).post(url, {"reason": "Meanwhile."}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "ab_test_running"
