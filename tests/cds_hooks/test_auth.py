"""CDS Hooks authentication (CDS Hooks 2.0, "Trusting CDS Clients"): every refusal is a 401 with
its own code; a good token works once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from cds_hooks.models import UsedToken
from learning_engine import roles
from tests.cds_hooks.factories import RecordSystem, private_key, public_jwk

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving", "cold_keys")]

DISCOVERY = "/cds-services"


def refused(response, code):
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code, response.json()
    assert response["WWW-Authenticate"].startswith("Bearer")
    return response.json()["detail"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, payload: dict) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def _claims(ehr, path=DISCOVERY, **changes):
    now = int(time.time())
    return {"iss": ehr.issuer, "aud": ehr.base + path, "iat": now, "exp": now + 60, "jti": "j-1", **changes}


def test_a_signed_discovery_call_is_answered(ehr):
    response = ehr.get(DISCOVERY)
    assert response.status_code == 200, response.content
    assert response.json() == {"services": []}  # no model type has an active version here


def test_an_rs384_record_system_is_taken_too(make_user):
    system = RecordSystem(alg="RS384", issuer="https://other-ehr.example.org")
    system.register(make_user(roles.PREDICTION_CLIENT))
    assert system.get(DISCOVERY).status_code == 200


def test_without_a_token_it_is_401(ehr):
    response = ehr.api(None).get(DISCOVERY)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_token_used_twice_is_refused_as_a_replay(ehr):
    token = ehr.token(DISCOVERY)
    assert ehr.api(token).get(DISCOVERY).status_code == 200
    refused(ehr.api(token).get(DISCOVERY), "token_replayed")
    assert UsedToken.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_jti_is_written_by_its_own_insert_and_a_replay_is_refused(ehr, monkeypatch):
    """A request runs in autocommit: the jti's one INSERT commits before the call goes on, and the
    unique constraint refuses the replay (no SELECT before, no savepoint)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cds_hooks import auth

    monkeypatch.setattr(auth, "_last_sweep", time.monotonic())  # no sweep of expired jtis in this call

    token = ehr.token(DISCOVERY, claims={"jti": "own-insert"})
    with CaptureQueriesContext(connection) as captured:
        assert ehr.api(token).get(DISCOVERY).status_code == 200
    used = [query["sql"] for query in captured.captured_queries if "cds_hooks_usedtoken" in query["sql"]]
    assert len(used) == 1
    assert used[0].startswith("INSERT")
    # SQLite's BEGIN shows in the captured queries (PostgreSQL's is implicit and does not).
    assert not any(query["sql"].startswith(("BEGIN", "SAVEPOINT")) for query in captured.captured_queries)
    assert UsedToken.objects.filter(client=ehr.client, jti="own-insert").exists()
    refused(ehr.api(token).get(DISCOVERY), "token_replayed")
    assert UsedToken.objects.count() == 1


def test_the_same_jti_from_another_record_system_is_not_a_replay(ehr, make_user):
    other = RecordSystem(alg="RS384", issuer="https://other-ehr.example.org")
    other.register(make_user(roles.PREDICTION_CLIENT))
    assert ehr.get(DISCOVERY, claims={"jti": "shared"}).status_code == 200
    assert other.get(DISCOVERY, claims={"jti": "shared"}).status_code == 200


def test_an_unknown_issuer_is_refused(ehr):
    refused(ehr.get(DISCOVERY, claims={"iss": "https://intruder.example.org/"}), "unknown_issuer")


def test_an_inactive_client_is_refused_as_unknown(ehr):
    ehr.client.is_active = False
    ehr.client.save()
    refused(ehr.get(DISCOVERY), "unknown_issuer")


def test_the_audience_must_be_the_endpoint_called_under_the_configured_base(ehr):
    refused(ehr.get(DISCOVERY, claims={"aud": "https://cds.example-hospital.org/cds-services/other"}), "wrong_audience")
    refused(ehr.get(DISCOVERY, claims={"aud": "https://evil.example.org/cds-services"}), "wrong_audience")
    # aud as a list holding the endpoint is the specification's other form
    assert ehr.get(DISCOVERY, claims={"aud": [ehr.base + DISCOVERY]}).status_code == 200


def test_an_expired_token_is_refused(ehr):
    now = int(time.time())
    refused(ehr.get(DISCOVERY, claims={"iat": now - 200, "exp": now - 100}), "token_expired")


def test_a_token_issued_in_the_future_is_refused(ehr):
    now = int(time.time())
    refused(ehr.get(DISCOVERY, claims={"iat": now + 120, "exp": now + 180}), "token_not_yet_valid")


def test_a_long_lived_token_is_refused(ehr):
    now = int(time.time())
    detail = refused(ehr.get(DISCOVERY, claims={"iat": now, "exp": now + 3600}), "token_lifetime_too_long")
    assert "300" in detail


