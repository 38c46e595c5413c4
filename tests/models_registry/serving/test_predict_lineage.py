"""Predict checks each record against the dictionary version its model version was trained under,
warns against the version's training ranges, and names the diagnosis as that version does (issue 11).

The served model type's cohort is ``respiratory`` (the shipped dictionary, version 1 in the test
database). A version registered while v1 is current records v1; publishing v2 (one more finding,
``lactate``, and another display name for J18.9) changes nothing for it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import TestCase
from drf_spectacular.generators import SchemaGenerator

from cases.dictionary.checking import current_dictionary
from cases.models import DataDictionary
from learning_engine import roles
from models_registry.models import Prediction
from models_registry.serving.inputs import subject_pseudonym
from models_registry.serving.router import ROUTER, assign_b
from tests.models_registry.experiments.factories import start_test
from tests.models_registry.serving.factories import (
    COLD_FEATURES,
    PNEUMONIA,
    PNEUMONIA_FEATURES,
    max_data_queries,
    served_version,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/diagnosis/predict/"
BATCH = "/api/v1/model-types/diagnosis/predict/batch/"
V2_PNEUMONIA_NAME = "Pneumonia (dictionary version 2)"


@pytest.fixture
def v1() -> DataDictionary:
    dictionary = current_dictionary("respiratory")
    assert dictionary is not None
    return dictionary


def publish_v2(v1: DataDictionary, *, by: Any) -> DataDictionary:
    """v2 of respiratory: a ninth finding (``lactate``, not a model input) and J18.9 renamed."""
    definition = json.loads(json.dumps(v1.definition))
    definition["findings"].append(
        {
            "key": "lactate",
            "display_name": "Lactate",
            "unit": "mmol/L",
            "value_type": "number",
            "hard_limits": {"min": 0, "max": 50},
            "expected_range": {"min": 0.2, "max": 20},
            "used_by_model": False,
        }
    )
    for diagnosis in definition["diagnoses"]:
        if diagnosis["code"] == PNEUMONIA:
            diagnosis["display_name"] = V2_PNEUMONIA_NAME
    with TestCase.captureOnCommitCallbacks(execute=True):  # the publication bumps the serving generation
        draft = v1.copy(by=by)
        draft.edit(definition, by=by)
        draft.publish(by=by)
    return draft


def predict(client: Any, body: dict[str, Any]) -> Any:
    return client.post(PREDICT, body, format="json")


def with_findings(**findings: float) -> dict[str, Any]:
    return {**PNEUMONIA_FEATURES, "findings": {**PNEUMONIA_FEATURES["findings"], **findings}}


def subject_for(test_id: int, arm: str, split: float = 0.5) -> str:
    """A subject key the split test ``test_id`` sends to ``arm``."""
    for index in range(1000):
        key = f"subject-{index}"
        if assign_b(test_id, subject_pseudonym(key), split) == (arm == "b"):
            return key
    raise AssertionError("no subject key found")


# --- A version answers under its own dictionary version ---------------------------------------------


def test_a_version_records_the_version_current_at_registration(v1):
    assert served_version().dictionary == v1


def test_a_version_trained_under_v1_keeps_answering_under_v1_after_v2_is_published(client, v1, lead):
    served_version()
    assert predict(client, PNEUMONIA_FEATURES).json()["dictionary_version"] == v1.version
    v2 = publish_v2(v1, by=lead)

    answered = predict(client, PNEUMONIA_FEATURES)
    with_lactate = predict(client, with_findings(lactate=2.1))

    assert answered.status_code == 200, answered.json()
    assert answered.json()["dictionary_version"] == v1.version != v2.version
    # A finding v2 added is not in v1: unknown for this version, by position, never by name.
    assert with_lactate.status_code == 400
    body = with_lactate.json()
    assert (body["code"], body["unknown"]) == ("unknown_findings", [{"field": "findings", "position": 8}])
    assert (body["cohort"], body["dictionary_version"]) == ("respiratory", v1.version)
    assert "lactate" not in json.dumps(body)


def test_a_version_registered_after_v2_answers_under_v2(client, v1, lead):
    v2 = publish_v2(v1, by=lead)
    version = served_version()

    response = predict(client, with_findings(lactate=2.1))

    assert version.dictionary == v2
    assert response.status_code == 200, response.json()
    assert response.json()["dictionary_version"] == v2.version


def test_each_arm_of_an_ab_test_checks_against_its_own_dictionary_version(client, v1, lead, make_user):
    engineer = make_user(roles.ML_ENGINEER)
    a = served_version(lead=lead, engineer=engineer)
    v2 = publish_v2(v1, by=lead)
    b = served_version(model_type=a.model_type, lead=lead, engineer=engineer, activate=False, seed=1)
    test = start_test(a, b, by=engineer, traffic_split=0.5)
    to_a, to_b = subject_for(test.pk, "a"), subject_for(test.pk, "b")

    refused_by_a = predict(client, {**with_findings(lactate=2.1), "subject_key": to_a})
    answered_by_b = predict(client, {**with_findings(lactate=2.1), "subject_key": to_b})
    answered_by_a = predict(client, {**PNEUMONIA_FEATURES, "subject_key": to_a})

    assert (refused_by_a.status_code, refused_by_a.json()["dictionary_version"]) == (400, v1.version)
    assert answered_by_b.status_code == 200, answered_by_b.json()
    assert (answered_by_b.json()["arm"], answered_by_b.json()["dictionary_version"]) == ("b", v2.version)
    assert (answered_by_a.json()["arm"], answered_by_a.json()["dictionary_version"]) == ("a", v1.version)
    assert Prediction.objects.count() == 2


def test_a_batch_split_between_arms_is_refused_at_its_first_record_its_arm_refuses(client, v1, lead, make_user):
    engineer = make_user(roles.ML_ENGINEER)
    a = served_version(lead=lead, engineer=engineer)
    publish_v2(v1, by=lead)
    b = served_version(model_type=a.model_type, lead=lead, engineer=engineer, activate=False, seed=1)
    test = start_test(a, b, by=engineer, traffic_split=0.5)
    records = [
        {**with_findings(lactate=2.1), "subject_key": subject_for(test.pk, "b")},
        {**with_findings(lactate=2.1), "subject_key": subject_for(test.pk, "a")},
    ]

    response = client.post(BATCH, {"records": records}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["index"], body["field"]) == ("unknown_findings", 1, "records[1].findings")
    assert not Prediction.objects.exists()


def test_a_shadow_arm_predicts_only_the_records_its_own_dictionary_version_takes(client, v1, lead, make_user):
    engineer = make_user(roles.ML_ENGINEER)
    b = served_version(lead=lead, engineer=engineer, activate=False)  # trained under v1
    publish_v2(v1, by=lead)
    a = served_version(model_type=b.model_type, lead=lead, engineer=engineer, seed=1)  # under v2, answering
    start_test(a, b, by=engineer, mode="shadow")

    with_lactate = predict(client, with_findings(lactate=2.1))
    plain = predict(client, COLD_FEATURES)

    assert (with_lactate.status_code, plain.status_code) == (200, 200)
    shadowed = set(Prediction.objects.filter(shadow_of__isnull=False).values_list("shadow_of_id", flat=True))
    assert shadowed == {plain.json()["id"]}  # B's version (v1) does not know lactate: no shadow row


# --- out_of_range from the training ranges --------------------------------------------------------------


def test_out_of_range_is_judged_against_the_versions_training_range(client):
    version = served_version()
    trained = version.training_ranges["findings.heart_rate"]
    low, high = trained["min"], trained["max"]
    assert 20 < low < high < 200  # within the dictionary's expected range (20 to 250)

    outside_training = predict(client, with_findings(heart_rate=200))
    outside_expected_only = predict(client, with_findings(spo2=40.0))  # expected 50..100; trained ~86..101

    warnings = outside_training.json()["warnings"]
    assert [(w["code"], w["field"], w["basis"]) for w in warnings] == [
        ("out_of_range", "findings.heart_rate", "training_range")
    ]
    assert f"({low:g} to {high:g} /min)" in warnings[0]["message"]
    assert "200" not in warnings[0]["message"]
    assert [w["field"] for w in outside_expected_only.json()["warnings"]] == ["findings.spo2"]
    assert version.training_ranges["findings.spo2"]["min"] > 40


def test_an_out_of_range_warning_prints_its_unit_as_people_write_it(client):
    version = served_version()
    trained = version.training_ranges["findings.temperature_c"]
    assert trained["max"] < 46

    warnings = predict(client, with_findings(temperature_c=46.0)).json()["warnings"]

    assert [w["field"] for w in warnings] == ["findings.temperature_c"]
    assert warnings[0]["message"].endswith(f"({trained['min']:g} to {trained['max']:g} °C).")  # UCUM "Cel"


def test_a_value_inside_the_training_range_is_no_warning_even_outside_the_expected_range(client):
    rows = [
        {
            "case_id": index + 1,
            "patient_pseudonym": f"p{index}",
            "label": PNEUMONIA if index % 2 == 0 else "J06.9",
            "label_text": "",
            "age": 40 + index,
            "age_band": "40-49",
            "sex": "female",
            "encounter_year": 2026,
            "findings": {
                **(PNEUMONIA_FEATURES if index % 2 == 0 else COLD_FEATURES)["findings"],
                "heart_rate": 10 + index * 10,  # 10 to 400: beyond the expected range (20 to 250)
            },
            "symptoms": ["cough"],
        }
        for index in range(40)
    ]
    version = served_version(rows=rows)
    assert version.training_ranges["findings.heart_rate"]["min"] == 10

    response = predict(client, {**with_findings(heart_rate=15), "age": 50})

    assert response.status_code == 200, response.json()
    assert response.json()["warnings"] == []


def test_an_age_outside_the_training_range_is_warned_about(client):
    version = served_version()
    oldest = version.training_ranges["age"]["max"]

    response = predict(client, {**PNEUMONIA_FEATURES, "age": 5})

    assert oldest < 90
    assert [(w["field"], w["basis"]) for w in response.json()["warnings"]] == [("age", "training_range")]


def test_a_version_without_training_ranges_falls_back_to_the_expected_range_and_says_so(client):
    version = served_version(record_ranges=False)
    assert version.training_ranges == {}

    inside_expected = predict(client, with_findings(heart_rate=200))
    outside_expected = predict(client, with_findings(heart_rate=300))

    assert inside_expected.json()["warnings"] == []
    assert [(w["field"], w["basis"]) for w in outside_expected.json()["warnings"]] == [
        ("findings.heart_rate", "expected_range")
    ]


# --- Display names ------------------------------------------------------------------------------------


def test_the_answer_names_the_diagnosis_as_the_versions_dictionary_does(client, v1, lead):
    served_version()
    v1_name = v1.parsed.diagnosis_name(PNEUMONIA)

    before = predict(client, PNEUMONIA_FEATURES).json()["diagnosis"]
    publish_v2(v1, by=lead)
    after = predict(client, PNEUMONIA_FEATURES).json()["diagnosis"]
    batch = client.post(BATCH, {"records": [PNEUMONIA_FEATURES]}, format="json").json()

    # label: the training data's text (this version has no dataset file, so the code itself).
    assert before == {"code": PNEUMONIA, "label": PNEUMONIA, "display_name": v1_name}
    assert v1_name == "Pneumonia, unspecified organism"
    assert after["display_name"] == v1_name  # not v2's name: the version was trained under v1
    assert batch[0]["diagnosis"]["display_name"] == v1_name


def test_a_version_registered_under_v2_uses_v2s_names(client, v1, lead):
    publish_v2(v1, by=lead)
    served_version()

    assert predict(client, PNEUMONIA_FEATURES).json()["diagnosis"]["display_name"] == V2_PNEUMONIA_NAME


def test_the_openapi_schema_documents_the_display_name_and_the_basis():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]

    assert "display_name" in components["Diagnosis"]["properties"]
    basis = components["PredictWarning"]["properties"]["basis"]
    assert basis["allOf"] == [{"$ref": "#/components/schemas/OutOfRangeBasisEnum"}]
    assert components["OutOfRangeBasisEnum"]["enum"] == ["training_range", "expected_range"]
    answers = schema["paths"]["/api/v1/model-types/{slug}/predict/"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["examples"]
    values = [example["value"] for example in answers.values()]
    assert all("display_name" in value["diagnosis"] for value in values)
    assert [w["basis"] for value in values for w in value["warnings"]] == ["training_range"]


# --- The cost ---------------------------------------------------------------------------------------------


def test_a_warm_ab_predict_under_two_dictionary_versions_costs_three_queries_and_reads_no_dictionary(
    client, v1, lead, make_user
):
    engineer = make_user(roles.ML_ENGINEER)
    a = served_version(lead=lead, engineer=engineer)
    publish_v2(v1, by=lead)
    b = served_version(model_type=a.model_type, lead=lead, engineer=engineer, activate=False, seed=1)
    test = start_test(a, b, by=engineer, traffic_split=0.5)
    to_a, to_b = subject_for(test.pk, "a"), subject_for(test.pk, "b")
    for key in (to_a, to_b):  # warm-up: the routing table and both models with their checks
        assert predict(client, {**PNEUMONIA_FEATURES, "subject_key": key}).status_code == 200
    reloads = ROUTER.reloads

    # Two queries and monitoring's input tallies (one INSERT, monitoring.recording.observe_inputs).
    with max_data_queries(3) as single:
        answered = predict(client, {**with_findings(heart_rate=200), "subject_key": to_b})
    with max_data_queries(3) as batch:
        client.post(BATCH, {"records": [{**COLD_FEATURES, "subject_key": k} for k in (to_a, to_b)] * 5}, format="json")

    assert answered.json()["warnings"][0]["basis"] == "training_range"
    assert ROUTER.reloads == reloads
    read = " ".join(query["sql"] for query in [*single.captured_queries, *batch.captured_queries])
    assert DataDictionary._meta.db_table not in read
    assert "models_registry_modelversion" not in read
