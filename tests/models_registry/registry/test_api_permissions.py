"""Every registry endpoint x every role: who is let in, who gets 401/403, and that a refusal changes nothing.

A role that is let in may still get a 4xx/409 from the endpoint itself (a wrong state, a body the
test does not bother to make valid); what matters here is that it got past the permission check
and that nobody ever sees a 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from learning_engine import roles
from models_registry.models import ActivationHistory, ModelVersion, PerformanceRecord, VersionTransition
from tests.conftest import ROLE_NAMES
from tests.models_registry.registry.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/model-types/diagnosis"
VIEWERS = {roles.ML_ENGINEER, roles.CLINICAL_LEAD}
LEADS = {roles.CLINICAL_LEAD}
ENGINEERS = {roles.ML_ENGINEER}

# (method, path, body, roles allowed)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("get", f"{BASE}/versions/", None, VIEWERS),
    ("get", f"{BASE}/versions/v1.0.0/", None, VIEWERS),
    ("post", f"{BASE}/versions/v1.0.0/approve/", {"note": "Fine."}, LEADS),
    ("post", f"{BASE}/versions/v1.0.0/reject/", {"note": "No."}, LEADS),
    ("post", f"{BASE}/versions/v1.1.0/activate/", {"reason": "Go."}, LEADS),
    ("post", f"{BASE}/versions/v1.1.0/deactivate/", {"reason": "Stop."}, LEADS),
    ("post", f"{BASE}/versions/v1.0.0/archive/", {"reason": "Old."}, LEADS),
    ("get", f"{BASE}/versions/v1.0.0/performance/", None, VIEWERS),
    ("post", f"{BASE}/versions/v1.0.0/performance/", {"metrics": {"accuracy": 0.9}, "test_set_size": 5}, ENGINEERS),
    ("post", f"{BASE}/versions/upload/", {}, ENGINEERS),
    ("post", f"{BASE}/rollback/", {"reason": "Back."}, LEADS),
    ("get", f"{BASE}/history/", None, VIEWERS),
    ("get", f"{BASE}/history/?at=2026-01-01T00:00:00Z", None, VIEWERS),
    ("get", f"{BASE}/compare/?a=v1.0.0&b=v1.1.0", None, VIEWERS),
]


@pytest.fixture
def versions(make_user) -> list[ModelVersion]:
    """v1.0.0 pending and v1.1.0 approved and active, trained by an engineer, approved by a lead."""
    engineer, lead = make_user(roles.ML_ENGINEER), make_user(roles.CLINICAL_LEAD)
    pending = ModelVersionFactory.create(created_by=engineer)
    return [pending, ModelVersionFactory.create(active=True, created_by=engineer, approved_by=lead)]


def state() -> tuple[int, int, int]:
    return (VersionTransition.objects.count(), PerformanceRecord.objects.count(), ActivationHistory.objects.count())


@pytest.mark.parametrize("role", ROLE_NAMES)
@pytest.mark.parametrize(("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_each_endpoint_admits_exactly_its_roles(api_client_for, versions, role, method, path, body, allowed):
    client = api_client_for(role)
    before = state()

    response = getattr(client, method)(path, body) if body is not None else getattr(client, method)(path)

    assert response.status_code < 500
    if role in allowed:
        assert response.status_code not in (401, 403), response.json()
    else:
        assert response.status_code == (401 if role == "anonymous" else 403)
        assert response.json()["code"] in ("not_authenticated", "permission_denied")
        assert state() == before


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_an_unknown_model_type_does_not_reveal_itself_to_the_unauthorised(api_client_for, role):
    response = api_client_for(role).get("/api/v1/model-types/secret/versions/")
    expected = {"anonymous": 401, roles.ML_ENGINEER: 404, roles.CLINICAL_LEAD: 404}.get(role, 403)
    assert response.status_code == expected


def test_a_superuser_may_do_everything(make_user, versions):
    from tests.conftest import jwt_client

    client = jwt_client(make_user(None, is_superuser=True, is_staff=True))
    assert client.post(f"{BASE}/versions/v1.0.0/approve/", {"note": "Superuser."}).status_code == 200
    assert client.post(f"{BASE}/versions/v1.0.0/activate/", {"reason": "Superuser."}).status_code == 200