@pytest.mark.parametrize("claims", [{"iat": "now"}, {"exp": "later"}, {"iat": True}, {"exp": [1]}])
def test_a_signed_token_whose_exp_or_iat_is_no_number_is_refused_not_a_500(ehr, claims):
    # PyJWT takes a numeric string for exp and iat; the lifetime check must not subtract it.
    now = int(time.time())
    values: dict[str, Any] = {"iat": now, "exp": now + 60}
    for name, value in claims.items():
        values[name] = str(values[name]) if value in ("now", "later") else value
    refused(ehr.get(DISCOVERY, claims=values), "invalid_token")


def test_a_token_not_valid_before_a_future_nbf_is_refused(ehr):
    now = int(time.time())
    refused(ehr.get(DISCOVERY, claims={"nbf": now + 120}), "token_not_yet_valid")
    assert ehr.get(DISCOVERY, claims={"nbf": now - 1}).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [{"nbf": "soon"}, {"exp": float("inf")}, {"iat": float("nan")}, {"aud": [1]}, {"aud": {"a": 1}}, {"sub": 7}],
)
def test_a_signed_token_with_a_claim_of_the_wrong_type_is_refused(ehr, claims):
    refused(ehr.get(DISCOVERY, claims=claims), "invalid_token")


def test_a_token_with_a_critical_extension_or_an_unencoded_payload_is_refused(ehr):
    refused(ehr.get(DISCOVERY, headers={"crit": ["exp"], "exp": 1}), "malformed_token")
    refused(ehr.get(DISCOVERY, headers={"b64": False}), "malformed_token")


def test_a_token_whose_parts_are_not_canonical_base64url_is_refused(ehr):
    # A jti that leaves spare bits in the last character of the claims' part.
    token = next(
        t for t in (ehr.token(DISCOVERY, claims={"jti": "j" * n}) for n in range(1, 4)) if len(t.split(".")[1]) % 4
    )
    header, payload, signature = token.split(".")
    refused(ehr.api(f"{header}.{payload}!.{signature}").get(DISCOVERY), "malformed_token")
    # The same claims written another way (a spare bit set): refused before the signature is checked.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(payload[-1]) ^ 1]
    refused(ehr.api(f"{header}.{payload[:-1]}{last}.{signature}").get(DISCOVERY), "malformed_token")
    assert ehr.api(token).get(DISCOVERY).status_code == 200  # refused forms did not use its jti


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud"])
def test_a_token_without_a_required_claim_is_refused(ehr, claim):
    refused(ehr.get(DISCOVERY, claims={claim: None}), "missing_claim")


@pytest.mark.parametrize("empty", ["", []])
def test_an_empty_audience_is_a_missing_claim(ehr, empty):
    refused(ehr.get(DISCOVERY, claims={"aud": empty}), "missing_claim")


def test_alg_none_is_refused_before_any_key_is_read(ehr):
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": ehr.kid}, _claims(ehr))
    refused(ehr.api(token).get(DISCOVERY), "algorithm_not_allowed")


def test_hmac_signed_with_the_public_key_is_refused(ehr):
    """The key confusion attack: HS384 keyed with the record system's public key."""
    from cryptography.hazmat.primitives import serialization

    public = ehr.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned({"alg": "HS384", "typ": "JWT", "kid": ehr.kid}, _claims(ehr))[:-1]
    signature = hmac.new(public, signing_input.encode(), hashlib.sha384).digest()
    refused(ehr.api(f"{signing_input}.{_b64(signature)}").get(DISCOVERY), "algorithm_not_allowed")


def test_a_token_signed_by_another_key_under_the_same_kid_is_refused(ehr):
    from cryptography.hazmat.primitives.asymmetric import ec

    refused(ehr.get(DISCOVERY, key=ec.generate_private_key(ec.SECP384R1())), "invalid_signature")


def test_an_unknown_kid_is_refused(ehr):
    refused(ehr.get(DISCOVERY, headers={"kid": "someone-elses"}), "unknown_key")


def test_a_key_of_another_algorithm_family_is_refused(make_user):
    # The JWKS holds a P-384 key; a token says ES256 (P-256) under that kid.
    system = RecordSystem(alg="ES256", issuer="https://curve.example.org")
    system.register(
        make_user(roles.PREDICTION_CLIENT), jwks={"keys": [public_jwk(private_key("ES384"), kid=system.kid)]}
    )
    refused(system.get(DISCOVERY), "unknown_key")


def test_a_jku_other_than_the_configured_url_is_refused(ehr):
    refused(ehr.get(DISCOVERY, headers={"jku": "https://attacker.example.org/jwks"}), "untrusted_jku")


