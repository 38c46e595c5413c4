"""The first pages a newcomer meets: ``/`` and ``/api/v1/`` answer (they were Django's 404)."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_the_landing_page_says_what_this_is_and_links_to_admin_docs_api_and_health(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    for href in ("/admin/", "/api/docs/", "/api/v1/", "/api/v1/health/", "/api/schema/"):
        assert f'href="http://testserver{href}"' in body
    assert f"Version {settings.ENGINE_VERSION}" in body


def test_the_admins_view_site_link_leads_to_the_landing_page(admin_client):
    assert 'href="/"' in admin_client.get("/admin/").content.decode()
    assert admin_client.get("/").status_code == 200


def test_the_api_root_lists_its_entry_points_without_authentication():
    response = APIClient().get("/api/v1/")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == settings.ENGINE_VERSION
    assert body["links"]["token"] == "http://testserver/api/v1/auth/token/"
    assert body["links"]["cases"] == "http://testserver/api/v1/cases/"
    assert body["links"]["docs"] == "http://testserver/api/docs/"


def test_the_pages_carry_no_data():
    # Nothing that needs a role is read: the same answer for anyone.
    response = APIClient().get("/api/v1/")
    assert set(response.json()["links"]) == {
        "token",
        "cases",
        "datasets",
        "training_jobs",
        "model_types",
        "health",
        "docs",
        "schema",
    }


def test_the_admin_is_named_for_what_it_is(admin_client):
    body = admin_client.get("/admin/").content.decode()
    assert "Clinical diagnosis engine" in body
    assert "Django administration" not in body
