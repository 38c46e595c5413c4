"""Tokens bound to the login and the user's credentials (learning_engine.tokens, issue 10 part 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient
from rest_framework_simplejwt import tokens as simplejwt_tokens
from rest_framework_simplejwt.utils import aware_utcnow, datetime_to_epoch

from learning_engine import roles
from learning_engine.tokens import AUTH_TIME_CLAIM, FINGERPRINT_CLAIM, AccessToken, RefreshToken

PASSWORD = "pw-for-tests-only"
CASES = "/api/v1/cases/"
REFRESH = "/api/v1/auth/token/refresh/"


def login(user) -> dict[str, str]:
    response = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token: str):
    return APIClient().post(REFRESH, {"refresh": token}, format="json")


def get_cases(access: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get(CASES)


def assert_refused(response, code: str) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code


@pytest.mark.django_db
def test_login_tokens_carry_the_login_time_and_a_fingerprint_that_reveals_no_hash(clinician):
    pair = login(clinician)
    # simplejwt annotates the encoded token as a Token; it is the string.
    access, refresh_token = AccessToken(pair["access"]), RefreshToken(pair["refresh"])  # type: ignore[arg-type]

    assert abs(refresh_token[AUTH_TIME_CLAIM] - datetime_to_epoch(aware_utcnow())) <= 2
    assert access[AUTH_TIME_CLAIM] == refresh_token[AUTH_TIME_CLAIM]
    assert access[FINGERPRINT_CLAIM] == refresh_token[FINGERPRINT_CLAIM]
    assert clinician.password not in pair["refresh"]
    assert get_cases(pair["access"]).status_code == 200


@pytest.mark.django_db
def test_a_password_change_ends_the_refresh_and_access_tokens_issued_before(clinician):
    pair = login(clinician)
    clinician.set_password("another-long-password-1")
    clinician.save()

    assert_refused(refresh(pair["refresh"]), "credentials_changed")
    assert_refused(get_cases(pair["access"]), "credentials_changed")
    # A login with the new password works.
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": clinician.username, "password": "another-long-password-1"}, format="json"
    )
    assert response.status_code == 200


@pytest.mark.django_db
def test_deactivation_ends_the_refresh_and_access_tokens(clinician):
    pair = login(clinician)
    clinician.is_active = False
    clinician.save()

    assert refresh(pair["refresh"]).status_code == 401
    assert get_cases(pair["access"]).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("new_role", [None, roles.ML_ENGINEER])
def test_losing_the_role_ends_the_refresh_and_access_tokens(clinician, new_role):
    pair = login(clinician)
    clinician.groups.remove(Group.objects.get(name=roles.CLINICIAN))
    if new_role:  # a role swapped for another is a change too
        clinician.groups.add(Group.objects.get(name=new_role))

    assert_refused(refresh(pair["refresh"]), "credentials_changed")
    assert_refused(get_cases(pair["access"]), "credentials_changed")


@pytest.mark.django_db
def test_losing_superuser_status_ends_the_tokens(make_user):
    admin = make_user(None, is_superuser=True, is_staff=True)
    pair = login(admin)
    admin.is_superuser = False
    admin.save()

    assert_refused(refresh(pair["refresh"]), "credentials_changed")
    assert_refused(get_cases(pair["access"]), "credentials_changed")


@pytest.mark.django_db
def test_unrelated_changes_and_login_bookkeeping_keep_the_tokens(clinician, make_user):
    pair = login(clinician)
    login(clinician)  # a second login updates last_login
    clinician.email = "new@hospital.test"
    clinician.first_name = "Renamed"
    clinician.save()
    # Another group that is not a role, and another user's role change, are not this user's credentials.
    clinician.groups.add(Group.objects.create(name="newsletter"))
    make_user(roles.CLINICIAN).groups.clear()

    assert get_cases(pair["access"]).status_code == 200
    assert refresh(pair["refresh"]).status_code == 200


@pytest.mark.django_db
def test_rotation_keeps_the_login_time_and_never_extends_past_the_session(clinician, settings):
    settings.JWT_SESSION_LIFETIME = timedelta(hours=1)  # shorter than a refresh token's 24 h
    first = login(clinician)
    auth_time = RefreshToken(first["refresh"])[AUTH_TIME_CLAIM]

    second = refresh(first["refresh"]).json()
    third = refresh(second["refresh"]).json()

    for pair in (first, second, third):
        # verify=False: the older refresh tokens are blacklisted by now; their claims are what is read.
        for token in (RefreshToken(pair["refresh"], verify=False), AccessToken(pair["access"])):  # type: ignore[arg-type]
            assert token[AUTH_TIME_CLAIM] == auth_time
            assert token["exp"] <= auth_time + 3600
    assert RefreshToken(third["refresh"])["exp"] == auth_time + 3600


def signed(token_class, user, *, auth_age: timedelta, exp_in: timedelta) -> str:
    """A validly signed token of ``user`` whose login was ``auth_age`` ago and that expires in ``exp_in``."""
    base = RefreshToken.for_user(user)
    token = base if token_class is RefreshToken else base.access_token
    now = datetime_to_epoch(aware_utcnow())
    token.payload[AUTH_TIME_CLAIM] = now - int(auth_age.total_seconds())
    token.payload["exp"] = now + int(exp_in.total_seconds())
    return str(token)


@pytest.mark.django_db
def test_a_session_older_than_its_lifetime_is_refused_even_if_a_token_has_not_expired(clinician, settings):
    settings.JWT_SESSION_LIFETIME = timedelta(hours=12)
    old = {"auth_age": timedelta(hours=12, seconds=1), "exp_in": timedelta(hours=1)}
    young = {"auth_age": timedelta(hours=11, minutes=59), "exp_in": timedelta(hours=1)}

    assert_refused(refresh(signed(RefreshToken, clinician, **old)), "session_expired")
    assert_refused(get_cases(signed(AccessToken, clinician, **old)), "session_expired")
    assert refresh(signed(RefreshToken, clinician, **young)).status_code == 200
    assert get_cases(signed(AccessToken, clinician, **young)).status_code == 200


def test_the_session_lifetime_defaults_to_twelve_hours():
    from django.conf import settings

    assert timedelta(hours=12) == settings.JWT_SESSION_LIFETIME


@pytest.mark.django_db
def test_tokens_without_a_login_session_are_refused(clinician):
    bare = simplejwt_tokens.RefreshToken.for_user(clinician)  # simplejwt's own: no auth_time, no fingerprint

    assert_refused(refresh(str(bare)), "token_not_valid")
    assert_refused(get_cases(str(bare.access_token)), "token_not_valid")


@pytest.mark.django_db
def test_the_predict_endpoint_checks_the_session_too(prediction_client):
    pair = login(prediction_client)
    prediction_client.set_password("another-long-password-1")
    prediction_client.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")

    assert_refused(client.post("/api/v1/model-types/diagnosis/predict/", {}, format="json"), "credentials_changed")
