"""Predict answers a FHIR RiskAssessment with ``?format=fhir`` or ``Accept: application/fhir+json``
(issue 17, "Predictions where clinicians work")."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from learning_engine import roles
from models_registry.models import Prediction
from tests.conftest import jwt_client
from tests.models_registry.serving.factories import (
    COLD,
    PNEUMONIA,
    PNEUMONIA_FEATURES,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/diagnosis/predict/"


def test_format_fhir_answers_a_valid_risk_assessment_with_one_prediction_per_diagnosis(client, version):
    body = {**PNEUMONIA_FEATURES, "subject_key": "Patient/pt-17"}
    plain = client.post(PREDICT, body, format="json").json()
    response = client.post(f"{PREDICT}?format=fhir", body, format="json")

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    resource = response.json()
    RiskAssessment.model_validate(resource)  # fhir.resources takes it
    assert resource["resourceType"] == "RiskAssessment"
    assert resource["status"] == "final"
    assert resource["subject"] == {"reference": "Patient/pt-17"}
    outcomes = [(p["outcome"]["coding"][0]["code"], p["probabilityDecimal"]) for p in resource["prediction"]]
    assert {code for code, _ in outcomes} == {PNEUMONIA, COLD} == set(plain["probabilities"])
    assert outcomes[0][0] == plain["diagnosis"]["code"] == PNEUMONIA
    assert [p for _, p in outcomes] == sorted((p for _, p in outcomes), reverse=True)
    for code, probability in outcomes:
        assert probability == pytest.approx(plain["probabilities"][code], abs=1e-6)
    assert resource["prediction"][0]["outcome"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"
    assert resource["prediction"][0]["outcome"]["text"] == "Pneumonia, unspecified organism"
    # The prediction is logged like any other, and the resource names it (the id feedback takes).
    logged = Prediction.objects.latest("id")
    assert resource["identifier"][0]["value"] == str(logged.pk)
    assert resource["method"]["coding"][0]["code"] == f"diagnosis/{version.version}"


def test_the_accept_header_chooses_fhir_too(client, version):
    body = {**PNEUMONIA_FEATURES, "subject_key": "Patient/pt-17"}
    response = client.post(PREDICT, body, format="json", HTTP_ACCEPT="application/fhir+json")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "RiskAssessment"


def test_a_subject_key_that_is_no_reference_becomes_an_identifier(client, version):
    body = {**PNEUMONIA_FEATURES, "subject_key": "encounter 2026-0042"}
    resource = client.post(f"{PREDICT}?format=fhir", body, format="json").json()
    assert resource["subject"] == {"type": "Patient", "identifier": {"value": "encounter 2026-0042"}}
    RiskAssessment.model_validate(resource)


def test_without_a_subject_key_it_is_400_subject_required_and_nothing_is_logged(client, version):
    response = client.post(f"{PREDICT}?format=fhir", PNEUMONIA_FEATURES, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "subject_required"
    assert not Prediction.objects.exists()


def test_imputed_findings_and_range_warnings_are_notes(client, version):
    findings = {k: v for k, v in PNEUMONIA_FEATURES["findings"].items() if k != "crp"}
    findings["temperature_c"] = 43.5  # outside the training range, inside the hard limits
    body = {**PNEUMONIA_FEATURES, "findings": findings, "allow_missing": True, "subject_key": "Patient/a"}
    resource = client.post(f"{PREDICT}?format=fhir", body, format="json").json()
    texts = " ".join(note["text"] for note in resource["note"])
    assert "crp" in texts
    assert "Body temperature" in texts


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD, roles.PRIVACY_OFFICER, None])
def test_a_user_without_the_predict_permission_is_refused_in_fhir_too(make_user, version, role):
    body = {**PNEUMONIA_FEATURES, "subject_key": "Patient/a"}
    response = jwt_client(make_user(role)).post(f"{PREDICT}?format=fhir", body, format="json")
    assert response.status_code == 403
    assert not Prediction.objects.exists()


# --- A FHIR Parameters body ---------------------------------------------------------------------


def parameters() -> tuple[str, dict[str, Any]]:
    """(patient id, a Parameters body): the Patient and the Observations of tests.cds_hooks.calls."""
    from tests.cds_hooks.calls import prefetch

    patient_id, data = prefetch()
    found = [entry["resource"] for key, bundle in data.items() if key != "patient" for entry in bundle["entry"]]
    parameter = [{"name": "patient", "resource": data["patient"]}]
    parameter += [{"name": "observation", "resource": item} for item in found]
    return patient_id, {"resourceType": "Parameters", "parameter": parameter}


def post_fhir(client, body, query=""):
    import json

    return client.post(f"{PREDICT}{query}", json.dumps(body), content_type="application/fhir+json")


def test_a_parameters_body_predicts_as_the_same_json_record_does(client, version):
    import datetime as dt

    from django.utils import timezone

    from cases.quality import age_at
    from tests.cds_hooks.calls import PATIENT_RECORD

    patient_id, body = parameters()
    answer = post_fhir(client, body)
    assert answer.status_code == 200, answer.content
    born = dt.date.fromisoformat(PATIENT_RECORD["patient"]["birth_date"])
    record = {"findings": PNEUMONIA_FEATURES["findings"], "age": age_at(born, timezone.localdate()), "sex": "female"}
    plain = client.post(PREDICT, record, format="json").json()
    assert answer.json()["probabilities"] == pytest.approx(plain["probabilities"])
    # ... and answers a RiskAssessment whose subject is the Patient.
    resource = post_fhir(client, body, "?format=fhir").json()
    assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
    RiskAssessment.model_validate(resource)


def test_a_parameters_body_with_a_bundle_of_observations_is_read_too(client, version):
    _, body = parameters()
    observations = [p["resource"] for p in body["parameter"][1:]]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in observations]}
    body["parameter"][1:] = [{"name": "observation", "resource": bundle}]
    assert post_fhir(client, body).status_code == 200


def test_missing_observations_need_allow_missing_as_a_json_record_does(client, version):
    _, body = parameters()
    body["parameter"] = body["parameter"][:-2]
    assert post_fhir(client, body).json()["code"] == "missing_findings"
    body["parameter"].append({"name": "allow_missing", "valueBoolean": True})
    assert post_fhir(client, body).json()["imputed"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda body: body.update(resourceType="Bundle"), "invalid_parameters"),
        (lambda body: body["parameter"].pop(0), "invalid_parameters"),  # no patient: no subject
        (lambda body: body["parameter"].append({"name": "Ada Quinn", "valueString": "x"}), "invalid_parameters"),
        (lambda body: body["parameter"][1]["resource"]["subject"].update(reference="Patient/other"), "wrong_patient"),
        (lambda body: body["parameter"][1]["resource"]["subject"].update(reference=17), "wrong_patient"),
        (lambda body: body["parameter"][1].update(resource=["not", "a", "resource"]), "invalid_parameters"),
        (lambda body: body["parameter"][0].update(resource="Patient/1"), "invalid_parameters"),
        (lambda body: body["parameter"][1]["resource"]["valueQuantity"].update(value="high"), "invalid_parameters"),
    ],
)
def test_a_parameters_body_out_of_shape_is_400_and_logs_nothing(client, version, change, code):
    _, body = parameters()
    change(body)
    response = post_fhir(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert "Ada Quinn" not in response.content.decode()
    assert not Prediction.objects.exists()


def test_a_parameters_body_of_more_observations_than_the_cap_is_400_before_any_is_read(client, version, monkeypatch):
    from cases.fhir import resources
    from models_registry.serving.fhir_input import MAX_OBSERVATIONS

    _, body = parameters()
    observation = body["parameter"][1]["resource"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": observation}] * MAX_OBSERVATIONS}
    body["parameter"][1:] = [{"name": "observation", "resource": bundle}, body["parameter"][1]]
    read: list[str] = []
    original = resources.validate_elements

    def counted(elements: Any, resource_type: str) -> Any:
        read.append(resource_type)
        return original(elements, resource_type)

    monkeypatch.setattr(resources, "validate_elements", counted)
    response = post_fhir(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameters"
    assert read == ["Patient"]  # no Observation read
    assert not Prediction.objects.exists()
