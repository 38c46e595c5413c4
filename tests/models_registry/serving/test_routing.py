"""Routing under an A/B test: sticky deterministic split, random unkeyed requests, shadow mode, budget."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import TestCase

from learning_engine import roles
from models_registry.models import ABTest, Prediction
from models_registry.serving.router import Arm, Route, RunningTest, assign_b, b_share
from tests.conftest import jwt_client
from tests.factories import user_with_role
from tests.models_registry.experiments.factories import start_test
from tests.models_registry.serving.factories import (
    COLD,
    COLD_FEATURES,
    PNEUMONIA,
    PNEUMONIA_FEATURES,
    max_data_queries,
    served_version,
    synthetic_rows,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/diagnosis/predict/"
BATCH = "/api/v1/model-types/diagnosis/predict/batch/"
FEEDBACK = "/api/v1/predictions/{pk}/feedback/"


def arm(name: str, version_id: int) -> Arm:
    return Arm(
        name=name,
        version_id=version_id,
        version=f"v{version_id}",
        artifact="",
        artifact_sha256="",
        dataset_id=None,
        ab_test_id=7,
    )


def split_route(traffic_split: float, *, test_id: int = 7, mode: str = "split") -> Route:
    return Route(
        model_type_id=1,
        slug="diagnosis",
        cohort="respiratory",
        arms=(arm("a", 1), arm("b", 2)),
        test=RunningTest(id=test_id, mode=mode, traffic_split=traffic_split),
    )


# --- Assignment (no database) -------------------------------------------------------------------------


def test_a_subject_always_gets_the_same_arm():
    route = split_route(0.5)
    for subject in (f"pseudonym-{i}" for i in range(50)):
        chosen = {route.choose(subject=subject).name for _ in range(20)}
        assert len(chosen) == 1


@pytest.mark.parametrize("traffic_split", [0.1, 0.3, 0.5, 0.8])
def test_the_observed_split_is_within_two_points_over_ten_thousand_subjects(traffic_split):
    route = split_route(traffic_split)
    to_b = sum(route.choose(subject=f"subject-{i}").name == "b" for i in range(10_000))
    assert abs(to_b / 10_000 - traffic_split) <= 0.02


def test_assignment_depends_on_the_test_so_two_tests_split_independently():
    first = [b_share(1, f"s{i}") < 0.5 for i in range(2000)]
    second = [b_share(2, f"s{i}") < 0.5 for i in range(2000)]
    same = sum(x == y for x, y in zip(first, second, strict=True)) / 2000
    assert 0.45 < same < 0.55  # independent halves agree about half the time


def test_requests_without_a_subject_are_assigned_at_random_at_the_split():
    to_b = sum(assign_b(7, "", 0.3) for _ in range(10_000))
    assert abs(to_b / 10_000 - 0.3) <= 0.02


def test_shadow_mode_always_answers_with_a_and_shadows_with_b():
    route = split_route(0.5, mode="shadow")
    assert {route.choose(subject=f"s{i}").name for i in range(200)} == {"a"}
    assert route.choose().name == "a"
    assert route.shadow is not None
    assert route.shadow.name == "b"
    assert split_route(0.5).shadow is None


# --- Through the API, with real models -----------------------------------------------------------------


def flipped_rows() -> list[dict[str, Any]]:
    """Training rows with the two diagnoses swapped: a model that answers the opposite of A."""
    swap = {PNEUMONIA: COLD, COLD: PNEUMONIA}
    return [{**row, "label": swap[row["label"]]} for row in synthetic_rows(60, seed=3)]


@pytest.fixture
def versions(lead, engineer):
    a = served_version(lead=lead, engineer=engineer)
    b = served_version(model_type=a.model_type, lead=lead, engineer=engineer, activate=False, rows=flipped_rows())
    return a, b


def predict(client, body):
    response = client.post(PREDICT, body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_split_test_routes_each_subject_to_one_arm_and_logs_the_test(client, versions, engineer):
    a, b = versions
    test = start_test(a, b, by=engineer, traffic_split=0.5)
    seen: dict[str, set[tuple[str, str]]] = {}
    for index in range(30):
        for _repeat in range(3):
            body = predict(client, {**PNEUMONIA_FEATURES, "subject_key": f"enc-{index}"})
            seen.setdefault(f"enc-{index}", set()).add((body["arm"], body["model_version"]))
    assert all(len(answers) == 1 for answers in seen.values())  # sticky
    arms = {answer for answers in seen.values() for answer in answers}
    assert arms <= {("a", a.version), ("b", b.version)}
    assert len(arms) == 2  # 30 subjects at 50%: both arms (one in 2**29 sessions otherwise)
    rows = Prediction.objects.filter(ab_test=test)
    assert rows.count() == 90
    assert set(rows.values_list("arm", "version_id").distinct()) == {("a", a.pk), ("b", b.pk)}
    assert not rows.filter(shadow_of__isnull=False).exists()


def test_requests_without_a_subject_key_reach_both_arms_and_are_logged_unkeyed(client, versions, engineer):
    a, b = versions
    test = start_test(a, b, by=engineer, traffic_split=0.5)
    answered = {predict(client, COLD_FEATURES)["arm"] for _ in range(40)}
    assert answered == {"a", "b"}
    assert Prediction.objects.filter(ab_test=test, subject_pseudonym="").count() == 40
    assert test.evaluate()["arms"]["a"]["unkeyed"] + test.evaluate()["arms"]["b"]["unkeyed"] == 40


def test_a_batch_is_split_per_record_by_subject(client, versions, engineer):
    a, b = versions
    start_test(a, b, by=engineer, traffic_split=0.5)
    records = [{**PNEUMONIA_FEATURES, "subject_key": f"enc-{i}"} for i in range(20)]
    first = client.post(BATCH, {"records": records}, format="json").json()
    second = client.post(BATCH, {"records": records}, format="json").json()
    assert [x["arm"] for x in first] == [x["arm"] for x in second]
    assert {x["arm"] for x in first} == {"a", "b"}
    for answer in first:
        assert answer["model_version"] == (a.version if answer["arm"] == "a" else b.version)


def test_shadow_mode_answers_with_a_and_logs_b_silently(client, versions, engineer):
    a, b = versions
    test = start_test(a, b, by=engineer, mode="shadow")

    body = predict(client, {**PNEUMONIA_FEATURES, "subject_key": "enc-1"})

    assert (body["arm"], body["model_version"]) == ("a", a.version)
    assert body["diagnosis"]["code"] == PNEUMONIA  # A's answer; B would have said a cold
    answered = Prediction.objects.get(pk=body["id"])
    shadow = Prediction.objects.get(shadow_of=answered)
    assert (shadow.version, shadow.arm, shadow.ab_test) == (b, "b", test)
    assert shadow.predicted_code == COLD  # B did predict, differently
    assert shadow.subject_pseudonym == answered.subject_pseudonym
    assert body["probabilities"] == answered.probabilities != shadow.probabilities


def test_shadow_mode_never_returns_b_in_a_batch(client, versions, engineer):
    a, b = versions
    start_test(a, b, by=engineer, mode="shadow")
    answers = client.post(BATCH, {"records": [PNEUMONIA_FEATURES, COLD_FEATURES] * 5}, format="json").json()
    assert {(x["arm"], x["model_version"]) for x in answers} == {("a", a.version)}
    assert [x["diagnosis"]["code"] for x in answers] == [PNEUMONIA, COLD] * 5
    ids = [x["id"] for x in answers]
    shadows = Prediction.objects.filter(shadow_of_id__in=ids)
    assert shadows.count() == 10
    assert not set(shadows.values_list("id", flat=True)) & set(ids)
    assert set(shadows.values_list("predicted_code", "shadow_of__predicted_code")) == {
        (COLD, PNEUMONIA),
        (PNEUMONIA, COLD),
    }


def test_feedback_on_a_shadow_prediction_is_404(client, versions, engineer):
    a, b = versions
    start_test(a, b, by=engineer, mode="shadow")
    body = predict(client, PNEUMONIA_FEATURES)
    shadow = Prediction.objects.get(shadow_of_id=body["id"])
    clinician = jwt_client(user_with_role(roles.CLINICIAN))
    response = clinician.post(FEEDBACK.format(pk=shadow.pk), {"diagnosis_code": PNEUMONIA}, format="json")
    assert response.status_code == 404
    assert clinician.post(FEEDBACK.format(pk=body["id"]), {"diagnosis_code": PNEUMONIA}).status_code == 201


def test_shadow_figures_compare_both_arms_on_the_feedback_given_to_a(client, versions, engineer):
    a, b = versions
    test = start_test(a, b, by=engineer, mode="shadow")
    clinician = jwt_client(user_with_role(roles.CLINICIAN))
    for features, truth in ((PNEUMONIA_FEATURES, PNEUMONIA), (COLD_FEATURES, COLD), (COLD_FEATURES, None)):
        body = predict(client, features)
        if truth:
            clinician.post(FEEDBACK.format(pk=body["id"]), {"diagnosis_code": truth}, format="json")
    figures = test.evaluate()
    assert figures["shadow"]["compared"] == 3
    assert figures["shadow"]["agreement"] == 0.0
    assert (figures["arms"]["a"]["labelled"], figures["arms"]["a"]["correct"]) == (2, 2)
    assert (figures["arms"]["b"]["labelled"], figures["arms"]["b"]["correct"]) == (2, 0)
    assert figures["srm"]["p_value"] is None


def test_stopping_the_test_routes_back_to_the_active_version(client, versions, engineer, lead):
    a, b = versions
    test = start_test(a, b, by=engineer, traffic_split=0.5)
    assert predict(client, {**COLD_FEATURES, "subject_key": "x"})["arm"] in ("a", "b")
    with TestCase.captureOnCommitCallbacks(execute=True):
        ABTest.objects.get(pk=test.pk).stop(by=lead, reason="Done.")
    body = predict(client, {**COLD_FEATURES, "subject_key": "x"})
    assert (body["arm"], body["model_version"]) == (None, a.version)
    assert Prediction.objects.get(pk=body["id"]).ab_test is None


def test_a_test_serves_even_without_an_active_version(client, lead, engineer):
    a = served_version(lead=lead, engineer=engineer, activate=False)
    b = served_version(model_type=a.model_type, lead=lead, engineer=engineer, activate=False, seed=1)
    start_test(a, b, by=engineer)
    assert predict(client, COLD_FEATURES)["arm"] in ("a", "b")


def test_a_warm_split_predict_costs_at_most_three_queries(client, versions, engineer):
    a, b = versions
    start_test(a, b, by=engineer, traffic_split=0.5)
    # Warm-up: the routing table and both models. Which arm a subject gets depends on the session's
    # pseudonym key, so warm up until both arms have answered (six fixed subjects all landed on one
    # arm about once in 32 sessions, and the measured request then loaded the other model).
    arms = set()
    for index in range(200):
        arms.add(predict(client, {**PNEUMONIA_FEATURES, "subject_key": f"warm-{index}"})["arm"])
        if arms == {"a", "b"}:
            break
    assert arms == {"a", "b"}
    # Two queries and monitoring's input tallies of both arms (one INSERT).
    with max_data_queries(3):
        predict(client, {**COLD_FEATURES, "subject_key": "enc-2"})
    with max_data_queries(3):
        client.post(BATCH, {"records": [COLD_FEATURES] * 10}, format="json")


def test_a_warm_shadow_predict_costs_one_query_more(client, versions, engineer):
    a, b = versions
    start_test(a, b, by=engineer, mode="shadow")
    predict(client, PNEUMONIA_FEATURES)
    # B's rows are a second INSERT; monitoring's tallies of both arms one more.
    with max_data_queries(4):
        predict(client, {**COLD_FEATURES, "subject_key": "enc-2"})
