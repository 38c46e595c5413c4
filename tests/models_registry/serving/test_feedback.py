"""Feedback on a prediction: once, right or wrong, live accuracy, and the case submitted for review
under the sender's own case source, with the same answer whether or not the case was on file."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.test import Client

from cases.access_log import AccessLogEntry
from cases.interchange import parse_record
from cases.models import Case, CaseTransition
from learning_engine import roles
from learning_engine.exceptions import DomainError
from models_registry.models import ClientSource, Feedback, PerformanceRecord, Prediction
from tests.cases.factories import record_dict
from tests.conftest import jwt_client
from tests.models_registry.serving.factories import (
    COLD,
    COLD_FEATURES,
    PNEUMONIA,
    PNEUMONIA_FEATURES,
    served_version,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/diagnosis/predict/"
FEEDBACK = "/api/v1/predictions/{id}/feedback/"


@pytest.fixture
def django_client_for():
    def login(user):
        browser = Client()
        browser.force_login(user)
        return browser

    return login


SITE = "st-marys"  # the source of record_dict()'s cases


@pytest.fixture
def bound(prediction_client) -> ClientSource:
    """The prediction client bound to the case source of ``record_dict``'s records."""
    return ClientSource.objects.create(user=prediction_client, source=SITE)


def predicted(client, features=PNEUMONIA_FEATURES) -> int:
    response = client.post(PREDICT, features, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["id"]


def feedback(client, prediction_id: int, code: str, **extra):
    return client.post(FEEDBACK.format(id=prediction_id), {"diagnosis_code": code, **extra}, format="json")


def live_record(version) -> PerformanceRecord:
    """The current (latest) live record of ``version``."""
    return PerformanceRecord.objects.filter(version=version, source="live").latest("created_at", "id")


def test_feedback_marks_the_prediction_right_and_records_who_and_when(client, prediction_client, version):
    prediction_id = predicted(client)
    response = feedback(client, prediction_id, PNEUMONIA.lower())  # codes are case-insensitive, as in cases

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["prediction"], body["diagnosis_code"], body["correct"]) == (prediction_id, PNEUMONIA, True)
    assert body["given_by"] == prediction_client.username
    row = Feedback.objects.get(prediction_id=prediction_id)
    assert (row.given_by, row.correct, row.created_at is not None) == (prediction_client, True, True)


def test_feedback_with_another_diagnosis_marks_the_prediction_wrong(client, version):
    response = feedback(client, predicted(client), COLD)
    assert response.json()["correct"] is False


def test_a_second_feedback_is_409_feedback_exists_and_changes_nothing(client, version):
    prediction_id = predicted(client)
    assert feedback(client, prediction_id, PNEUMONIA).status_code == 201
    second = feedback(client, prediction_id, COLD)
    assert (second.status_code, second.json()["code"]) == (409, "feedback_exists")
    assert Feedback.objects.get(prediction_id=prediction_id).diagnosis_code == PNEUMONIA
    assert live_record(version).metrics["with_feedback"] == 1


def test_the_database_refuses_a_second_feedback_even_from_a_stale_copy(client, prediction_client, version):
    # Two requests that both loaded the prediction before either wrote: no read decides, the
    # one-to-one constraint does.
    prediction_id = predicted(client)
    first, stale = Prediction.objects.get(pk=prediction_id), Prediction.objects.get(pk=prediction_id)
    first.give_feedback(diagnosis_code=PNEUMONIA, by=prediction_client)
    with pytest.raises(DomainError) as refused:
        stale.give_feedback(diagnosis_code=COLD, by=prediction_client)
    assert refused.value.code == "feedback_exists"
    assert Feedback.objects.filter(prediction_id=prediction_id).count() == 1


def test_live_accuracy_is_correct_over_predictions_with_feedback_in_one_record_per_version(client, version):
    ids = [predicted(client) for _ in range(3)] + [predicted(client, COLD_FEATURES)]
    feedback(client, ids[0], PNEUMONIA)
    record = live_record(version)
    assert (record.metrics["accuracy"], record.test_set_size) == (1.0, 1)

    feedback(client, ids[1], COLD)  # wrong
    feedback(client, ids[3], COLD)  # right
    record.refresh_from_db()
    assert record.metrics["accuracy"] == pytest.approx(2 / 3)
    assert (record.metrics["correct"], record.metrics["with_feedback"], record.test_set_size) == (2, 3, 3)
    # Rewritten in place: one live record per version and day; no feedback, no count.
    assert PerformanceRecord.objects.filter(version=version, source="live").count() == 1


def test_feedback_on_a_later_day_appends_a_snapshot_and_leaves_the_earlier_one(client, version):
    import datetime as dt

    ids = [predicted(client) for _ in range(2)]
    feedback(client, ids[0], PNEUMONIA)
    yesterday = live_record(version)
    PerformanceRecord.objects.filter(pk=yesterday.pk).update(created_at=yesterday.created_at - dt.timedelta(days=1))

    feedback(client, ids[1], COLD)

    records = list(PerformanceRecord.objects.filter(version=version, source="live").order_by("created_at"))
    assert records[0].pk == yesterday.pk
    assert [(r.metrics["with_feedback"], r.metrics["accuracy"]) for r in records] == [(1, 1.0), (2, 0.5)]


