"""Security headers, sessions and logs (issue 10 part 8): a Content-Security-Policy on the admin
and API pages whose nonce every inline style and script of our templates carries,
``Cache-Control: no-store`` on every answer that may carry patient data, a working-day session,
and no query string (an MRN in the admin's ?q=, an external id in the API's ?search=) in a log."""

from __future__ import annotations

import logging
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from learning_engine import roles
from learning_engine.log_filters import strip_query_strings
from tests.cases.factories import CaseFactory
from tests.conftest import jwt_client
from tests.training.factories import ModelTypeFactory
from training.models import TrainingJob

PASSWORD = "pw-for-tests-only"


class InlineCode(HTMLParser):
    """Every <style>, inline <script> (executable: no src, not a JSON data block) and the attributes
    a strict CSP refuses (style=, on*=)."""

    def __init__(self) -> None:
        super().__init__()
        self.nonces: list[str | None] = []
        self.scripts_with_src: list[str | None] = []
        self.refused: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "style" or (
            tag == "script" and "src" not in attributes and attributes.get("type") != "application/json"
        ):
            self.nonces.append(attributes.get("nonce"))
        for name, _value in attrs:
            if name == "style" or name.startswith("on"):
                self.refused.append(f"<{tag} {name}=...>")


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def assert_inline_code_carries_the_nonce(response) -> int:
    directives = policy(response)
    parser = InlineCode()
    parser.feed(response.content.decode())
    assert parser.refused == [], parser.refused
    for nonce in parser.nonces:
        assert nonce, f"inline code without a nonce in {response.request['PATH_INFO']}"
        assert f"'nonce-{nonce}'" in directives["script-src"]
        assert f"'nonce-{nonce}'" in directives["style-src"]
    return len(parser.nonces)


# --- Content-Security-Policy -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/admin/login/", "/api/v1/cases/", "/api/v1/health/", "/api/docs/", "/"])
def test_every_page_has_a_strict_content_security_policy(client, url):
    response = client.get(url)

    directives = policy(response)
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    header = response["Content-Security-Policy"]
    assert "unsafe-inline" not in header
    assert "unsafe-eval" not in header


@pytest.fixture
def superuser_client(client, make_user):
    client.force_login(make_user(None, is_superuser=True, is_staff=True))
    return client


@pytest.mark.django_db
def test_the_admin_pages_inline_styles_and_scripts_carry_the_responses_nonce(superuser_client, make_user):
    clinician = make_user(roles.CLINICIAN)
    case = CaseFactory.create(submitted_by=clinician)
    job = TrainingJob.submit(
        model_type=ModelTypeFactory.create(diagnosis=True), by=clinician, algorithm="logistic_regression"
    )
    job.start(worker_id="test")  # a running job: its page loads the live refresh script
    pages = [
        reverse("admin:index"),
        reverse("admin:cases_case_changelist"),
        reverse("admin:cases_case_change", args=[case.pk]),
        reverse("admin:cases_case_statistics"),
        reverse("admin:training_trainingjob_changelist"),
        reverse("admin:training_trainingjob_change", args=[job.pk]),
        reverse("admin:training_trainingjob_live", args=[job.pk]),
        reverse("admin:models_registry_modelversion_changelist"),
        reverse("admin:models_registry_abtest_add"),
    ]
    inline = 0
    for url in pages:
        response = superuser_client.get(url)
        assert response.status_code == 200, url
        inline += assert_inline_code_carries_the_nonce(response)
    assert inline >= 4  # the case, statistics and training styles at least: the check saw something

    # The confirmation page of an action (its cancel script).
    response = superuser_client.post(
        reverse("admin:cases_case_changelist"), {"action": "retract_selected", "_selected_action": [case.pk]}
    )
    assert response.status_code == 200
    assert_inline_code_carries_the_nonce(response)


