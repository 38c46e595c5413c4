"""The alerts admin: clinical leads configure receivers, the secret is shown once, the log is read-only."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.tasks import default_task_backend as _default_backend
from django.tasks.backends.dummy import DummyBackend
from django.urls import reverse

from alerts.models import AlertDelivery, AlertEvent, AlertReceiver, DeliveryAttempt
from learning_engine import roles

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_task_queue")]
queue = cast(DummyBackend, _default_backend)

RECEIVERS = reverse("admin:alerts_alertreceiver_changelist")
ADD_RECEIVER = reverse("admin:alerts_alertreceiver_add")
EVENTS = reverse("admin:alerts_alertevent_changelist")
DELIVERIES = reverse("admin:alerts_alertdelivery_changelist")
ATTEMPTS = reverse("admin:alerts_deliveryattempt_changelist")
TOKEN_URL = "https://hooks.example.org/services/T000/B000/secret-token-in-path"


@pytest.fixture
def receiver() -> AlertReceiver:
    return AlertReceiver.objects.create(name="ml-chat", kind="webhook", url=TOKEN_URL)


@pytest.fixture
def logged() -> AlertDelivery:
    """An event with one delivery and its first (failed) attempt."""
    hook = AlertReceiver.objects.create(name="pager", kind="webhook", url=TOKEN_URL)
    event = AlertEvent.objects.create(event_type="job.failed", model_type="diagnosis", summary="Job 3 failed", data={})
    delivery = AlertDelivery.objects.create(event=event, receiver=hook, attempts=1)
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=event.created_at,
        duration_ms=12,
        status_code=500,
        error="HTTP 500",
        outcome="retry",
    )
    return delivery


def add_form(**overrides: Any) -> dict[str, Any]:
    form = {"name": "ml-chat", "kind": "webhook", "url": TOKEN_URL, "email_to": "", "model_types": "", "active": "on"}
    form.update(overrides)
    return form


# --- Receivers: configuration ---------------------------------------------------------------------------


def test_a_clinical_lead_adds_a_webhook_and_sees_its_secret_once(staff):
    client, _ = staff(roles.CLINICAL_LEAD)

    response = client.post(
        ADD_RECEIVER, add_form(event_types=["job.failed", "drift.detected"], model_types="diagnosis")
    )

    assert response.status_code == 200
    receiver = AlertReceiver.objects.get()
    assert (receiver.event_types, receiver.model_types) == (["job.failed", "drift.detected"], ["diagnosis"])
    assert receiver.secret.startswith("whsec_")
    assert receiver.secret in response.content.decode()
    # Never again: not on the change form, not in the list.
    change = client.get(reverse("admin:alerts_alertreceiver_change", args=[receiver.pk])).content.decode()
    listing = client.get(RECEIVERS).content.decode()
    for page in (change, listing):
        assert receiver.secret not in page
        assert receiver.secret.removeprefix("whsec_") not in page
    assert receiver.secret_fingerprint() in change
    assert "secret-token-in-path" not in listing
    assert "https://hooks.example.org" in listing


def test_rotating_a_secret_shows_the_new_one_once(staff, receiver):
    client, _ = staff(roles.CLINICAL_LEAD)
    old = receiver.secret
    action = {"action": "rotate_secret_selected", "_selected_action": [receiver.pk]}

    confirm = client.post(RECEIVERS, action)
    assert confirm.status_code == 200
    receiver.refresh_from_db()
    assert receiver.secret == old  # nothing before the confirmation

    done = client.post(RECEIVERS, {**action, "post": "yes"})
    receiver.refresh_from_db()
    assert receiver.secret != old
    assert receiver.secret in done.content.decode()
    assert old not in done.content.decode()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"url": "http://hooks.example.org/x"}, "url", "https only"),
        ({"url": "https://10.0.0.8/hook"}, "url", "not public"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "url", "not public"),
        ({"url": "https://user:pw@hooks.example.org/x"}, "url", "user name or password"),
        ({"url": ""}, "url", "needs its URL"),
        ({"kind": "email", "url": "", "email_to": ""}, "email_to", "at least one address"),
        ({"kind": "email", "url": "", "email_to": "lead@hospital.example\nnot an address"}, "email_to", "Address 2"),
        ({"model_types": "diagnosis, not a slug"}, "model_types", "slug"),
    ],
)
def test_a_bad_receiver_is_refused_beside_its_field(staff, overrides, field, message):
    client, _ = staff(roles.CLINICAL_LEAD)

    response = client.post(ADD_RECEIVER, add_form(**overrides))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert not AlertReceiver.objects.exists()


def test_an_email_receiver_has_no_secret(staff):
    client, _ = staff(roles.CLINICAL_LEAD)
    response = client.post(ADD_RECEIVER, add_form(kind="email", url="", email_to="lead@hospital.example"))
    assert response.status_code == 302
    assert AlertReceiver.objects.get().secret == ""


def test_send_a_test_event_queues_one_delivery_to_the_selected_receiver_only(staff, receiver):
    other = AlertReceiver.objects.create(name="other", kind="email", email_to="x@hospital.example")
    client, _ = staff(roles.CLINICAL_LEAD)
    action = {"action": "send_test_event_selected", "_selected_action": [receiver.pk]}

    assert client.post(RECEIVERS, action).status_code == 200  # the confirmation page
    assert not AlertEvent.objects.exists()
    client.post(RECEIVERS, {**action, "post": "yes"})

    event = AlertEvent.objects.get()
    assert event.event_type == "alert.test"
    assert list(event.deliveries.values_list("receiver", flat=True)) == [receiver.pk]
    assert not other.deliveries.exists()


# --- The log: read-only -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_ml_engineers_and_leads_read_events_and_the_delivery_log(staff, logged, role):
    client, _ = staff(role)
    for url in (
        EVENTS,
        DELIVERIES,
        ATTEMPTS,
        reverse("admin:alerts_alertevent_change", args=[logged.event_id]),
        reverse("admin:alerts_alertdelivery_change", args=[logged.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "secret-token-in-path" not in response.content.decode()
    assert "HTTP 500" in client.get(ATTEMPTS).content.decode()


def test_the_log_is_read_only_even_for_a_superuser(staff, logged):
    client, _ = staff(None, is_superuser=True)
    for name, args in [
        ("admin:alerts_alertevent_add", []),
        ("admin:alerts_alertdelivery_add", []),
        ("admin:alerts_deliveryattempt_add", []),
        ("admin:alerts_alertevent_delete", [logged.event_id]),
        ("admin:alerts_alertdelivery_delete", [logged.pk]),
    ]:
        assert client.get(reverse(name, args=args)).status_code == 403, name
    page = client.get(reverse("admin:alerts_alertevent_change", args=[logged.event_id])).content.decode()
    assert 'name="_save"' not in page


# --- Who may do what ----------------------------------------------------------------------------------------


def test_ml_engineers_may_not_see_or_configure_receivers(staff, receiver):
    client, _ = staff(roles.ML_ENGINEER)
    assert client.get(RECEIVERS).status_code == 403
    assert client.get(ADD_RECEIVER).status_code == 403
    assert client.get(reverse("admin:alerts_alertreceiver_change", args=[receiver.pk])).status_code == 403
    assert client.post(ADD_RECEIVER, add_form(name="exfiltrate")).status_code == 403
    assert not AlertReceiver.objects.filter(name="exfiltrate").exists()


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.PREDICTION_CLIENT, roles.PRIVACY_OFFICER, None])
def test_other_roles_are_refused_every_alerts_page(staff, logged, role):
    client, _ = staff(role)
    receiver = logged.receiver
    for url in (
        RECEIVERS,
        ADD_RECEIVER,
        EVENTS,
        DELIVERIES,
        ATTEMPTS,
        reverse("admin:alerts_alertreceiver_change", args=[receiver.pk]),
    ):
        assert client.get(url).status_code == 403, url
    refused = client.post(
        RECEIVERS, {"action": "send_test_event_selected", "_selected_action": [receiver.pk], "post": "yes"}
    )
    assert refused.status_code == 403
    assert AlertEvent.objects.count() == 1


def test_a_lead_without_the_test_permission_has_no_test_action(staff, receiver, make_user, client):
    from django.contrib.auth.models import Permission

    user = make_user(None, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_alertreceiver"))
    client.force_login(user)
    action = {"action": "send_test_event_selected", "_selected_action": [receiver.pk], "post": "yes"}
    client.post(RECEIVERS, action)
    assert not AlertEvent.objects.exists()
