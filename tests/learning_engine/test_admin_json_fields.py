"""The admin's JSON textareas read JSON as the API does: a text nested a hundred thousand deep or a
400-digit integer is a form error beside the field, never a 500 (``learning_engine.forms``). (The
case form has no JSON box any more: its hostile numbers are in ``tests/cases/test_case_form.py``.)

Before, Django's ``forms.JSONField`` parsed with plain ``json.loads``: ``RecursionError`` on the
case, dictionary and job forms, ``OverflowError`` in the dictionary's range check.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from learning_engine import roles
from learning_engine.forms import StrictJSONField
from models_registry.experiments.admin import ConcludeForm
from tests.cases.dictionary_factories import published_dictionary, small_definition
from training.models import ModelType, TrainingJob

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "1" + "0" * 400


def field_errors(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (DEEP, "levels deep"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "levels deep"),
        (HUGE, "out of range"),
        ("NaN", "NaN is not a number"),
        ("1e999", "out of range"),
        ("{nope", "Enter a valid JSON"),
    ],
)
def test_the_field_refuses_what_the_api_parser_refuses_with_a_validation_error(text, error):
    field = StrictJSONField()

    bound = field.bound_data(text, None)
    with pytest.raises(ValidationError) as caught:
        field.clean(text)

    assert error in " ".join(caught.value.messages)
    assert bound == text  # redisplayed as typed, not parsed the lenient way


def test_the_field_takes_ordinary_json():
    assert StrictJSONField().clean('{"alpha": 0.0001, "layers": [16, 8], "on": true}') == {
        "alpha": 0.0001,
        "layers": [16, 8],
        "on": True,
    }


@pytest.mark.parametrize("value", [DEEP, json.dumps(small_definition()).replace('"max": 350', '"max": ' + HUGE)])
def test_the_dictionary_form_answers_a_hostile_definition_with_a_form_error(staff, lead, value):
    client, _ = staff(roles.CLINICAL_LEAD)
    client.raise_request_exception = False
    draft = published_dictionary(by=lead).copy(by=lead)
    url = reverse("admin:cases_datadictionary_change", args=[draft.pk])
    data = {
        "definition": value,
        "expected_sha256": draft.definition_sha256,
        "transitions-TOTAL_FORMS": "0",
        "transitions-INITIAL_FORMS": "0",
    }

    page = field_errors(client.post(url, data))

    assert "levels deep" in page or "out of range" in page
    draft.refresh_from_db()
    assert draft.definition == small_definition()


@pytest.mark.parametrize("value", [DEEP, '{"C": ' + HUGE + "}"])
def test_the_job_form_answers_hostile_hyperparameters_with_a_form_error(staff, value):
    client, _ = staff(roles.ML_ENGINEER)
    client.raise_request_exception = False
    model_type = ModelType.objects.create(
        slug="diagnosis", name="Respiratory diagnosis", cohort="respiratory", default_algorithm="logistic_regression"
    )
    data = {
        "model_type": model_type.pk,
        "algorithm": "",
        "hyperparameters": value,
        "priority": "0",
        "max_attempts": "3",
        "_save": "Save",
    }

    page = field_errors(client.post(reverse("admin:training_trainingjob_add"), data))

    assert "levels deep" in page or "out of range" in page
    assert not TrainingJob.objects.exists()


def test_the_ab_conclude_form_refuses_a_deep_decisions_field():
    form = ConcludeForm(data={"reason": "Enough data.", "decisions": DEEP})

    assert not form.is_valid()