@pytest.mark.django_db
def test_swagger_ui_runs_under_the_policy(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert assert_inline_code_carries_the_nonce(response) >= 2  # its style and its start-up script


# --- Cache-Control ------------------------------------------------------------------------------------


def assert_no_store(response) -> None:
    assert "no-store" in response["Cache-Control"], response.get("Cache-Control")
    assert "private" in response["Cache-Control"]


@pytest.mark.django_db
def test_api_answers_are_never_stored(clinician):
    case = CaseFactory.create(submitted_by=clinician)
    client = jwt_client(clinician)

    for response in (
        client.get("/api/v1/cases/"),
        client.get(f"/api/v1/cases/{case.pk}/"),
        client.get("/api/v1/cases/", {"search": case.external_id}),
        client.get("/api/v1/cases/999999/"),  # errors too
        jwt_client(None).get("/api/v1/cases/"),
        client.post("/api/v1/cases/", {"bad": "record"}, format="json"),
    ):
        assert_no_store(response)


@pytest.mark.django_db
def test_admin_answers_are_never_stored(client, make_user):
    user = make_user(roles.CLINICIAN, is_staff=True)
    case = CaseFactory.create()
    assert_no_store(client.get("/admin/login/"))
    client.force_login(user)

    for url in (reverse("admin:cases_case_changelist"), reverse("admin:cases_case_change", args=[case.pk])):
        assert_no_store(client.get(url, {"q": case.external_id} if url.endswith("case/") else {}))


# --- Sessions -----------------------------------------------------------------------------------------


def test_a_session_lasts_a_working_day_by_default(settings):
    assert settings.SESSION_COOKIE_AGE == 10 * 3600


@pytest.mark.django_db
def test_the_admin_login_sets_a_session_cookie_of_the_configured_age(client, make_user, settings):
    settings.SESSION_COOKIE_AGE = 8 * 3600
    user = make_user(roles.CLINICIAN, is_staff=True)

    response = client.post("/admin/login/?next=/admin/", {"username": user.username, "password": PASSWORD})

    assert response.status_code == 302
    assert response.cookies["sessionid"]["max-age"] == 8 * 3600
    assert client.session.get_expiry_age() == 8 * 3600


# --- Logs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '"GET /admin/cases/case/?q=7717702 HTTP/1.1" 200 5120',
            '"GET /admin/cases/case/?[query removed] HTTP/1.1" 200 5120',
        ),
        ("GET /api/v1/cases/?search=EXT-1&page=2 HTTP/1.1", "GET /api/v1/cases/?[query removed] HTTP/1.1"),
        ("https://engine.example/api/v1/cases/?search=EXT-1", "https://engine.example/api/v1/cases/?[query removed]"),
        ("Not Found: /api/v1/cases/12/", "Not Found: /api/v1/cases/12/"),
        ("Is this a question? yes", "Is this a question? yes"),
    ],
)
def test_query_strings_are_cut_from_log_text(line, expected):
    assert strip_query_strings(line) == expected


def test_runservers_request_log_keeps_no_identifier(captured):
    stream = captured("django.server")
    server_logger = logging.getLogger("django.server")  # django.core.servers.basehttp's logger

    # What WSGIRequestHandler.log_message logs for every request.
    server_logger.info('"%s" %s %s', "GET /admin/cases/case/?q=MRN-7717702 HTTP/1.1", "200", "5120")
    server_logger.warning('"%s" %s %s', "GET /api/v1/cases/?search=EXT-9912 HTTP/1.1", "404", "58")

    output = stream.getvalue()
    assert "/admin/cases/case/?[query removed]" in output
    assert "MRN-7717702" not in output
    assert "EXT-9912" not in output


@pytest.mark.parametrize(
    ("name", "handled_by"), [("django.request", "django"), ("learning_engine",) * 2, ("cases",) * 2]
)
def test_other_loggers_keep_no_query_string_either(captured, name, handled_by):
    stream = captured(handled_by)

    logging.getLogger(name).warning("Bad request: %s", "/api/v1/cases/?search=EXT-9912")

    assert "EXT-9912" not in stream.getvalue()
    assert "/api/v1/cases/?[query removed]" in stream.getvalue()


@pytest.mark.django_db
def test_a_search_through_the_test_server_logs_no_identifier(client, make_user, captured):
    """django.request logs a refused request's path: never its query string."""
    stream = captured("django")
    user = make_user(roles.ML_ENGINEER, is_staff=True)  # no PHI: a search on an MRN is refused (400)
    client.force_login(user)

    client.get("/api/v1/cases/", {"search": "MRN-7717702", "ordering": "nonsense"})

    assert "MRN-7717702" not in stream.getvalue()


@pytest.mark.django_db
def test_the_browsable_apis_inline_code_carries_the_nonce(client, clinician):
    client.force_login(clinician)

    response = client.get("/api/v1/cases/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    parser = InlineCode()
    parser.feed(response.content.decode())
    nonce = policy(response)["style-src"][-1]
    assert parser.nonces  # the highlighting style at least
    assert all(f"'nonce-{found}'" == nonce for found in parser.nonces)


@pytest.mark.parametrize(
    "preset",
    [{}, {"Cache-Control": "public, max-age=600"}, {"Expires": "Thu, 01 Jan 2099 00:00:00 GMT"}, {"Vary": "Accept"}],
)
def test_the_no_store_shortcut_writes_what_django_writes(preset, monkeypatch):
    # NoStoreMiddleware sets the two headers itself on a response that has neither.
    from django.http import HttpRequest, HttpResponse
    from django.utils import cache as django_cache

    from learning_engine import headers

    monkeypatch.setattr(headers.time, "time", lambda: 1_800_000_000.0)
    monkeypatch.setattr("django.utils.cache.time.time", lambda: 1_800_000_000.0)
    request = HttpRequest()
    request.path = "/api/v1/model-types/x/predict/"
    ours = headers.NoStoreMiddleware(lambda request: HttpResponse(headers=preset))(request)
    django = HttpResponse(headers=preset)
    django_cache.add_never_cache_headers(django)
    assert dict(ours.headers) == dict(django.headers)
