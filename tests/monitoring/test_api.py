"""The monitoring API and admin page: who may see them, what they show, and bad input."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from learning_engine import roles
from monitoring.compute import compute_snapshot, version_scope
from tests.conftest import jwt_client
from tests.models_registry.serving.factories import PNEUMONIA_FEATURES
from tests.monitoring.factories import predict_batch, with_subjects

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]

URL = "/api/v1/model-types/{slug}/monitoring/"
PAGE = "/admin/monitoring/monitoringsnapshot/model-type/{slug}/"


@pytest.fixture
def monitored(version, system, clinician, settings):
    settings.MONITORING_MIN_INPUTS = 10
    answered = predict_batch(system, with_subjects(PNEUMONIA_FEATURES, 20, "subject-key-secret"))
    for prediction in answered[:12]:
        prediction.give_feedback(diagnosis_code=prediction.predicted_code, by=clinician)
    first = compute_snapshot(version_scope(version))
    second = compute_snapshot(version_scope(version))
    return version, [first, second]


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_engineers_and_leads_read_the_figures(monitored, make_user, role):
    version, (first, second) = monitored
    response = jwt_client(make_user(role)).get(URL.format(slug=version.model_type.slug))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["model_type"] == version.model_type.slug
    assert body["version"] == version.version
    assert body["has_reference"] is True
    assert body["settings"]["min_inputs"] == 10
    assert [row["id"] for row in body["history"]] == [first.pk, second.pk]  # oldest first
    latest = body["latest"]
    assert latest["id"] == second.pk
    assert (latest["predictions"], latest["labelled"], latest["live_accuracy"]) == (20, 12, 1.0)
    assert latest["accuracy_low"] < 1.0
    assert latest["offline_accuracy"] == version.metrics["accuracy"]
    assert latest["drift"]["findings.temperature_c"]["psi"] > 1.0
    assert "findings.temperature_c" in latest["drifted"]
    assert len(latest["calibration"]) == 10
    assert body["arms"] == []


@pytest.mark.parametrize("role", ["anonymous", roles.CLINICIAN, roles.PREDICTION_CLIENT, roles.PRIVACY_OFFICER])
def test_clinicians_clients_and_privacy_officers_are_refused(monitored, api_client_for, role):
    version, _ = monitored
    response = api_client_for(role).get(URL.format(slug=version.model_type.slug))
    assert response.status_code == (401 if role == "anonymous" else 403)
    assert "code" in response.json()
    assert "live_accuracy" not in response.content.decode()


def test_the_answer_holds_no_subject_and_no_value(monitored, make_user):
    version, _ = monitored
    response = jwt_client(make_user(roles.ML_ENGINEER)).get(URL.format(slug=version.model_type.slug))
    assert "subject-key-secret" not in response.content.decode()
    # The temperature every record sent: no value holds it. Leaves, not the text: a timestamp's
    # seconds ("13:12:39.41") hold "39.4" by chance (a PostgreSQL CI pass failed that way).
    leaves = list(_leaves(response.json()))
    assert leaves, "the answer should hold figures"
    assert not [leaf for leaf in leaves if leaf == 39.4 or (isinstance(leaf, str) and leaf.startswith("39.4"))]


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_bad_input_is_a_clear_4xx(monitored, make_user):
    version, _ = monitored
    client = jwt_client(make_user(roles.ML_ENGINEER))
    slug = version.model_type.slug
    for query in ("?limit=0", "?limit=501", "?limit=many"):
        response = client.get(URL.format(slug=slug) + query)
        assert response.status_code == 400, query
        assert response.json()["code"] == "invalid"
    assert client.get(URL.format(slug="no-such-type")).status_code == 404
    unknown = client.get(URL.format(slug=slug) + "?version=v9.9.9")
    assert unknown.status_code == 404
    assert "code" in unknown.json()
    limited = client.get(URL.format(slug=slug) + "?limit=1").json()
    assert len(limited["history"]) == 1


def test_another_version_and_one_never_monitored(monitored, make_user, engineer, lead):
    from tests.models_registry.serving.factories import served_version

    version, _ = monitored
    other = served_version(model_type=version.model_type, engineer=engineer, lead=lead, activate=False, seed=2)
    body = jwt_client(make_user(roles.CLINICAL_LEAD)).get(
        URL.format(slug=version.model_type.slug) + f"?version={other.version}"
    )
    assert body.status_code == 200
    assert (body.json()["version"], body.json()["latest"], body.json()["history"]) == (other.version, None, [])
    assert body.json()["has_reference"] is False


# --- The admin page -----------------------------------------------------------------------------


def admin_client(user) -> Client:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_the_admin_page_shows_charts_and_figures(monitored, make_user, role):
    version, _ = monitored
    response = admin_client(make_user(role)).get(PAGE.format(slug=version.model_type.slug))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="line-chart-svg"') == 2  # live accuracy with its interval; PSI per input
    assert "Live accuracy (anytime-valid interval) against the offline accuracy" in page
    assert "offline - tolerance" in page
    assert "findings.temperature_c" in page
    assert "not degraded" in page
    assert "subject-key-secret" not in page
    listing = admin_client(make_user(role)).get("/admin/monitoring/monitoringsnapshot/")
    assert listing.status_code == 200
    assert PAGE.format(slug=version.model_type.slug) in listing.content.decode()


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.PRIVACY_OFFICER, roles.PREDICTION_CLIENT])
def test_the_admin_page_refuses_other_roles(monitored, make_user, role):
    version, _ = monitored
    client = admin_client(make_user(role))
    assert client.get(PAGE.format(slug=version.model_type.slug)).status_code == 403
    assert client.get("/admin/monitoring/monitoringsnapshot/").status_code == 403


def test_the_admin_page_of_an_unknown_type_or_version_is_404(monitored, make_user):
    version, _ = monitored
    client = admin_client(make_user(roles.ML_ENGINEER))
    assert client.get(PAGE.format(slug="no-such-type")).status_code == 404
    assert client.get(PAGE.format(slug=version.model_type.slug) + "?version=v9").status_code == 404
    # PostgreSQL refuses a NUL in a text lookup with an error (a 500): the page says 404 first.
    assert client.get(PAGE.format(slug=version.model_type.slug) + "?version=v1%00").status_code == 404


def test_a_version_without_a_reference_says_so_on_the_page(make_user, system):
    from tests.models_registry.serving.factories import served_version

    version = served_version()
    predict_batch(system, [PNEUMONIA_FEATURES] * 3)
    compute_snapshot(version_scope(version))
    page = admin_client(make_user(roles.CLINICAL_LEAD)).get(PAGE.format(slug=version.model_type.slug))
    assert "recorded no training reference" in page.content.decode()


# --- manage.py monitor --------------------------------------------------------------------------


def test_monitor_takes_a_snapshot_now(version, system, capsys):
    from monitoring.models import MonitoringSnapshot

    predict_batch(system, [PNEUMONIA_FEATURES] * 3)
    call_command("monitor", "--model-type", version.model_type.slug)
    out = capsys.readouterr().out
    snapshot = MonitoringSnapshot.objects.get()
    assert snapshot.predictions == 3
    assert f"{version.model_type.slug} {version.version}: 3 answers in the window" in out
    assert "1 snapshot(s)" in out


def test_monitor_refuses_an_unknown_type_and_one_with_nothing_served(model_type):
    with pytest.raises(CommandError, match="No model type"):
        call_command("monitor", "--model-type", "no-such-type")
    with pytest.raises(CommandError, match="nothing to monitor"):
        call_command("monitor", "--model-type", model_type.slug)
