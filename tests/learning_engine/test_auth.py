"""JWT: obtain, refresh with rotation and blacklisting, logout, inactive users, session auth."""

from __future__ import annotations

from typing import Any

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


# --- Expiry, rotation, blacklisting -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_access_token_is_refused_once_it_has_expired(clinician):
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(clinician)
    token.set_exp(lifetime=-timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.get("/api/v1/cases/")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_access_tokens_live_minutes_and_refresh_tokens_rotate_into_the_blacklist(settings):
    jwt = settings.SIMPLE_JWT
    assert jwt["ACCESS_TOKEN_LIFETIME"].total_seconds() <= 15 * 60
    assert jwt["ROTATE_REFRESH_TOKENS"]
    assert jwt["BLACKLIST_AFTER_ROTATION"]
    assert "rest_framework_simplejwt.token_blacklist" in settings.INSTALLED_APPS


@pytest.mark.django_db
def test_a_rotated_refresh_token_cannot_be_reused_even_after_its_successor_is_used(clinician):
    client = APIClient()
    first = obtain(client, clinician.username).json()["refresh"]
    second = client.post("/api/v1/auth/token/refresh/", {"refresh": first}, format="json").json()["refresh"]
    third = client.post("/api/v1/auth/token/refresh/", {"refresh": second}, format="json")
    assert third.status_code == 200

    for stale in (first, second):
        response = client.post("/api/v1/auth/token/refresh/", {"refresh": stale}, format="json")
        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"


@pytest.mark.django_db
def test_a_blacklisted_refresh_token_is_refused_for_refresh_and_blacklist(clinician):
    client = APIClient()
    refresh = obtain(client, clinician.username).json()["refresh"]
    assert client.post("/api/v1/auth/token/blacklist/", {"refresh": refresh}, format="json").status_code == 200

    for url in ("/api/v1/auth/token/refresh/", "/api/v1/auth/token/blacklist/"):
        response = client.post(url, {"refresh": refresh}, format="json")
        assert response.status_code == 401, url
        assert response.json()["code"] == "token_not_valid"


@pytest.mark.django_db
def test_an_inactive_users_tokens_are_refused_everywhere_including_predict(make_user):
    user = make_user("prediction_client")
    refresh = obtain(APIClient(), user.username).json()["refresh"]
    client = jwt_client(user)
    user.is_active = False
    user.save()

    assert client.get("/api/v1/cases/").status_code == 401
    assert client.post("/api/v1/model-types/diagnosis/predict/", {}, format="json").status_code == 401
    assert APIClient().post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json").status_code == 401


# --- Throttling -------------------------------------------------------------------------------------

TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def _clock_mid_window(monkeypatch):
    # A test's requests never straddle a window boundary (which would reset the counter).
    monkeypatch.setattr("learning_engine.throttling._now", lambda: 1_800_000_030.0)


@pytest.fixture
def token_rate(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "token": "3/min"}


def wrong_password(client: APIClient, username: str, **headers: Any):
    return client.post(TOKEN_URL, {"username": username, "password": "wrong"}, format="json", **headers)


@pytest.mark.django_db
@pytest.mark.usefixtures("token_rate")
def test_the_token_endpoint_is_throttled_per_client_address(clinician):
    client = APIClient()
    assert [wrong_password(client, clinician.username).status_code for _ in range(3)] == [401] * 3

    refused = wrong_password(client, clinician.username)
    right = obtain(client, clinician.username)

    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert right.status_code == 429  # even the right password waits: no oracle while throttled
    # Another address is not affected.
    other = client.post(
        TOKEN_URL, {"username": clinician.username, "password": PASSWORD}, format="json", REMOTE_ADDR="10.9.8.7"
    )
    assert other.status_code == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("token_rate")
def test_a_forged_x_forwarded_for_does_not_lift_the_throttle(clinician):
    client = APIClient()
    for n in range(3):
        wrong_password(client, clinician.username, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")

    response = wrong_password(client, clinician.username, HTTP_X_FORWARDED_FOR="198.51.100.77")

    assert response.status_code == 429


@pytest.mark.django_db
@pytest.mark.usefixtures("token_rate")
def test_behind_one_proxy_the_client_is_the_address_that_proxy_added(clinician, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = APIClient()
    for _ in range(3):
        # The client forges a first entry; our proxy appends the address it really saw.
        wrong_password(client, clinician.username, HTTP_X_FORWARDED_FOR="1.2.3.4, 192.0.2.10")

    forged_again = wrong_password(client, clinician.username, HTTP_X_FORWARDED_FOR="5.6.7.8, 192.0.2.10")
    another_client = wrong_password(client, clinician.username, HTTP_X_FORWARDED_FOR="192.0.2.11")

    assert forged_again.status_code == 429
    assert another_client.status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["predict/", "predict/batch/"])
def test_predict_is_throttled_per_user_and_by_the_cache_not_the_database(settings, make_user, kind):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "2/min"}
    first, second = make_user("prediction_client"), make_user("prediction_client")
    url = f"/api/v1/model-types/no-such-type/{kind}"
    client = jwt_client(first)

    answers = [client.post(url, {}, format="json").status_code for _ in range(2)]
    with CaptureQueriesContext(connection) as queries:
        refused = client.post(url, {}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert 429 not in answers
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert len(queries) == 0  # the token and the cached credential state, no user lookup; the counter: the cache
    assert jwt_client(second).post(url, {}, format="json").status_code != 429


def test_throttled_endpoints_document_429():
    from drf_spectacular.generators import SchemaGenerator

    spec = SchemaGenerator().get_schema(request=None, public=True)
    for path in (
        "/api/v1/auth/token/",
        "/api/v1/auth/token/refresh/",
        "/api/v1/model-types/{slug}/predict/",
        "/api/v1/model-types/{slug}/predict/batch/",
    ):
        assert "429" in spec["paths"][path]["post"]["responses"], path
    assert "429" not in spec["paths"]["/api/v1/cases/"]["get"]["responses"]
