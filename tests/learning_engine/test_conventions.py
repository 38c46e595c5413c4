"""API conventions every app relies on: JSON errors with codes, 413, health, the schema, settings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.conftest import jwt_client

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_unknown_api_url_is_a_json_404():
    response = APIClient().get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_anonymous_requests_get_401_with_a_code():
    response = APIClient().get("/api/v1/cases/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_a_body_over_the_limit_gets_413_not_500(clinician, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    response = jwt_client(clinician).post("/api/v1/cases/", data="x" * 5000, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@pytest.mark.django_db
def test_malformed_json_gets_400_with_a_code(clinician):
    response = jwt_client(clinician).post("/api/v1/cases/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.django_db
def test_pagination_caps_the_page_size(clinician, settings):
    settings.MAX_PAGE_SIZE = 3
    response = jwt_client(clinician).get("/api/v1/cases/?page_size=1000")
    assert response.status_code == 200
    assert response.json()["results"] == [] or len(response.json()["results"]) <= 3


@pytest.mark.django_db
def test_health_answers_without_authentication():
    response = APIClient().get("/api/v1/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["pending_migrations"] == 0
    assert body["version"]


@pytest.mark.django_db
def test_health_reports_degraded_when_a_check_fails(monkeypatch):
    from learning_engine import health

    monkeypatch.setitem(health.HEALTH_CHECKS, "broken", lambda: {"ok": False})
    response = APIClient().get("/api/v1/health/")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"


@pytest.mark.django_db
def test_openapi_schema_generates_without_warnings(tmp_path):
    # --fail-on-warn turns every drf-spectacular warning (an unannotated view, a guessed type) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/cases/" in (tmp_path / "schema.yml").read_text()


@pytest.mark.django_db
def test_swagger_ui_is_served_from_local_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
    assert "http://" not in html
    assert "https://" not in html.replace("https://swagger.io", "")


@pytest.mark.django_db
def test_schema_endpoint_serves_openapi_3(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def fresh_keys() -> dict[str, str]:
    return {"SECRET_KEY": secrets.token_urlsafe(48), "PSEUDONYM_KEY": secrets.token_urlsafe(48)}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "PSEUDONYM_KEY", "DEBUG", "SECURE_SSL_REDIRECT"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_secrets_stop_start_up_with_a_clear_message_when_debug_is_off():
    result = _manage("check", env={"DEBUG": "0"})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_short_pseudonym_key_is_refused():
    result = _manage("check", env={"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(48), "PSEUDONYM_KEY": "short"})
    assert result.returncode != 0
    assert "PSEUDONYM_KEY must be at least" in result.stderr


def test_check_deploy_is_clean_with_production_like_settings(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "PSEUDONYM_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "engine.hospital.example",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_storage_bucket_without_an_object_storage_backend_is_refused():
    result = _manage("check", env={"DEBUG": "1", "STORAGE_BUCKET": "clinical-engine-artifacts", **fresh_keys()})
    assert result.returncode != 0
    assert "STORAGE_BUCKET needs STORAGE_BACKEND" in result.stderr
    assert "Traceback" not in result.stderr