def test_an_oversized_token_is_refused_before_it_is_decoded(ehr, settings):
    settings.CDS_HOOKS_MAX_TOKEN_BYTES = 2000
    refused(ehr.get(DISCOVERY, claims={"padding": "x" * 3000}), "token_too_large")


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Basic Zm9vOmJhcg==", "Bearer not-a-jwt"])
def test_a_malformed_authorization_header_is_refused(ehr, header):
    client = ehr.api(None)
    client.credentials(HTTP_AUTHORIZATION=header)
    refused(client.get(DISCOVERY), "malformed_token")


def test_a_token_without_kid_or_typ_is_refused(ehr):
    refused(ehr.get(DISCOVERY, headers={"kid": None}), "malformed_token")
    refused(ehr.get(DISCOVERY, headers={"typ": "at+jwt"}), "malformed_token")


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD, roles.PRIVACY_OFFICER, None])
def test_a_client_whose_account_may_not_predict_is_403(make_user, role):
    system = RecordSystem(issuer=f"https://{role or 'none'}.example.org")
    system.register(make_user(role))
    response = system.get(DISCOVERY)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_a_client_whose_account_is_deactivated_is_refused(ehr):
    ehr.client.user.is_active = False
    ehr.client.user.save()
    refused(ehr.get(DISCOVERY), "inactive_client")


def test_an_ordinary_api_token_is_no_cds_hooks_token(make_user):
    from tests.conftest import jwt_client

    response = jwt_client(make_user(roles.PREDICTION_CLIENT)).get(DISCOVERY)
    assert response.status_code == 401


# --- The client cache: a change refuses the next call, whichever process cached the client ------------


def _client_queries(captured) -> list[str]:
    return [query["sql"] for query in captured.captured_queries if "cds_hooks_trustedclient" in query["sql"]]


def test_a_client_is_read_once_and_then_taken_from_the_cache(ehr):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert ehr.get(DISCOVERY).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert ehr.get(DISCOVERY).status_code == 200
    assert _client_queries(captured) == []


def test_a_client_deactivated_after_a_call_is_refused_at_the_next(ehr):
    assert ehr.get(DISCOVERY).status_code == 200
    ehr.client.is_active = False
    ehr.client.save()
    refused(ehr.get(DISCOVERY), "unknown_issuer")


def test_a_client_whose_account_loses_its_role_after_a_call_is_403_at_the_next(ehr):
    assert ehr.get(DISCOVERY).status_code == 200
    ehr.client.user.groups.clear()
    response = ehr.get(DISCOVERY)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_a_client_whose_account_is_deactivated_after_a_call_is_refused_at_the_next(ehr):
    assert ehr.get(DISCOVERY).status_code == 200
    ehr.client.user.is_active = False
    ehr.client.user.save()
    refused(ehr.get(DISCOVERY), "inactive_client")


def test_a_client_whose_version_in_the_shared_cache_moved_is_read_again(ehr):
    """Another process saved the client: only the shared version tells this one."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cds_hooks.auth import CLIENTS_VERSION_KEY

    assert ehr.get(DISCOVERY).status_code == 200
    cache.incr(CLIENTS_VERSION_KEY)
    with CaptureQueriesContext(connection) as captured:
        assert ehr.get(DISCOVERY).status_code == 200
    assert len(_client_queries(captured)) == 1


def test_a_client_deactivated_by_an_update_no_signal_sees_is_refused_after_the_state_seconds(ehr, monkeypatch):
    """QuerySet.update() moves no version: the cached client lasts at most STATE_SECONDS, as documented."""
    from cds_hooks import auth
    from cds_hooks.models import TrustedClient
    from learning_engine.stateless_auth import STATE_SECONDS

    assert ehr.get(DISCOVERY).status_code == 200
    TrustedClient.objects.filter(pk=ehr.client.pk).update(is_active=False)
    now = time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: now + STATE_SECONDS + 1)
    refused(ehr.get(DISCOVERY), "unknown_issuer")


def test_each_call_gets_a_client_and_account_of_its_own_from_the_cache(ehr):
    """The cached client is copied per request (without pickling's detour): no two requests share
    a client, an account, their state or their cache of related objects."""
    from cds_hooks.auth import CLIENTS

    first, second = CLIENTS.get(ehr.client.issuer), CLIENTS.get(ehr.client.issuer)
    assert first is not None
    assert second is not None
    assert first.pk == second.pk == ehr.client.pk
    assert first.user.pk == second.user.pk == ehr.client.user_id
    assert first is not second
    assert first.user is not second.user
    assert first._state is not second._state
    assert first._state.fields_cache is not second._state.fields_cache
    assert first._state.db == second._state.db == "default"
    assert not first._state.adding
    first.name = "changed"
    first.user.username = "changed"
    first.user = None  # type: ignore[assignment]
    third = CLIENTS.get(ehr.client.issuer)
    assert third is not None
    assert third.name == ehr.client.name
    assert third.user.username == ehr.client.user.username
    assert second.user.username == ehr.client.user.username
