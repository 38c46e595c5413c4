"""Predict's dictionary check at its edges (issue 11): stored training ranges that are not two finite
numbers in order, an artifact that reads a finding its dictionary does not mark as a model input,
and a dictionary version whose models read no finding at all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import TestCase

from cases.dictionary.checking import current_dictionary
from cases.models import DataDictionary
from cases.rows import ModelInputs
from learning_engine import roles
from models_registry.models import ModelVersion, Prediction
from models_registry.serving.inputs import DictionaryCheck
from tests.conftest import jwt_client
from tests.models_registry.serving.factories import (
    PNEUMONIA_FEATURES,
    served_version,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/diagnosis/predict/"


def respiratory() -> DataDictionary:
    dictionary = current_dictionary("respiratory")
    assert dictionary is not None
    return dictionary


def publish_respiratory(change: Any, *, by: Any) -> DataDictionary:
    """A new published version of respiratory, its definition changed by ``change``."""
    definition = json.loads(json.dumps(respiratory().definition))
    change(definition)
    with TestCase.captureOnCommitCallbacks(execute=True):
        draft = respiratory().copy(by=by)
        draft.edit(definition, by=by)
        draft.publish(by=by)
    return draft


def without(*keys: str) -> dict[str, Any]:
    record = json.loads(json.dumps(PNEUMONIA_FEATURES))
    for key in keys:
        del record["findings"][key]
    return record


# --- Stored training ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bounds",
    [
        {"min": 0, "max": 10**400},  # what jsonb gives back for a stored 1e400: an integer, not inf
        {"min": -(10**400), "max": 5},
        {"min": float("nan"), "max": 5},
        {"min": 0, "max": float("inf")},
        {"min": 9, "max": 1},  # min above max: every value would be "outside"
        {"min": "0", "max": 5},
        {"min": True, "max": 5},
        {"min": None, "max": 5},
        [0, 5],
    ],
)
def test_a_stored_training_range_that_is_not_two_finite_numbers_in_order_is_left_out(bounds):
    check = DictionaryCheck.of(respiratory(), {"findings.crp": bounds, "findings.wbc": {"min": 4, "max": 20}})

    assert dict(check.training_ranges) == {"findings.wbc": (4.0, 20.0)}


def test_a_version_with_a_crafted_training_range_still_serves(client):
    version = served_version()
    ranges = {**version.training_ranges, "findings.crp": {"min": 0, "max": 10**400}}
    ModelVersion.objects.filter(pk=version.pk).update(training_ranges=ranges)

    answer = client.post(PREDICT, PNEUMONIA_FEATURES, format="json")

    assert answer.status_code == 200, answer.json()
    assert "findings.crp" not in {warning["field"] for warning in answer.json()["warnings"]}


@pytest.mark.parametrize("bounds", [{"min": 0, "max": 10**400}, {"min": "x", "max": 1}, [1, 2], {"max": 3}])
def test_a_version_s_api_page_leaves_a_crafted_training_range_out(make_user, bounds):
    version = served_version()
    ranges = {"findings.crp": bounds, "findings.wbc": {"min": 4, "max": 20}}
    ModelVersion.objects.filter(pk=version.pk).update(training_ranges=ranges)
    api = jwt_client(make_user(roles.ML_ENGINEER))

    answer = api.get(f"/api/v1/model-types/diagnosis/versions/{version.version}/")

    assert answer.status_code == 200, answer.content[:300]
    assert answer.json()["training_ranges"] == {"findings.wbc": {"min": 4.0, "max": 20.0}}


@pytest.mark.parametrize("ranges", [None, [], "x", 7])
def test_stored_training_ranges_that_are_not_an_object_are_none(ranges):
    assert dict(DictionaryCheck.of(respiratory(), ranges).training_ranges) == {}


# --- The artifact's own inputs -------------------------------------------------------------------------


def test_a_finding_the_artifact_reads_is_required_though_the_dictionary_marks_it_unused(client, make_user):
    def unused_nt_probnp(definition: dict[str, Any]) -> None:
        for finding in definition["findings"]:
            if finding["key"] == "nt_probnp":
                finding["used_by_model"] = False

    publish_respiratory(unused_nt_probnp, by=make_user(roles.CLINICAL_LEAD))
    served_version()  # trained on every finding, as an upload built from the snapshot's file may be

    refused = client.post(PREDICT, without("nt_probnp"), format="json")
    imputed = client.post(PREDICT, {**without("nt_probnp"), "allow_missing": True}, format="json")

    assert refused.status_code == 400, refused.json()
    assert refused.json()["code"] == "missing_findings"
    assert refused.json()["missing"] == ["nt_probnp"]
    assert imputed.status_code == 200, imputed.json()
    assert imputed.json()["imputed"] == ["nt_probnp"]
    assert imputed.json()["completeness"] == 0.875
    assert Prediction.objects.count() == 1


def test_a_version_without_its_own_dictionary_version_requires_what_its_artifact_reads(client, make_user):
    def unused_crp(definition: dict[str, Any]) -> None:
        for finding in definition["findings"]:
            if finding["key"] == "crp":
                finding["used_by_model"] = False

    version = served_version()
    # Registered before its cohort had a dictionary: checked against the current one (the fallback).
    ModelVersion.objects.filter(pk=version.pk).update(dictionary=None)
    publish_respiratory(unused_crp, by=make_user(roles.CLINICAL_LEAD))

    refused = client.post(PREDICT, without("crp"), format="json")

    assert refused.status_code == 400, refused.json()
    assert refused.json()["missing"] == ["crp"]


# --- A dictionary whose models read no finding ---------------------------------------------------------


def no_model_finding(definition: dict[str, Any]) -> None:
    for finding in definition["findings"]:
        finding["used_by_model"] = False


@pytest.mark.parametrize("record", [{}, {"sex": "unknown"}, {"findings": {}, "symptoms": []}])
def test_an_empty_record_is_refused_when_no_finding_is_a_model_input(client, make_user, record):
    published = publish_respiratory(no_model_finding, by=make_user(roles.CLINICAL_LEAD))
    served_version(inputs=ModelInputs.of(published.parsed))  # as the worker trains: symptoms, age, sex

    refused = client.post(PREDICT, record, format="json")

    assert refused.status_code == 400, refused.json()
    assert refused.json()["code"] == "too_few_findings"
    assert "diagnosis" not in refused.json()
    assert not Prediction.objects.exists()


@pytest.mark.parametrize("record", [{"symptoms": ["cough"]}, {"age": 40}, {"sex": "female"}])
def test_a_record_with_a_symptom_or_a_demographic_is_answered_when_no_finding_is_a_model_input(
    client, make_user, record
):
    published = publish_respiratory(no_model_finding, by=make_user(roles.CLINICAL_LEAD))
    served_version(inputs=ModelInputs.of(published.parsed))  # as the worker trains: symptoms, age, sex

    answered = client.post(PREDICT, record, format="json")

    assert answered.status_code == 200, answered.json()
    assert answered.json()["completeness"] == 1.0
