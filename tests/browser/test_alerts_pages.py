"""The alerts admin in a real browser: receivers (clinical leads only), events and the delivery log
(ML engineers and clinical leads), filled by the engine's own code: events emitted as monitoring
emits them, delivered to a local webhook (a failure, then a retry that lands) and by e-mail.
Other roles are refused; no console error, no CSP report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from tests.alerts.conftest import webhook_server  # noqa: F401  (a fixture: the local receiver)
from tests.browser.test_csp import watch

RECEIVERS = "/admin/alerts/alertreceiver/"
EVENTS = "/admin/alerts/alertevent/"
DELIVERIES = "/admin/alerts/alertdelivery/"
ATTEMPTS = "/admin/alerts/deliveryattempt/"


def hidden_width(page: Any) -> dict[str, int]:
    """How far the list's table runs past its box (0: no column scrolled out of sight)."""
    return page.evaluate(
        "() => { const box = document.querySelector('#changelist .results');"
        " return {box: box.clientWidth, inner: box.scrollWidth}; }"
    )


@pytest.fixture
def alerts(site, webhook_server) -> dict[str, Any]:  # noqa: F811
    """Two receivers (a webhook on 127.0.0.1, an e-mail list), three events emitted through
    ``alerts.events.emit``, and every delivery attempted: the webhook first answers 500 (a retry),
    then 200."""
    from alerts.delivery import attempt
    from alerts.event_types import EventType
    from alerts.events import emit
    from alerts.models import AlertDelivery, AlertEvent, AlertReceiver

    hook = AlertReceiver.objects.create(
        name="ml-chat", kind="webhook", url=webhook_server.url("/hooks/T000/secret-path")
    )
    mail = AlertReceiver.objects.create(name="clinical-leads", kind="email", email_to="lead@example.org")
    emit(
        EventType.DRIFT_DETECTED,
        model_type="diagnosis",
        summary="diagnosis v1.0.0: 2 input(s) drifted (PSI at or above 0.2)",
        data={"version": "v1.0.0", "psi": {"findings.temperature_c": 0.31, "findings.crp": 0.24}, "threshold": 0.2},
    )
    emit(
        EventType.VERSION_DEGRADED,
        model_type="diagnosis",
        summary="diagnosis v1.0.0 is degraded: live accuracy below offline accuracy minus the tolerance",
        data={"version": "v1.0.0", "live_accuracy": 0.71, "interval": [0.62, 0.79], "offline_accuracy": 0.9},
    )
    emit(EventType.JOB_FAILED, model_type="diagnosis", summary="Training job 7 of diagnosis failed", data={"job": 7})
    assert AlertEvent.objects.count() == 3
    webhook_server.status = 500
    first = AlertDelivery.objects.filter(receiver=hook).order_by("pk").first()
    assert first is not None
    attempt(first.pk)
    webhook_server.status = 200
    later = timezone.now() + dt.timedelta(hours=1)
    for delivery in AlertDelivery.objects.order_by("pk"):
        attempt(delivery.pk, now=later)
    return {"hook": hook, "mail": mail, "first": first}


@pytest.mark.parametrize("username", ["demo-ml-engineer", "demo-clinical-lead"])
def test_ml_staff_read_events_deliveries_and_the_attempt_log(site, alerts, username):
    page = site.login(username)
    problems = watch(page, [])
    page.goto(EVENTS)
    site.shoot(page, "alert-events")
    assert page.locator("#result_list tbody tr").count() == 3
    assert page.locator("#result_list tbody tr", has_text="Drift detected").count() == 1

    page.locator("#result_list tbody tr", has_text="Drift detected").locator("th a").click()
    page.wait_for_load_state()
    site.shoot(page, "alert-event")
    assert "findings.temperature_c" in page.locator(".field-data .readonly").inner_text()
    deliveries = page.locator(".inline-group tbody tr.has_original")
    assert deliveries.count() == 2  # one per receiver

    page.goto(DELIVERIES)
    site.shoot(page, "alert-deliveries")
    assert page.locator("#result_list tbody tr").count() == 6
    width = hidden_width(page)
    assert width["inner"] <= width["box"], width  # the status and the receiver are in sight
    page.goto(ATTEMPTS)
    site.shoot(page, "delivery-attempts")
    width = hidden_width(page)
    assert width["inner"] <= width["box"], width  # the error is in sight
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 7  # six deliveries, the first one twice
    assert rows.filter(has_text="500").count() == 1
    assert "secret-path" not in page.content()  # the webhook's token-bearing path never shows in the log
    assert problems == []


def test_a_clinical_lead_sees_the_receivers_and_a_webhooks_fingerprint_only(site, alerts):
    page = site.login("demo-clinical-lead")
    problems = watch(page, [])
    page.goto(RECEIVERS)
    site.shoot(page, "alert-receivers")
    assert page.locator("#result_list tbody tr").count() == 2
    assert "secret-path" not in page.locator("#result_list").inner_text()  # the origin only
    page.locator("#result_list tbody tr", has_text="ml-chat").locator("th a").click()
    page.wait_for_selector("#alertreceiver_form")
    site.shoot(page, "alert-receiver")
    assert "sha256:" in page.locator(".field-secret_fingerprint .readonly").inner_text()  # a fingerprint
    assert alerts["hook"].secret not in page.content()  # never the secret itself
    assert problems == []


def test_an_ml_engineer_is_refused_the_receivers(site, alerts):
    page = site.login("demo-ml-engineer")
    response = page.goto(RECEIVERS)
    assert response is not None
    assert response.status == 403
    site.shoot(page, "receivers-refused")


@pytest.mark.parametrize("username", ["demo-clinician", "demo-privacy-officer"])
def test_other_roles_are_refused_every_alerts_page(site, alerts, username):
    page = site.login(username)
    for url in (RECEIVERS, EVENTS, DELIVERIES, ATTEMPTS):
        response = page.goto(url)
        assert response is not None
        assert response.status == 403, url
    site.shoot(page, "alerts-refused")


def test_an_ml_engineer_meets_no_link_to_a_receiver_page(site, alerts):
    page = site.login("demo-ml-engineer")
    page.goto(EVENTS)
    page.locator("#result_list tbody tr", has_text="Drift detected").locator("th a").click()
    page.wait_for_load_state()
    assert page.locator(".inline-group tbody tr.has_original", has_text="ml-chat").count() == 1
    assert page.locator(f'#content-main a[href^="{RECEIVERS}"]').count() == 0
