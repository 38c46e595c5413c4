"""Who may predict and give feedback: clinicians, prediction clients and superusers; 403 else, 401 anonymous."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from learning_engine import roles
from models_registry.models import Feedback, Prediction
from tests.conftest import ROLE_NAMES, jwt_client
from tests.models_registry.serving.factories import (
    PNEUMONIA,
    PNEUMONIA_FEATURES,
    served_version,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PREDICT = "/api/v1/model-types/diagnosis/predict/"
BATCH = "/api/v1/model-types/diagnosis/predict/batch/"
FEEDBACK = "/api/v1/predictions/{id}/feedback/"

ALLOWED = {roles.CLINICIAN, roles.PREDICTION_CLIENT, "superuser"}


def expected(role: str, ok: int) -> int:
    if role == "anonymous":
        return 401
    return ok if role in ALLOWED else 403


@pytest.fixture
def client_for(make_user):
    def make(role: str) -> tuple[APIClient, object]:
        if role == "anonymous":
            return jwt_client(None), None
        user = make_user(None, is_superuser=True) if role == "superuser" else make_user(role)
        return jwt_client(user), user

    return make


@pytest.fixture
def own_prediction(make_user):
    """A prediction asked for by the user under test (or by someone else, for anonymous)."""

    def make(user) -> int:
        version = served_version()
        requester = user or make_user(roles.PREDICTION_CLIENT)
        return Prediction.objects.create(
            model_type=version.model_type,
            version=version,
            input_sha256="0" * 64,
            predicted_code=PNEUMONIA,
            probabilities={PNEUMONIA: 1.0},
            latency_ms=1.0,
            requested_by=requester,
        ).pk

    return make


@pytest.mark.parametrize("role", [*ROLE_NAMES, "superuser"])
def test_predict_permission_matrix(client_for, role):
    served_version()
    client, _ = client_for(role)
    single = client.post(PREDICT, PNEUMONIA_FEATURES, format="json")
    batch = client.post(BATCH, {"records": [PNEUMONIA_FEATURES]}, format="json")
    assert (single.status_code, batch.status_code) == (expected(role, 200), expected(role, 200))
    assert Prediction.objects.count() == (2 if role in ALLOWED else 0)


@pytest.mark.parametrize("role", [*ROLE_NAMES, "superuser"])
def test_feedback_permission_matrix(client_for, own_prediction, role):
    client, user = client_for(role)
    prediction_id = own_prediction(user)
    response = client.post(FEEDBACK.format(id=prediction_id), {"diagnosis_code": PNEUMONIA}, format="json")
    assert response.status_code == expected(role, 201)
    assert Feedback.objects.exists() == (role in ALLOWED)


def test_refusals_say_why_in_json(client_for):
    served_version()
    anonymous = client_for("anonymous")[0].post(PREDICT, PNEUMONIA_FEATURES, format="json")
    engineer = client_for(roles.ML_ENGINEER)[0].post(PREDICT, PNEUMONIA_FEATURES, format="json")
    assert anonymous.json()["code"] == "not_authenticated"
    assert engineer.json()["code"] == "permission_denied"


def test_an_inactive_users_token_is_refused(make_user):
    served_version()
    user = make_user(roles.PREDICTION_CLIENT)
    client = jwt_client(user)
    user.is_active = False
    user.save()
    response = client.post(PREDICT, PNEUMONIA_FEATURES, format="json")
    assert response.status_code == 401


def test_a_permission_granted_to_the_user_directly_counts_as_through_a_role(make_user):
    served_version()
    user = make_user(None)
    user.user_permissions.add(Permission.objects.get(codename="predict", content_type__app_label="models_registry"))
    assert jwt_client(user).post(PREDICT, PNEUMONIA_FEATURES, format="json").status_code == 200


@pytest.mark.parametrize(("role", "status"), [(roles.CLINICIAN, 200), (roles.ML_ENGINEER, 403)])
def test_session_authentication_checks_the_same_permission(make_user, role, status):
    served_version()
    client = APIClient()
    client.force_login(make_user(role))
    assert client.post(PREDICT, PNEUMONIA_FEATURES, format="json").status_code == status


def test_roles_hold_the_serving_permissions_in_the_table():
    for role in (roles.CLINICIAN, roles.PREDICTION_CLIENT):
        assert roles.PERM_PREDICT in roles.ROLE_PERMISSIONS[role]
        assert roles.PERM_GIVE_FEEDBACK in roles.ROLE_PERMISSIONS[role]
    for role in (roles.ML_ENGINEER, roles.CLINICAL_LEAD):
        assert roles.PERM_PREDICT not in roles.ROLE_PERMISSIONS[role]
        assert roles.PERM_GIVE_FEEDBACK not in roles.ROLE_PERMISSIONS[role]
