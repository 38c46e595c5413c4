"""The CDS Hooks trusted clients in a real browser: a superuser lists the record systems, opens one
(its keys inline as a JWK Set) and registers another through the form, a private key pasted as
keys being refused beside its field; no role may open these pages. No console error, no CSP report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.test_alerts_pages import hidden_width
from tests.browser.test_csp import watch

LIST = "/admin/cds_hooks/trustedclient/"
ADD = "/admin/cds_hooks/trustedclient/add/"


@pytest.fixture
def record_system(site) -> Any:
    from tests.cds_hooks.factories import RecordSystem

    system = RecordSystem()
    system.client = system.register(site.users["demo-prediction-client"], name="General Hospital EHR")
    return system


def test_a_superuser_reads_and_registers_record_systems(site, record_system):
    from cds_hooks.models import TrustedClient
    from tests.cds_hooks.factories import private_key, public_jwk

    page = site.login("demo-admin")
    problems = watch(page, [])
    page.goto(LIST)
    site.shoot(page, "trusted-clients")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "General Hospital EHR" in rows.first.inner_text()
    assert record_system.issuer in rows.first.inner_text()
    assert hidden_width(page)["inner"] <= hidden_width(page)["box"]  # "updated at" is in sight

    rows.first.locator("th a").click()
    page.wait_for_selector("#trustedclient_form")
    site.shoot(page, "trusted-client")
    keys = json.loads(page.locator("#id_jwks").input_value())
    assert [key["kid"] for key in keys["keys"]] == [record_system.kid]
    assert page.locator(".field-created_at .readonly").inner_text() != ""

    # A private key pasted as the keys: refused beside the field, nothing stored.
    leaked = public_jwk(private_key("ES256"), kid="leaked-1", alg="ES256")
    leaked["d"] = "AAAA"
    page.goto(ADD)
    page.fill("#id_name", "Leaky EHR")
    page.fill("#id_issuer", "https://ehr.leaky.example.org/")
    page.fill("#id_audience", "https://cds.leaky.example.org")
    page.fill("#id_jwks", json.dumps({"keys": [leaked]}))
    page.fill("#id_user", str(site.users["demo-prediction-client"].pk))
    page.click('#trustedclient_form [name="_save"]')
    page.wait_for_selector(".errornote")
    site.shoot(page, "trusted-client-private-key-refused")
    assert "leaked" in page.locator(".field-jwks .errorlist").inner_text()

    page.fill("#id_jwks", json.dumps({"keys": [public_jwk(private_key("ES256"), kid="k2", alg="ES256")]}))
    page.fill("#id_name", "Second EHR")
    page.click('#trustedclient_form [name="_save"]')
    page.wait_for_selector("#result_list")
    site.shoot(page, "trusted-client-added")
    assert TrustedClient.objects.filter(name="Second EHR", issuer="https://ehr.leaky.example.org/").exists()
    assert page.locator("#result_list tbody tr").count() == 2
    assert problems == []


@pytest.mark.parametrize("username", ["demo-clinical-lead", "demo-ml-engineer", "demo-clinician"])
def test_no_role_may_open_the_trusted_clients(site, record_system, username):
    page = site.login(username)
    assert page.locator(f'#content-main a[href="{LIST}"]').count() == 0
    for url in (LIST, ADD, f"{LIST}{record_system.client.pk}/change/"):
        response = page.goto(url)
        assert response is not None
        assert response.status == 403, url
    site.shoot(page, "trusted-clients-refused")
    assert record_system.issuer not in page.content()
