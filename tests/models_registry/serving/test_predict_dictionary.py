"""Predict checks records against the cohort's data dictionary (issue 11, "Predict").

The served model type's cohort is ``respiratory``, whose shipped dictionary has eight model input
findings (``cases/dictionaries/respiratory.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import TestCase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases.dictionary.checking import current_dictionary
from cases.models import DataDictionary
from cases.rows import ALL_INPUTS
from models_registry.models import ModelVersion, Prediction
from models_registry.serving.inputs import MIN_COMPLETENESS
from tests.models_registry.serving.factories import (
    PNEUMONIA_FEATURES,
    served_version,
)
from tests.training.factories import ModelTypeFactory
from training.artifacts import load_artifact
from training.tasks import model_inputs

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/{slug}/predict/"
BATCH = "/api/v1/model-types/{slug}/predict/batch/"
MODEL_INPUTS = tuple(PNEUMONIA_FEATURES["findings"])


def _current(slug: str) -> DataDictionary:
    dictionary = current_dictionary(slug)
    assert dictionary is not None, f"no published dictionary for {slug}"
    return dictionary


def predict(client, body, slug="diagnosis"):
    return client.post(PREDICT.format(slug=slug), body, format="json")


def without(*keys: str) -> dict:
    return {
        **PNEUMONIA_FEATURES,
        "findings": {k: v for k, v in PNEUMONIA_FEATURES["findings"].items() if k not in keys},
    }


def test_the_respiratory_dictionary_has_the_eight_inputs_these_tests_send():
    assert _current("respiratory").parsed.model_findings == MODEL_INPUTS


def test_a_complete_record_is_answered_with_the_dictionary_version_and_full_completeness(client, version):
    response = predict(client, PNEUMONIA_FEATURES)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dictionary_version"] == _current("respiratory").version
    assert (body["completeness"], body["imputed"], body["warnings"]) == (1.0, [], [])


def test_an_unknown_finding_is_400_unknown_findings_by_position_without_the_key(client, version):
    record = {**PNEUMONIA_FEATURES, "findings": {**PNEUMONIA_FEATURES["findings"], "smith_bp": 120}}

    response = predict(client, record)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unknown_findings"
    assert body["unknown"] == [{"field": "findings", "position": 8}]
    assert "smith_bp" not in json.dumps(body)
    assert not Prediction.objects.exists()


def test_an_unknown_symptom_is_400_unknown_findings_by_position(client, version):
    response = predict(client, {**PNEUMONIA_FEATURES, "symptoms": ["cough", "mrn 12345"]})

    assert (response.status_code, response.json()["code"]) == (400, "unknown_findings")
    assert response.json()["unknown"] == [{"field": "symptoms", "position": 1}]
    assert "12345" not in json.dumps(response.json())


def test_a_missing_model_input_is_400_missing_findings_listing_them(client, version):
    response = predict(client, without("crp", "nt_probnp"))

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "missing_findings"
    assert body["missing"] == ["crp", "nt_probnp"]
    assert body["completeness"] == 0.75
    assert not Prediction.objects.exists()


def test_the_empty_record_is_never_answered(client, version):
    assert predict(client, {}).json()["code"] == "missing_findings"
    response = predict(client, {"allow_missing": True})
    assert (response.status_code, response.json()["code"]) == (400, "too_few_findings")
    assert not Prediction.objects.exists()


def test_allow_missing_answers_with_the_imputed_inputs_and_the_completeness(client, version):
    response = predict(client, {**without("crp", "nt_probnp", "systolic_bp"), "allow_missing": True})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["imputed"] == ["systolic_bp", "crp", "nt_probnp"]
    assert body["completeness"] == 0.625
    assert Prediction.objects.filter(pk=body["id"]).exists()


def test_allow_missing_still_needs_half_the_inputs(client, version):
    assert MIN_COMPLETENESS == 0.5
    four = predict(client, {**without(*MODEL_INPUTS[:4]), "allow_missing": True})
    three = predict(client, {**without(*MODEL_INPUTS[:5]), "allow_missing": True})

    assert four.status_code == 200
    assert (three.status_code, three.json()["code"]) == (400, "too_few_findings")


def test_allow_missing_must_be_a_boolean(client, version):
    response = predict(client, {**PNEUMONIA_FEATURES, "allow_missing": "yes"})
    assert (response.status_code, response.json()["field"]) == (400, "allow_missing")


def test_a_value_outside_the_hard_limits_is_400_with_the_dictionarys_code(client, version):
    record = {**PNEUMONIA_FEATURES, "findings": {**PNEUMONIA_FEATURES["findings"], "spo2": 150}}

    response = predict(client, record)

    assert response.status_code == 400
    assert response.json()["code"] == "outside_hard_limits"
    assert response.json()["field"] == "findings.spo2"
    assert "150" not in response.json()["detail"]
    assert not Prediction.objects.exists()


def test_a_value_outside_the_expected_range_is_answered_with_an_out_of_range_warning(client, version):
    record = {**PNEUMONIA_FEATURES, "findings": {**PNEUMONIA_FEATURES["findings"], "heart_rate": 300}}

    response = predict(client, record)

    assert response.status_code == 200, response.json()
    warnings = response.json()["warnings"]
    assert [(w["code"], w["field"]) for w in warnings] == [("out_of_range", "findings.heart_rate")]


def test_a_batch_reports_the_first_refused_record_with_its_index(client, version):
    records = [PNEUMONIA_FEATURES, without("wbc")]

    response = client.post(BATCH.format(slug="diagnosis"), {"records": records}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["index"], body["field"], body["missing"]) == (
        "missing_findings",
        1,
        "records[1].findings",
        ["wbc"],
    )
    assert not Prediction.objects.exists()


def test_a_batch_allow_missing_is_the_default_of_its_records(client, version):
    records = [PNEUMONIA_FEATURES, without("wbc"), {**without("wbc"), "allow_missing": False}]

    refused = client.post(BATCH.format(slug="diagnosis"), {"records": records, "allow_missing": True}, format="json")
    answered = client.post(
        BATCH.format(slug="diagnosis"), {"records": records[:2], "allow_missing": True}, format="json"
    )

    assert (refused.status_code, refused.json()["index"]) == (400, 2)
    assert answered.status_code == 200
    assert [item["imputed"] for item in answered.json()] == [[], ["wbc"]]


def test_a_cohort_without_a_published_dictionary_is_served_as_before(client):
    served_version(model_type=ModelTypeFactory.create(slug="undictionaried", cohort="no-dictionary-yet"))

    response = predict(client, {"findings": {"anything": 1.0}}, slug="undictionaried")

    assert response.status_code == 200, response.json()
    assert "completeness" not in response.json()


def test_publishing_a_new_version_leaves_a_served_version_on_its_own(client, version, lead):
    assert predict(client, PNEUMONIA_FEATURES).status_code == 200
    current = _current("respiratory")
    assert version.dictionary == current
    definition = json.loads(json.dumps(current.definition))
    for finding in definition["findings"]:
        if finding["key"] == "nt_probnp":
            finding["used_by_model"] = False
    with TestCase.captureOnCommitCallbacks(execute=True):
        draft = current.copy(by=lead)
        draft.edit(definition, by=lead)
        draft.publish(by=lead)

    response = predict(client, without("nt_probnp"))

    # The version was trained with nt_probnp as an input: it still needs it.
    assert (response.status_code, response.json()["code"]) == (400, "missing_findings")
    assert response.json()["dictionary_version"] == current.version


def test_a_version_that_recorded_no_dictionary_uses_the_current_one_and_the_next_after_a_publication(
    client, version, lead
):
    ModelVersion.objects.filter(pk=version.pk).update(dictionary=None)  # as if its cohort had none then
    current = _current("respiratory")
    assert predict(client, PNEUMONIA_FEATURES).json()["dictionary_version"] == current.version
    definition = json.loads(json.dumps(current.definition))
    for finding in definition["findings"]:
        if finding["key"] == "nt_probnp":
            finding["used_by_model"] = False
    with TestCase.captureOnCommitCallbacks(execute=True):
        draft = current.copy(by=lead)
        draft.edit(definition, by=lead)
        draft.publish(by=lead)

    response = predict(client, PNEUMONIA_FEATURES)

    assert response.status_code == 200, response.json()
    assert response.json()["dictionary_version"] == draft.version
    # The artifact reads nt_probnp, so it stays required whatever the new version marks
    # (tests/models_registry/serving/test_predict_dictionary_edges.py).
    assert predict(client, without("nt_probnp")).json()["missing"] == ["nt_probnp"]


# The hard limits of the shipped respiratory dictionary: any value the record may carry.
_LIMITS = {
    item["key"]: (item["hard_limits"]["min"], item["hard_limits"]["max"])
    for item in json.loads((Path(__file__).parents[3] / "cases/dictionaries/respiratory.json").read_text())[
        "dictionary"
    ]["findings"]
}


@st.composite
def records_missing_an_input(draw: st.DrawFn) -> tuple[dict, set[str]]:
    """A record with any values within the hard limits, one or more model inputs left out, and
    sometimes an explicit "allow_missing": false, age, sex or symptoms."""
    dropped = draw(st.sets(st.sampled_from(MODEL_INPUTS), min_size=1))
    findings = {
        key: draw(st.floats(min_value=low, max_value=high, allow_nan=False))
        for key, (low, high) in _LIMITS.items()
        if key not in dropped
    }
    record: dict = {"findings": findings}
    if draw(st.booleans()):
        record["allow_missing"] = False
    if draw(st.booleans()):
        record["age"] = draw(st.integers(min_value=0, max_value=120))
    if draw(st.booleans()):
        record["sex"] = draw(st.sampled_from(["female", "male"]))
    if draw(st.booleans()):
        record["symptoms"] = draw(st.lists(st.sampled_from(["cough", "fever", "dyspnea"]), unique=True))
    return record, dropped


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=records_missing_an_input())
def test_predict_never_answers_a_record_missing_a_model_input(client, version, case):
    record, dropped = case

    response = predict(client, record)

    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "missing_findings"
    assert set(response.json()["missing"]) == dropped
    assert not Prediction.objects.exists()


# --- Demographics the dictionary marks unused (breast-mass: age and sex) ---------------------------


def _publish_without_demographics(lead) -> DataDictionary:
    current = _current("respiratory")
    definition = json.loads(json.dumps(current.definition))
    definition["demographics"] = {"age": False, "sex": False}
    with TestCase.captureOnCommitCallbacks(execute=True):
        draft = current.copy(by=lead)
        draft.edit(definition, by=lead)
        draft.publish(by=lead)
    return draft


def _layout(version) -> tuple[list[str], list[str]]:
    """A version's own feature layout: its numeric features and its vectorizer's names."""
    artifact = load_artifact(version.artifact, version.artifact_sha256)
    return artifact.numeric_features, list(artifact.pipeline[0].get_feature_names_out())


def _demographic(name: str) -> bool:
    return name == "age" or name.startswith(("age_band=", "sex="))


def test_a_version_trained_under_a_dictionary_without_demographics_needs_and_reads_neither(client, lead):
    _publish_without_demographics(lead)
    version = served_version(inputs=model_inputs("respiratory"))
    numeric, names = _layout(version)
    assert "age" not in numeric
    assert not [name for name in names if _demographic(name)]
    bare = {key: value for key, value in PNEUMONIA_FEATURES.items() if key not in ("age", "sex")}

    response = predict(client, bare)
    other_demographics = predict(client, {**bare, "age": 19, "sex": "male"})

    assert response.status_code == 200, response.json()
    assert (response.json()["completeness"], response.json()["imputed"]) == (1.0, [])
    assert other_demographics.json()["probabilities"] == response.json()["probabilities"]


def test_a_version_trained_with_age_still_predicts_with_it_after_the_dictionary_drops_it(client, lead):
    version = served_version()  # trained on every input, before the dictionary said otherwise
    numeric, names = _layout(version)
    assert numeric[0] == "age"
    assert any(name.startswith("sex=") for name in names)
    _publish_without_demographics(lead)

    young = predict(client, {**PNEUMONIA_FEATURES, "age": 19})
    old = predict(client, {**PNEUMONIA_FEATURES, "age": 89})
    no_age = predict(client, {key: value for key, value in PNEUMONIA_FEATURES.items() if key != "age"})

    assert young.status_code == old.status_code == no_age.status_code == 200, no_age.json()
    assert young.json()["model_version"] == version.version
    # It still reads the age it was trained with, and imputes it when a record has none.
    assert young.json()["probabilities"] != old.json()["probabilities"]


def test_training_follows_the_cohorts_dictionary_breast_mass_without_age_respiratory_with_age_and_sex():
    assert model_inputs("breast-mass").demographics == frozenset()
    assert model_inputs("respiratory").demographics == frozenset({"age", "sex"})
    assert model_inputs("no-dictionary-yet") == ALL_INPUTS
