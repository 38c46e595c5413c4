"""Stateless JWT authentication of the predict endpoints (learning_engine.stateless_auth, issue 16).

No user query per request, and still every revocation is honoured on the next request: a password
change, a deactivation, a lost role, a role that lost its permission, a logout, a deleted user. The
attacker's side: forged or edited claims, a token from before a change, the token of a prediction
client on other endpoints. Across real processes: tests/models_registry/serving/test_stateless_processes.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache, caches
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from learning_engine import roles
from learning_engine.stateless_auth import STATE_KEY, TokenClient, credential_state
from learning_engine.tokens import PERMISSIONS_CLAIM, SESSION_CLAIM, AccessToken, RefreshToken
from models_registry.models import Prediction
from tests.models_registry.serving.factories import PNEUMONIA_FEATURES

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

PASSWORD = "pw-for-tests-only"
PREDICT = "/api/v1/model-types/diagnosis/predict/"


def login(user) -> dict[str, str]:
    response = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def predict(access: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.post(PREDICT, PNEUMONIA_FEATURES, format="json")


def assert_refused(response, code: str) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code


def warm(access: str) -> None:
    """One answered prediction: the routing table, the model and the credential state are cached."""
    assert predict(access).status_code == 200
    assert predict(access).status_code == 200


# --- No user query ---------------------------------------------------------------------------------


def test_a_warm_predict_reads_no_user_row(version, prediction_client):
    access = login(prediction_client)["access"]
    warm(access)
    from django.db import connection

    with CaptureQueriesContext(connection) as queries:
        response = predict(access)
    assert response.status_code == 200
    # Only the writes of the answer (the prediction log, monitoring's tally): no read at all.
    # Only writes: the log and monitoring's tallies (and the savepoint around the tallies).
    statements = {query["sql"].split()[0] for query in queries.captured_queries}
    assert statements - {"SAVEPOINT", "RELEASE"} == {"INSERT"}
    assert not [query for query in queries.captured_queries if "auth_" in query["sql"]]
    assert Prediction.objects.get(pk=response.json()["id"]).requested_by == prediction_client


def test_the_token_carries_the_user_its_permissions_and_its_session(prediction_client, clinician, make_user):
    client_access = AccessToken(login(prediction_client)["access"])  # type: ignore[arg-type]
    officer_access = AccessToken(login(make_user(roles.PRIVACY_OFFICER))["access"])  # type: ignore[arg-type]
    superuser = make_user(None, is_superuser=True)

    assert client_access[PERMISSIONS_CLAIM] == 0b11  # predict and give feedback
    assert officer_access[PERMISSIONS_CLAIM] == 0
    assert RefreshToken.for_user(superuser)[PERMISSIONS_CLAIM] == 0b11
    assert len(client_access[SESSION_CLAIM]) == 32
    assert client_access[SESSION_CLAIM] != officer_access[SESSION_CLAIM]


def test_a_privacy_officer_token_is_refused_with_403(version, make_user):
    response = predict(login(make_user(roles.PRIVACY_OFFICER))["access"])
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_the_token_client_can_predict_and_nothing_else():
    client = TokenClient(7, 0b01)
    assert client.has_perm(roles.PERM_PREDICT)
    assert not client.has_perm(roles.PERM_GIVE_FEEDBACK)
    assert not client.has_perm(roles.PERM_REVIEW_CASE)
    assert not client.is_superuser
    assert not client.is_staff
    with pytest.raises(TypeError):
        client.save()


# --- Revocation, on the next request ---------------------------------------------------------------


def test_a_password_change_refuses_the_next_predict(version, prediction_client):
    access = login(prediction_client)["access"]
    warm(access)
    prediction_client.set_password("another-long-password-1")
    prediction_client.save()
    assert_refused(predict(access), "credentials_changed")


def test_a_deactivated_client_is_refused_on_its_next_predict(version, prediction_client):
    access = login(prediction_client)["access"]
    warm(access)
    prediction_client.is_active = False
    prediction_client.save()
    assert_refused(predict(access), "user_inactive")


def test_a_deleted_client_is_refused_on_its_next_predict(version, prediction_client):
    access = login(prediction_client)["access"]
    warm(access)
    Prediction.objects.filter(requested_by=prediction_client).delete()
    prediction_client.delete()
    assert_refused(predict(access), "user_not_found")


def test_losing_the_role_refuses_the_token_issued_before(version, prediction_client):
    access = login(prediction_client)["access"]
    warm(access)
    prediction_client.groups.clear()
    assert_refused(predict(access), "credentials_changed")


def test_a_group_removed_from_its_users_refuses_their_tokens(version, prediction_client):
    access = login(prediction_client)["access"]
    warm(access)
    Group.objects.get(name=roles.PREDICTION_CLIENT).user_set.remove(prediction_client)
    assert_refused(predict(access), "credentials_changed")


def test_a_role_losing_the_predict_permission_refuses_its_members_tokens(version, prediction_client):
    access = login(prediction_client)["access"]
    warm(access)
    group = Group.objects.get(name=roles.PREDICTION_CLIENT)
    group.permissions.remove(Permission.objects.get(codename="predict", content_type__app_label="models_registry"))
    assert_refused(predict(access), "credentials_changed")
    # A new login states what the role now grants: no predict.
    assert predict(login(prediction_client)["access"]).status_code == 403


def test_a_token_issued_before_a_role_was_granted_does_not_gain_it(version, make_user):
    user = make_user(None)
    access = login(user)["access"]
    assert predict(access).status_code == 403
    user.groups.add(Group.objects.get(name=roles.PREDICTION_CLIENT))
    assert_refused(predict(access), "credentials_changed")
    assert predict(login(user)["access"]).status_code == 200


def test_a_logout_ends_that_sessions_access_tokens_and_no_other(version, prediction_client):
    first, second = login(prediction_client), login(prediction_client)
    warm(first["access"])
    warm(second["access"])

    response = APIClient().post("/api/v1/auth/token/blacklist/", {"refresh": first["refresh"]}, format="json")
    assert response.status_code == 200, response.content

    assert_refused(predict(first["access"]), "session_ended")
    assert predict(second["access"]).status_code == 200


def test_rotation_keeps_the_session_and_logging_out_after_it_ends_it(version, prediction_client):
    pair = login(prediction_client)
    warm(pair["access"])
    rotated = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json").json()

    assert predict(pair["access"]).status_code == 200  # the old access token lives until it expires
    assert predict(rotated["access"]).status_code == 200

    APIClient().post("/api/v1/auth/token/blacklist/", {"refresh": rotated["refresh"]}, format="json")
    assert_refused(predict(rotated["access"]), "session_ended")
    assert_refused(predict(pair["access"]), "session_ended")


# --- A token's signature is checked once per process ---------------------------------------------


def test_a_token_is_verified_once_and_each_revocation_still_refuses_it(version, prediction_client, monkeypatch):
    from rest_framework_simplejwt.backends import TokenBackend

    decoded: list[int] = []
    decode = TokenBackend.decode

    def counted(self: TokenBackend, *args: Any, **kwargs: Any) -> Any:
        decoded.append(1)
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(TokenBackend, "decode", counted)
    access = login(prediction_client)["access"]
    for _ in range(3):
        assert predict(access).status_code == 200
    assert decoded == [1]

    prediction_client.set_password("another-pw-for-tests-only")
    prediction_client.save()
    assert_refused(predict(access), "credentials_changed")  # the verified token, refused by the state


def test_a_verified_token_is_taken_again_only_until_it_expires(prediction_client, monkeypatch):
    from learning_engine import stateless_auth
    from learning_engine.stateless_auth import VerifiedTokens

    raw = login(prediction_client)["access"].encode()
    token = AccessToken(raw)  # type: ignore[arg-type]  # simplejwt takes the encoded token's bytes
    end = token["exp"] + token.get_token_backend().get_leeway().total_seconds()  # as simplejwt's check_exp
    verified = VerifiedTokens(size=2)
    verified.add(raw, token)

    monkeypatch.setattr(stateless_auth, "_now", lambda: end - 0.1)
    assert verified.get(raw) is token
    monkeypatch.setattr(stateless_auth, "_now", lambda: end)
    assert verified.get(raw) is None
    assert len(verified) == 0

    monkeypatch.undo()
    for other in (b"a", b"b", b"c"):
        verified.add(other, token)
    assert len(verified) == 2  # bounded: the oldest went
    assert verified.get(b"a") is None


def test_a_change_no_signal_sees_lasts_only_until_the_state_expires(version, prediction_client):
    """``QuerySet.update()`` sends no signal: the cached state answers until it expires
    (``STATE_SECONDS``), then the database does. Here the expiry is forced."""
    access = login(prediction_client)["access"]
    warm(access)
    type(prediction_client).objects.filter(pk=prediction_client.pk).update(is_active=False)
    assert predict(access).status_code == 200  # the documented bound, not a wish
    cache.delete(STATE_KEY.format(prediction_client.pk))
    assert_refused(predict(access), "user_inactive")


def test_with_the_cache_down_the_database_answers_and_revocation_holds(version, prediction_client, monkeypatch):
    access = login(prediction_client)["access"]
    warm(access)

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(caches["default"], "get", down)
    monkeypatch.setattr(caches["default"], "get_many", down)
    assert credential_state(prediction_client.pk).active
    type(prediction_client).objects.filter(pk=prediction_client.pk).update(is_active=False)
    assert_refused(predict(access), "user_inactive")


# --- Forged and misused tokens ---------------------------------------------------------------------


def _edited(token: str, **claims) -> str:
    """The token with its claims edited and its signature kept."""
    head, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    edited = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{edited}.{signature}"


def test_edited_or_forged_claims_are_refused(version, make_user, settings):
    officer = make_user(roles.PRIVACY_OFFICER)
    access = login(officer)["access"]
    claims = jwt.decode(access, options={"verify_signature": False})

    # The permissions claim raised, the signature kept.
    assert_refused(predict(_edited(access, **{PERMISSIONS_CLAIM: 0b11})), "token_not_valid")
    # Signed with another key, or not signed at all.
    forged = jwt.encode({**claims, PERMISSIONS_CLAIM: 0b11}, "not-the-key-" * 8, algorithm="HS256")
    assert_refused(predict(forged), "token_not_valid")
    unsigned = jwt.encode({**claims, PERMISSIONS_CLAIM: 0b11}, "", algorithm="none")
    assert_refused(predict(unsigned), "token_not_valid")
    # Signed with our key (what a leaked key allows) but claiming another user's id: that user's
    # fingerprint does not match, so even this is refused.
    victim = make_user(roles.PREDICTION_CLIENT)
    stolen = jwt.encode({**claims, "user_id": str(victim.pk)}, settings.SECRET_KEY, algorithm="HS256")
    assert_refused(predict(stolen), "credentials_changed")


def test_a_refresh_token_is_no_access_token(version, prediction_client):
    assert_refused(predict(login(prediction_client)["refresh"]), "token_not_valid")


def test_a_token_without_the_new_claims_is_refused(version, prediction_client):
    access = RefreshToken.for_user(prediction_client).access_token
    del access[SESSION_CLAIM]
    assert_refused(predict(str(access)), "token_not_valid")
    access = RefreshToken.for_user(prediction_client).access_token
    access[PERMISSIONS_CLAIM] = True  # a bool is no permission mask
    assert_refused(predict(str(access)), "token_not_valid")


def test_a_prediction_clients_token_opens_nothing_else(version, prediction_client, clinician):
    access = login(prediction_client)["access"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    for path in ("/api/v1/cases/", "/api/v1/datasets/", "/api/v1/training/jobs/", "/api/v1/access-log/"):
        assert client.get(path).status_code == 403, path
    # Feedback on someone else's prediction: 404, as if it did not exist.
    other = predict(login(clinician)["access"]).json()["id"]
    response = client.post(f"/api/v1/predictions/{other}/feedback/", {"diagnosis_code": "J18.9"}, format="json")
    assert response.status_code == 404
