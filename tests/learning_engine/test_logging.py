"""What the server log says about refused requests and the worker's reloader (issue 12, part 8)."""

from __future__ import annotations

import logging
import sys

import pytest

from learning_engine import roles
from tests.conftest import jwt_client

pytestmark = pytest.mark.django_db

# Every handler a record of a django.* logger can reach, the root's included.
HANDLERS = ("django", "root")


def test_a_refused_admin_page_is_one_log_line_without_a_traceback(client, make_user, captured):
    stream = captured(*HANDLERS)
    client.force_login(make_user(roles.CLINICIAN, is_staff=True))  # may not open users

    response = client.get("/admin/auth/user/")

    assert response.status_code == 403
    lines = stream.getvalue().splitlines()
    assert lines == [line for line in lines if line.strip()]  # nothing but log lines
    assert len(lines) == 1, lines
    assert "WARNING django.request Forbidden (Permission denied): /admin/auth/user/" in lines[0]
    assert "Traceback" not in stream.getvalue()


def test_a_refused_api_request_is_one_log_line(make_user, captured):
    stream = captured(*HANDLERS)

    response = jwt_client(make_user(roles.PREDICTION_CLIENT)).get("/api/v1/cases/")

    assert response.status_code == 403
    assert stream.getvalue().count("\n") == 1
    assert "Forbidden: /api/v1/cases/" in stream.getvalue()


def test_a_server_error_keeps_its_traceback(captured):
    stream = captured(*HANDLERS)
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        logging.getLogger("django.request").error(
            "Internal Server Error: %s", "/api/v1/cases/", exc_info=sys.exc_info(), extra={"status_code": 500}
        )

    assert "Traceback" in stream.getvalue()
    assert "RuntimeError: a bug" in stream.getvalue()


def test_the_reloaders_watching_line_is_printed_once(captured):
    # db_worker (and runserver) with autoreload log this as the child process starts.
    stream = captured(*HANDLERS)

    logging.getLogger("django.utils.autoreload").info("Watching for file changes with %s", "StatReloader")

    assert stream.getvalue().count("Watching for file changes with StatReloader") == 1