def test_live_accuracy_is_kept_per_version(client, version, lead):
    from tests.models_registry.serving.factories import activate

    feedback(client, predicted(client), PNEUMONIA)
    second = served_version(model_type=version.model_type, activate=False, seed=1, lead=lead)
    activate(second, by=lead)
    feedback(client, predicted(client), COLD)
    assert live_record(version).metrics["accuracy"] == 1.0
    assert live_record(second).metrics["accuracy"] == 0.0


def test_feedback_with_the_case_submits_it_for_review_by_the_feedback_giver(make_user, version):
    clinician = make_user(roles.CLINICIAN)
    client = jwt_client(clinician)
    prediction_id = predicted(client)
    record = record_dict(diagnosis={"code": PNEUMONIA, "label": "Pneumonia"})

    response = feedback(client, prediction_id, PNEUMONIA, case=record)

    assert response.status_code == 201, response.json()
    case = Case.objects.get(external_id=record["external_id"])
    assert (case.status, case.submitted_by) == (Case.Status.SUBMITTED, clinician)
    assert (case.source, case.external_id, case.diagnosis_code) == (record["source"], record["external_id"], PNEUMONIA)
    assert CaseTransition.objects.filter(case=case, to_state="submitted", actor=clinician).exists()
    assert Feedback.objects.get(prediction_id=prediction_id).case == case


def test_a_case_submitted_with_feedback_is_in_the_phi_access_log(client, prediction_client, bound, version):
    prediction_id = predicted(client)
    assert feedback(client, prediction_id, COLD).status_code == 201  # no case: nothing to log
    assert not AccessLogEntry.objects.exists()

    record = record_dict(diagnosis={"code": COLD, "label": "Common cold"})
    url = FEEDBACK.format(id=predicted(client))
    response = client.post(url, {"diagnosis_code": COLD, "case": record}, format="json", REMOTE_ADDR="198.51.100.40")

    assert response.status_code == 201, response.json()
    entry = AccessLogEntry.objects.get()
    assert (entry.actor, entry.action, entry.channel, entry.address) == (
        prediction_client,
        "submit",
        "api",
        "198.51.100.40",
    )
    assert entry.case_ids() == [Case.objects.get(external_id=record["external_id"]).pk]


def test_the_case_takes_the_model_types_cohort_the_confirmed_code_and_the_clients_source_when_it_has_none(
    client, prediction_client, bound, version
):
    record = record_dict()
    del record["cohort"], record["diagnosis"], record["source"]
    response = feedback(client, predicted(client), COLD, case=record)
    assert response.status_code == 201, response.json()
    case = Case.objects.get(external_id=record["external_id"])
    assert (case.cohort, case.diagnosis_code, case.submitted_by) == (version.model_type.cohort, COLD, prediction_client)
    assert case.source == SITE


def test_a_case_whose_diagnosis_differs_from_the_confirmed_one_is_400_and_nothing_is_written(client, version):
    prediction_id = predicted(client)
    response = feedback(client, prediction_id, COLD, case=record_dict(diagnosis={"code": PNEUMONIA}))
    assert (response.status_code, response.json()["code"]) == (400, "diagnosis_mismatch")
    assert not Feedback.objects.exists()
    assert not Case.objects.exists()


def test_an_invalid_case_is_400_naming_the_field_and_nothing_is_written(client, version):
    record = record_dict()
    record["patient"] = {"name": "No MRN"}
    response = feedback(client, predicted(client), PNEUMONIA, case=record)
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("invalid_case", "case.patient.mrn")
    assert "No MRN" not in response.content.decode()
    assert not Feedback.objects.exists()


def test_a_case_on_file_and_a_new_case_get_the_same_answer(client, clinician, bound, version):
    on_file = record_dict()
    Case.submit(parse_record(on_file), by=clinician)
    new = record_dict()
    cases_before = set(Case.objects.values_list("pk", flat=True))
    audit_before = CaseTransition.objects.count()

    old_answer = feedback(client, predicted(client), PNEUMONIA, case={**on_file, "note": "Another note."})
    new_answer = feedback(client, predicted(client), PNEUMONIA, case=new)

    # The same status and the same fields: nothing tells the sender the first encounter existed.
    assert (old_answer.status_code, new_answer.status_code) == (201, 201)
    assert old_answer.json().keys() == new_answer.json().keys()
    differing = {key for key in old_answer.json() if old_answer.json()[key] != new_answer.json()[key]}
    assert differing <= {"id", "prediction", "created_at"}
    assert "case" not in json.dumps(old_answer.json())
    # The case on file is untouched; only the new one was submitted (one audit row).
    added = set(Case.objects.values_list("pk", flat=True)) - cases_before
    assert [Case.objects.get(pk=pk).external_id for pk in added] == [new["external_id"]]
    assert CaseTransition.objects.count() == audit_before + 1
    assert Case.objects.get(external_id=on_file["external_id"]).note == on_file["note"]
    # Both feedbacks count, as they would without a case.
    assert Feedback.objects.count() == 2
    assert live_record(version).metrics["with_feedback"] == 2


