"""The feedback answer carries the confirmed code's display name beside it (issue 11): from the data
dictionary the version was trained under; a cohort without one gives an empty name."""

from __future__ import annotations

import pytest

from learning_engine import roles
from models_registry.models import Feedback, Prediction
from tests.conftest import jwt_client
from tests.models_registry.serving.factories import (
    COLD,
    PNEUMONIA_FEATURES,
    served_version,
)
from training.models import ModelType

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving", "cold_labels")]


def test_the_feedback_answer_names_the_confirmed_code(make_user):
    version = served_version()
    client = jwt_client(make_user(roles.PREDICTION_CLIENT))
    prediction = client.post(
        f"/api/v1/model-types/{version.model_type.slug}/predict/", PNEUMONIA_FEATURES, format="json"
    )
    assert prediction.status_code == 200, prediction.json()

    response = client.post(
        f"/api/v1/predictions/{prediction.json()['id']}/feedback/", {"diagnosis_code": COLD}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["diagnosis_code"], body["diagnosis_display_name"]) == (
        COLD,
        "Acute upper respiratory infection, unspecified",
    )


def test_a_code_of_a_cohort_without_a_dictionary_has_an_empty_name(make_user):
    from models_registry.serving.serializers import FeedbackSerializer

    version = served_version()
    ModelType.objects.filter(pk=version.model_type_id).update(cohort="no-dictionary")
    type(version).objects.filter(pk=version.pk).update(dictionary=None)
    user = make_user(roles.CLINICIAN)
    prediction = Prediction.objects.create(
        model_type_id=version.model_type_id,
        version_id=version.pk,
        input_sha256="0" * 64,
        predicted_code="Z99.9",
        latency_ms=1.0,
        requested_by=user,
    )
    feedback = Feedback.objects.create(prediction=prediction, diagnosis_code="Z99.9", correct=True, given_by=user)

    data = FeedbackSerializer(Feedback.objects.get(pk=feedback.pk)).data

    assert (data["diagnosis_code"], data["diagnosis_display_name"]) == ("Z99.9", "")
