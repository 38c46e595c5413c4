"""JWT: obtain, refresh with rotation and blacklisting, logout, inactive users, session auth."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import jwt_client

PASSWORD = "pw-for-tests-only"


def obtain(client: APIClient, username: str, password: str = PASSWORD):
    return client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")


@pytest.mark.django_db
def test_obtain_returns_access_and_refresh_tokens_that_authenticate(clinician):
    client = APIClient()
    response = obtain(client, clinician.username)
    assert response.status_code == 200
    assert set(response.json()) >= {"access", "refresh"}
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert client.get("/api/v1/cases/").status_code == 200


@pytest.mark.django_db
def test_obtain_refuses_a_wrong_password_with_a_json_code(clinician):
    response = obtain(APIClient(), clinician.username, "wrong")
    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


@pytest.mark.django_db
def test_obtain_refuses_an_inactive_user(make_user):
    user = make_user("clinician", is_active=False)
    assert obtain(APIClient(), user.username).status_code == 401


@pytest.mark.django_db
def test_an_access_token_stops_working_when_the_user_is_deactivated(clinician):
    client = jwt_client(clinician)
    assert client.get("/api/v1/cases/").status_code == 200
    clinician.is_active = False
    clinician.save()
    response = client.get("/api/v1/cases/")
    assert response.status_code == 401
    assert "code" in response.json()


@pytest.mark.django_db
def test_refresh_rotates_and_the_old_refresh_token_is_blacklisted(clinician):
    client = APIClient()
    first = obtain(client, clinician.username).json()["refresh"]
    rotated = client.post("/api/v1/auth/token/refresh/", {"refresh": first}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != first
    reused = client.post("/api/v1/auth/token/refresh/", {"refresh": first}, format="json")
    assert reused.status_code == 401
    assert reused.json()["code"] == "token_not_valid"


@pytest.mark.django_db
def test_refresh_is_refused_for_a_deactivated_user(clinician):
    client = APIClient()
    refresh = obtain(client, clinician.username).json()["refresh"]
    clinician.is_active = False
    clinician.save()
    response = client.post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert response.status_code == 401


@pytest.mark.django_db
def test_blacklist_logs_out_the_refresh_token(clinician):
    client = APIClient()
    refresh = obtain(client, clinician.username).json()["refresh"]
    assert client.post("/api/v1/auth/token/blacklist/", {"refresh": refresh}, format="json").status_code == 200
    response = client.post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert response.status_code == 401


@pytest.mark.django_db
def test_a_forged_token_is_refused_with_a_json_code(clinician):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
    response = client.get("/api/v1/cases/")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


@pytest.mark.django_db
def test_session_auth_keeps_working_for_the_browsable_api(client, clinician):
    client.force_login(clinician)
    response = client.get("/api/v1/cases/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"<html" in response.content.lower()