def test_a_bound_client_cannot_send_a_case_under_another_source(client, bound, version):
    prediction_id = predicted(client)
    response = feedback(client, prediction_id, PNEUMONIA, case=record_dict(source="other-hospital"))

    assert (response.status_code, response.json()["code"]) == (403, "source_not_allowed")
    assert (Case.objects.count(), Feedback.objects.count()) == (0, 0)


def test_a_client_without_a_source_cannot_send_cases_but_may_give_feedback(client, version):
    prediction_id = predicted(client)
    refused = feedback(client, prediction_id, PNEUMONIA, case=record_dict())

    assert (refused.status_code, refused.json()["code"]) == (403, "no_case_source")
    assert (Case.objects.count(), Feedback.objects.count()) == (0, 0)
    assert feedback(client, prediction_id, PNEUMONIA).status_code == 201


def test_a_clinician_without_a_bound_source_sends_cases_under_any_source_as_through_the_case_api(make_user, version):
    clinician = jwt_client(make_user(roles.CLINICIAN))
    response = feedback(clinician, predicted(clinician), PNEUMONIA, case=record_dict(source="other-hospital"))

    assert response.status_code == 201, response.json()
    assert Case.objects.get().source == "other-hospital"


def test_feedback_is_throttled_per_user(settings, monkeypatch, client, version):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "feedback": "2/min"}
    monkeypatch.setattr("learning_engine.throttling._now", lambda: 1_800_000_030.0)
    answers = [feedback(client, predicted(client), PNEUMONIA).status_code for _ in range(3)]

    assert answers[:2] == [201, 201]
    assert answers[2] == 429
    assert Feedback.objects.count() == 2


def test_only_superusers_bind_clients_to_sources_in_the_admin(make_user, prediction_client, django_client_for):
    url = "/admin/models_registry/clientsource/"
    for role in (roles.ML_ENGINEER, roles.CLINICIAN, roles.CLINICAL_LEAD):
        assert django_client_for(make_user(role, is_staff=True)).get(url).status_code == 403
    admin = django_client_for(make_user(None, is_staff=True, is_superuser=True))
    response = admin.post(f"{url}add/", {"user": prediction_client.pk, "source": SITE})
    assert response.status_code == 302
    assert ClientSource.objects.get().source == SITE
    assert admin.post(f"{url}add/", {"user": prediction_client.pk, "source": "two words"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "diagnosis_code"),
        ({"diagnosis_code": "  "}, "diagnosis_code"),
        ({"diagnosis_code": "J18.9", "case": [1]}, "case"),
    ],
)
def test_a_malformed_feedback_body_is_400(client, version, body, field):
    response = client.post(FEEDBACK.format(id=predicted(client)), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_an_unknown_prediction_is_404(client, version):
    response = feedback(client, 999_999, PNEUMONIA)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_a_prediction_client_gives_feedback_only_on_its_own_predictions(client, make_user, version):
    other = jwt_client(make_user(roles.PREDICTION_CLIENT))
    prediction_id = predicted(other)
    response = feedback(client, prediction_id, PNEUMONIA)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")  # as if it did not exist
    assert not Feedback.objects.exists()


def test_a_clinician_gives_feedback_on_any_prediction(client, make_user, version):
    prediction_id = predicted(client)  # asked for by a hospital system
    clinician = jwt_client(make_user(roles.CLINICIAN))
    assert feedback(clinician, prediction_id, PNEUMONIA).status_code == 201


# --- Concurrency (PostgreSQL) -----------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_feedback_is_taken_once_per_prediction_and_no_live_count_is_lost(make_user):
    version = served_version()
    clients = [jwt_client(make_user(roles.CLINICIAN)) for _ in range(6)]
    distinct = [predicted(clients[0]) for _ in clients]
    shared = predicted(clients[0])
    barrier = threading.Barrier(len(clients))
    statuses: dict[str, list[int]] = {"distinct": [], "shared": []}
    lock = threading.Lock()

    def race(client: Any, prediction_id: int) -> None:
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            for kind, target in (("distinct", prediction_id), ("shared", shared)):
                response = feedback(client, target, PNEUMONIA)
                with lock:
                    statuses[kind].append(response.status_code)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=race, args=pair) for pair in zip(clients, distinct, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses["distinct"] == [201] * len(clients)
    assert sorted(statuses["shared"]) == [201] + [409] * (len(clients) - 1)
    record = live_record(version)
    assert record.metrics["with_feedback"] == Feedback.objects.count() == len(clients) + 1
    assert PerformanceRecord.objects.filter(version=version, source="live").count() == 1
