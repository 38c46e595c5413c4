"""Predict and batch predict: routing to the active version, input validation, the prediction log."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from learning_engine import roles
from models_registry.models import Prediction
from models_registry.serving.inputs import prediction_input
from models_registry.serving.model_cache import MODEL_CACHE
from models_registry.serving.router import ROUTER
from tests.cases.factories import record_dict
from tests.factories import user_with_role
from tests.models_registry.serving.factories import (
    COLD,
    COLD_FEATURES,
    PNEUMONIA,
    PNEUMONIA_FEATURES,
    activate,
    reset_serving_state,
    served_version,
)
from tests.training.factories import ModelTypeFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/{slug}/predict/"
BATCH = "/api/v1/model-types/{slug}/predict/batch/"


def predict(client, body, slug="diagnosis"):
    return client.post(PREDICT.format(slug=slug), body, format="json")


# --- Routing ---------------------------------------------------------------------------------------


def test_predict_answers_with_the_active_version_and_logs_the_prediction(client, prediction_client, version):
    response = predict(client, {**PNEUMONIA_FEATURES, "subject_key": "enc-1"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["model_version"] == version.version == "v1.0.0"
    assert body["model_type"] == "diagnosis"
    assert body["arm"] is None
    # No dataset: the code is the label; the name is the version's dictionary's.
    assert body["diagnosis"] == {
        "code": PNEUMONIA,
        "label": PNEUMONIA,
        "display_name": "Pneumonia, unspecified organism",
    }
    assert set(body["probabilities"]) == {PNEUMONIA, COLD}
    assert body["probabilities"][PNEUMONIA] > 0.5
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    row = Prediction.objects.get(pk=body["id"])
    assert (row.version, row.model_type, row.requested_by, row.arm) == (
        version,
        version.model_type,
        prediction_client,
        "",
    )
    assert row.predicted_code == PNEUMONIA
    assert row.probabilities == body["probabilities"]
    assert len(row.subject_pseudonym) == 64
    assert len(row.input_sha256) == 64
    assert row.latency_ms > 0


def test_a_cold_record_is_predicted_as_a_cold(client, version):
    response = predict(client, COLD_FEATURES)
    assert response.json()["diagnosis"]["code"] == COLD


def test_activating_another_version_routes_the_next_request_to_it(client, version):
    lead = user_with_role(roles.CLINICAL_LEAD)
    second = served_version(model_type=version.model_type, activate=False, seed=1, lead=lead)
    assert predict(client, PNEUMONIA_FEATURES).json()["model_version"] == "v1.0.0"

    activate(second, by=lead)

    body = predict(client, PNEUMONIA_FEATURES).json()
    assert body["model_version"] == second.version == "v1.1.0"
    assert Prediction.objects.get(pk=body["id"]).version == second
    assert MODEL_CACHE.loads == 2
    assert len(MODEL_CACHE) == 1  # the replaced version's model was dropped


def test_without_an_active_version_predict_is_409_no_active_version(client):
    served_version(activate=False)
    response = predict(client, PNEUMONIA_FEATURES)
    assert response.status_code == 409
    assert response.json()["code"] == "no_active_version"
    assert not Prediction.objects.exists()


def test_a_deactivated_version_no_longer_answers(client, version):
    assert predict(client, PNEUMONIA_FEATURES).status_code == 200
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        version.deactivate(by=user_with_role(roles.CLINICAL_LEAD), reason="Withdrawn.")
    response = predict(client, PNEUMONIA_FEATURES)
    assert (response.status_code, response.json()["code"]) == (409, "no_active_version")


def test_a_model_type_created_after_the_routing_table_was_read_is_409_not_404(client, version):
    assert predict(client, PNEUMONIA_FEATURES).status_code == 200  # the table is read
    ModelTypeFactory.create(slug="newcomer", cohort="respiratory")
    response = predict(client, PNEUMONIA_FEATURES, slug="newcomer")
    assert (response.status_code, response.json()["code"]) == (409, "no_active_version")


def test_an_unknown_model_type_is_404(client, version):
    response = predict(client, PNEUMONIA_FEATURES, slug="no-such-model")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_warm_requests_do_not_reload_the_routing_table_or_the_model(client, version):
    predict(client, PNEUMONIA_FEATURES)
    reloads, loads = ROUTER.reloads, MODEL_CACHE.loads
    for _ in range(3):
        assert predict(client, COLD_FEATURES).status_code == 200
    assert (ROUTER.reloads, MODEL_CACHE.loads) == (reloads, loads)


# A warm predict: the user behind the token, the prediction log's INSERT and monitoring's input
# tallies (one INSERT of counts per request, a row per arm: monitoring.recording.observe_inputs).
# What a warm predict costs, pinned exactly so that a query more fails here: the prediction log's
# INSERT and monitoring's tally INSERT. No read: the user comes from the token and the cached
# credential state (learning_engine.stateless_auth), the route and the model from memory, the
# serving generation and the throttle counter from the cache.
WARM_PREDICT_QUERIES = ["INSERT INTO models_registry_prediction", "INSERT INTO monitoring_inputtally"]


def _statements(queries) -> list[str]:
    """The reads and writes (the savepoints that keep a failing tally from undoing the log are not)."""
    statements = [" ".join(query["sql"].replace('"', "").split()[:3]) for query in queries.captured_queries]
    return [statement for statement in statements if "SAVEPOINT" not in statement]


def test_a_warm_predict_costs_two_inserts_and_no_read(client, version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert predict(client, PNEUMONIA_FEATURES).status_code == 200  # warm-up: routing table, model, credentials
    with CaptureQueriesContext(connection) as queries:
        response = predict(client, {**COLD_FEATURES, "subject_key": "enc-2"})
    assert response.status_code == 200
    assert _statements(queries) == WARM_PREDICT_QUERIES


def test_a_warm_batch_predict_costs_the_same_two_inserts(client, version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert predict(client, PNEUMONIA_FEATURES).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = client.post(BATCH.format(slug="diagnosis"), {"records": [PNEUMONIA_FEATURES] * 50}, format="json")
    assert response.status_code == 200
    assert len(response.json()) == 50
    assert _statements(queries) == WARM_PREDICT_QUERIES


@pytest.mark.django_db(transaction=True)
def test_every_answer_has_its_log_row_committed_before_it_is_sent(client, version, monkeypatch):
    """The README's guarantee: the log row is committed (autocommit, no transaction left open,
    no ATOMIC_REQUESTS) before the answer leaves the view, so a crash after the answer loses none."""
    from django.db import connection

    from models_registry.serving.views import PredictBatchView, PredictView

    seen: list[tuple[bool, bool, bool]] = []

    def finalize(original):
        def wrapped(self, request, response, *args, **kwargs):
            answers = response.data if isinstance(response.data, list) else [response.data]
            ids = [answer["id"] for answer in answers if isinstance(answer, dict) and "id" in answer]
            logged = list(Prediction.objects.filter(pk__in=ids).values_list("pk", flat=True))
            seen.append((connection.in_atomic_block, connection.get_autocommit(), sorted(logged) == sorted(ids)))
            return original(self, request, response, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(PredictView, "finalize_response", finalize(PredictView.finalize_response))
    monkeypatch.setattr(PredictBatchView, "finalize_response", finalize(PredictBatchView.finalize_response))
    assert predict(client, PNEUMONIA_FEATURES).status_code == 200
    batch = client.post(BATCH.format(slug="diagnosis"), {"records": [PNEUMONIA_FEATURES] * 3}, format="json")
    assert batch.status_code == 200

    assert seen == [(False, True, True), (False, True, True)]


def test_an_unreadable_cache_falls_back_to_the_database_and_still_answers(client, version, monkeypatch):
    def broken() -> int:
        raise ConnectionError("cache down")

    monkeypatch.setattr("models_registry.generation.current_generation", broken)
    first = predict(client, PNEUMONIA_FEATURES)
    reloads = ROUTER.reloads
    second = predict(client, PNEUMONIA_FEATURES)
    assert (first.status_code, second.status_code) == (200, 200)
    assert ROUTER.reloads == reloads + 1  # every request reads the table while the cache is down


# --- Input ---------------------------------------------------------------------------------------


def test_a_full_interchange_record_is_deidentified_and_predicted(client, version):
    record = record_dict(findings=PNEUMONIA_FEATURES["findings"], symptoms=PNEUMONIA_FEATURES["symptoms"])
    response = predict(client, record)
    assert response.status_code == 200, response.json()
    assert response.json()["diagnosis"]["code"] == PNEUMONIA


def test_a_record_without_a_diagnosis_or_ids_is_enough_with_a_patient_block(client, version):
    response = predict(
        client,
        {
            "patient": {"mrn": "MRN-1", "birth_date": "1950-01-01", "sex": "female"},
            "findings": PNEUMONIA_FEATURES["findings"],
            "symptoms": ["cough"],
        },
    )
    assert response.status_code == 200, response.json()


def test_the_patient_block_and_the_plain_fields_give_the_same_input():
    from_patient = prediction_input(
        {
            "patient": {"mrn": "MRN-9", "name": "Ann Smith", "birth_date": "1950-06-01", "sex": "female"},
            "encounter_date": "2026-05-02",
            "findings": {"spo2": 91},
            "symptoms": ["Cough"],
        }
    )
    plain = prediction_input({"age": 75, "sex": "female", "findings": {"spo2": 91}, "symptoms": ["cough"]})
    assert from_patient.row == plain.row
    assert from_patient.input_sha256 == plain.input_sha256
    assert plain.row["age_band"] == "70-79"


def test_ages_over_89_become_the_90_plus_band():
    assert prediction_input({"age": 97}).row["age"] == 90  # "90+" as the dataset file stores it
    assert prediction_input({"age": 97}).input_sha256 == prediction_input({"age": "90+"}).input_sha256


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"findings": {"heart_rate": "fast"}}, "findings[0]"),
        ({"findings": {"heart_rate": True}}, "findings[0]"),
        ({"findings": [1, 2]}, "findings"),
        ({"symptoms": "cough"}, "symptoms"),
        ({"symptoms": [3]}, "symptoms[0]"),
        ({"age": "old"}, "age"),
        ({"age": -1}, "age"),
        ({"sex": "robot"}, "sex"),
        ({"patient": {"name": "No Mrn"}}, "patient.mrn"),
        ({"patient": {"mrn": "M1"}, "encounter_date": "yesterday"}, "encounter_date"),
        ({"subject_key": 12}, "subject_key"),
    ],
)
def test_bad_feature_types_are_400_naming_the_field(client, version, body, field):
    response = predict(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_record"
    assert response.json()["field"] == field
    assert not Prediction.objects.exists()


def test_a_body_that_is_not_an_object_is_400(client, version):
    response = client.post(PREDICT.format(slug="diagnosis"), "[1, 2]", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_record")


def test_an_error_never_echoes_the_value_sent(client, version):
    response = predict(client, {"findings": {"heart_rate": "MRN-448812"}})
    assert "MRN-448812" not in json.dumps(response.json())


# --- Batch ---------------------------------------------------------------------------------------


def test_batch_predict_answers_each_record_in_order_with_one_row_each(client, version):
    records = [PNEUMONIA_FEATURES, COLD_FEATURES, {**PNEUMONIA_FEATURES, "subject_key": "enc-3"}]
    response = client.post(BATCH.format(slug="diagnosis"), {"records": records}, format="json")
    assert response.status_code == 200, response.json()
    answers = response.json()
    assert [answer["diagnosis"]["code"] for answer in answers] == [PNEUMONIA, COLD, PNEUMONIA]
    assert Prediction.objects.count() == 3
    rows = {row.pk: row for row in Prediction.objects.all()}
    assert [rows[answer["id"]].predicted_code for answer in answers] == [PNEUMONIA, COLD, PNEUMONIA]
    assert rows[answers[2]["id"]].subject_pseudonym
    assert not rows[answers[0]["id"]].subject_pseudonym


def test_one_record_is_predicted_by_the_numpy_path_with_the_pipelines_probabilities(client, version, monkeypatch):
    from training.features import features

    assert predict(client, PNEUMONIA_FEATURES).status_code == 200
    model = MODEL_CACHE.get(ROUTER.route("diagnosis").choose())
    assert model.row_predictor is not None  # the trainer's pipeline: training.row_predictor takes it
    row = prediction_input(COLD_FEATURES).row
    expected = model.pipeline.predict_proba([features(row, model.numeric_features)])[0]

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline's own predict_proba was called for one record")

    monkeypatch.setattr(model.pipeline, "predict_proba", refuse)
    answer = predict(client, COLD_FEATURES).json()["probabilities"]
    assert list(answer.values()) == pytest.approx(expected.tolist(), rel=1e-12)


def test_a_batch_above_the_parameter_limit_is_logged_in_order_in_several_inserts(client, version, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from models_registry.serving.models import LOG_COLUMNS

    monkeypatch.setattr(type(connection.features), "max_query_params", 2 * len(LOG_COLUMNS))  # two rows a statement
    # PostgreSQL's backend computes it in a cached_property whose value (None) the instance keeps:
    # without it the class's limit is read (SQLite's is a plain property, on the class).
    monkeypatch.delitem(vars(connection.features), "max_query_params", raising=False)
    records = [
        {**COLD_FEATURES, "findings": {**COLD_FEATURES["findings"], "temperature_c": 36.5 + i / 2}} for i in range(5)
    ]
    with CaptureQueriesContext(connection) as queries:
        answers = client.post(BATCH.format(slug="diagnosis"), {"records": records}, format="json").json()
    assert _statements(queries).count("INSERT INTO models_registry_prediction") == 3
    ids = [answer["id"] for answer in answers]
    assert ids == sorted(set(ids))
    for answer in answers:
        assert Prediction.objects.get(pk=answer["id"]).probabilities == pytest.approx(answer["probabilities"])


def test_batch_and_single_predictions_agree(client, version):
    single = predict(client, COLD_FEATURES).json()["probabilities"]
    batch = client.post(
        BATCH.format(slug="diagnosis"), {"records": [COLD_FEATURES, PNEUMONIA_FEATURES]}, format="json"
    ).json()
    assert batch[0]["probabilities"] == pytest.approx(single)


def test_a_batch_over_the_limit_is_400_batch_too_large(client, version, settings):
    settings.MAX_PREDICT_BATCH = 3
    response = client.post(BATCH.format(slug="diagnosis"), {"records": [COLD_FEATURES] * 4}, format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["limit"]) == ("batch_too_large", 3)
    assert not Prediction.objects.exists()
    exactly = client.post(BATCH.format(slug="diagnosis"), {"records": [COLD_FEATURES] * 3}, format="json")
    assert exactly.status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [({"records": []}, "empty_batch"), ({"records": {"a": 1}}, "invalid_batch"), ({}, "invalid_batch")],
)
def test_a_malformed_batch_is_400(client, version, body, code):
    response = client.post(BATCH.format(slug="diagnosis"), body, format="json")
    assert (response.status_code, response.json()["code"]) == (400, code)


def test_one_bad_record_refuses_the_whole_batch_naming_its_index(client, version):
    records = [COLD_FEATURES, {"findings": {"spo2": "low"}}]
    response = client.post(BATCH.format(slug="diagnosis"), {"records": records}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["index"], body["field"]) == ("invalid_record", 1, "records[1].findings[0]")
    assert not Prediction.objects.exists()


def test_the_batch_endpoint_takes_a_body_above_the_default_limit(client, version, settings):
    settings.MAX_REQUEST_BODY_BYTES = 2000
    records = [COLD_FEATURES] * 30
    assert len(json.dumps({"records": records})) > 2000
    response = client.post(BATCH.format(slug="diagnosis"), {"records": records}, format="json")
    assert response.status_code == 200
    assert predict(client, {**COLD_FEATURES, "padding": "x" * 3000}).status_code == 413


def test_without_an_active_version_batch_predict_is_409(client):
    served_version(activate=False)
    response = client.post(BATCH.format(slug="diagnosis"), {"records": [COLD_FEATURES]}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "no_active_version")


# --- The log holds no identifier ------------------------------------------------------------------


def test_the_prediction_log_and_logs_hold_no_raw_identifier_of_the_request(client, version, caplog):
    record = record_dict(findings=PNEUMONIA_FEATURES["findings"], symptoms=["cough", "fever"])
    record["note"] = f"{record['patient']['name']} seen today, SSN {record['patient']['ssn']}."
    record["hospital_extra"] = {"bed": "ward 7 bed 3"}
    subject_key = f"{record['patient']['mrn']}/encounter-{record['external_id']}"
    identifiers = [
        subject_key,
        record["external_id"],
        record["note"],
        "617-555-0100",
        "ward 7 bed 3",
        *(str(value) for key, value in record["patient"].items() if key != "sex"),
    ]
    caplog.set_level(logging.DEBUG)

    single = predict(client, {**record, "subject_key": subject_key})
    batch = client.post(
        BATCH.format(slug="diagnosis"), {"records": [{**record, "subject_key": subject_key}]}, format="json"
    )
    bad = predict(client, {**record, "findings": {"spo2": record["patient"]["mrn"]}})
    # A symptom holding a phone number is not in the dictionary's vocabulary: refused, by position.
    bad_symptom = predict(client, {**record, "symptoms": ["cough", "call 617-555-0100"]})

    assert (single.status_code, batch.status_code, bad.status_code, bad_symptom.status_code) == (200, 200, 400, 400)
    assert bad_symptom.json()["code"] == "unknown_findings"
    stored = json.dumps(list(Prediction.objects.values()), default=str)
    answers = json.dumps([single.json(), batch.json(), bad.json(), bad_symptom.json()])
    logged = caplog.text
    for identifier in identifiers:
        assert identifier not in stored
        assert identifier not in answers
        assert identifier not in logged
    rows = list(Prediction.objects.all())
    assert len(rows) == 2
    assert rows[0].subject_pseudonym == rows[1].subject_pseudonym  # the same subject, one pseudonym
    assert rows[0].input_sha256 == rows[1].input_sha256


def test_the_same_subject_key_always_gets_the_same_pseudonym_and_others_differ():
    first = prediction_input({"subject_key": "enc-1"}).subject_pseudonym
    assert first == prediction_input({"subject_key": "enc-1"}).subject_pseudonym
    assert first != prediction_input({"subject_key": "enc-2"}).subject_pseudonym
    assert prediction_input({}).subject_pseudonym == ""


# --- Reloading is per process ----------------------------------------------------------------------


def test_a_cold_process_reloads_the_table_and_the_model_once(client, version):
    predict(client, PNEUMONIA_FEATURES)
    reset_serving_state()
    loads_before = MODEL_CACHE.loads
    predict(client, PNEUMONIA_FEATURES)
    predict(client, PNEUMONIA_FEATURES)
    assert MODEL_CACHE.loads == loads_before + 1


def test_a_tampered_artifact_is_refused_before_loading_and_the_refusal_is_audited(client, version):
    from django.core.files.storage import default_storage

    from models_registry.registry.models import ArtifactRejection

    with default_storage.open(version.artifact, "rb") as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0x01  # one byte
    with open(default_storage.path(version.artifact), "wb") as handle:
        handle.write(bytes(data))

    response = predict(client, PNEUMONIA_FEATURES)

    assert response.status_code == 409
    assert response.json()["code"] == "artifact_integrity"
    assert ArtifactRejection.objects.filter(version=version, purpose="serving", code="artifact_integrity").exists()
    assert not Prediction.objects.exists()
    assert len(MODEL_CACHE) == 0


def test_a_cache_flush_between_two_activations_never_lets_a_stale_table_look_current(client, version):
    from django.core.cache import cache

    from models_registry.generation import bump_generation, current_generation

    predict(client, PNEUMONIA_FEATURES)
    cache.clear()
    first = bump_generation()  # an activation after a flush
    predict(client, PNEUMONIA_FEATURES)  # this process's table is now tagged `first`
    cache.clear()
    second = bump_generation()  # another activation after another flush
    assert second != first
    assert current_generation() == second


def test_a_lost_generation_is_read_again_from_the_clock_not_from_a_small_constant():
    from django.core.cache import cache

    from models_registry.generation import GENERATION_KEY, current_generation

    before = current_generation()
    cache.delete(GENERATION_KEY)  # evicted, or a flush
    after = current_generation()
    assert after > 10**15  # microseconds since 1970: no old small value is met again
    assert after != before


def test_throttle_counters_never_touch_the_serving_generations_cache(client, version, settings):
    import learning_engine.settings as configured

    for caches in (configured.CACHES, settings.CACHES):  # as deployed, and in this test
        assert caches["throttle"]["LOCATION"] != caches["default"]["LOCATION"]
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "1000/min"}
    predict(client, PNEUMONIA_FEATURES)  # warm: routing and the generation are in the cache
    default_dir = Path(settings.CACHES["default"]["LOCATION"])
    before = sorted(default_dir.glob("*.djcache"))

    for _ in range(3):
        predict(client, PNEUMONIA_FEATURES)

    assert sorted(default_dir.glob("*.djcache")) == before
    # Without Redis the predict counter is this process's own (settings.THROTTLE_LOCAL_SCOPES).
    from django.core.cache import caches as cache_handler

    alias = "throttle_local" if "predict" in settings.THROTTLE_LOCAL_SCOPES else "throttle"
    counters = cache_handler[alias]
    assert [key for key in counters._cache if "throttle:predict:" in key]  # type: ignore[attr-defined]
