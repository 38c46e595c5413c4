"""The admin of trusted record systems: superusers only; keys checked on save."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from cds_hooks.models import TrustedClient
from learning_engine import roles
from tests.cds_hooks.factories import private_key, public_jwk

pytestmark = pytest.mark.django_db

LIST = reverse("admin:cds_hooks_trustedclient_changelist")
ADD = reverse("admin:cds_hooks_trustedclient_add")


def form(user, **changes):
    data = {
        "name": "General Hospital EHR",
        "issuer": "https://ehr.general-hospital.org/",
        "audience": "https://cds.general-hospital.org",
        "jwks_url": "",
        "jwks": json.dumps({"keys": [public_jwk(private_key("ES384"), kid="k1", alg="ES384")]}),
        "user": str(user.pk),
        "is_active": "on",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.ML_ENGINEER, roles.CLINICAL_LEAD, roles.PRIVACY_OFFICER])
def test_no_role_may_see_or_add_trusted_clients(client, make_user, role):
    client.force_login(make_user(role, is_staff=True))
    assert client.get(LIST).status_code == 403
    response = client.post(ADD, form(make_user(roles.PREDICTION_CLIENT)))
    assert response.status_code == 403
    assert not TrustedClient.objects.exists()


def test_a_superuser_registers_a_record_system_with_inline_keys(admin_client, make_user):
    account = make_user(roles.PREDICTION_CLIENT)
    response = admin_client.post(ADD, form(account))
    assert response.status_code == 302, response.content.decode()[:2000]
    client = TrustedClient.objects.get()
    assert (client.issuer, client.user, client.is_active) == ("https://ehr.general-hospital.org/", account, True)


def test_a_private_key_pasted_as_jwks_is_a_form_error_beside_its_field(admin_client, make_user):
    jwk = public_jwk(private_key("ES384"), kid="k1")
    jwk["d"] = "AAAA"
    response = admin_client.post(ADD, form(make_user(roles.PREDICTION_CLIENT), jwks=json.dumps({"keys": [jwk]})))
    assert response.status_code == 200
    assert "leaked" in response.context["adminform"].form.errors["jwks"][0]
    assert not TrustedClient.objects.exists()


def test_a_jwks_url_at_the_metadata_address_is_a_form_error(admin_client, make_user):
    data = form(make_user(roles.PREDICTION_CLIENT), jwks="", jwks_url="https://169.254.169.254/latest/meta-data")
    response = admin_client.post(ADD, data)
    assert response.status_code == 200
    assert "link-local" in response.context["adminform"].form.errors["jwks_url"][0]
