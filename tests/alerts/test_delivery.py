"""Delivery: signed webhooks and e-mails, the log row per attempt, backoff with jitter, giving up."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from typing import cast

import pytest
from django.core import mail
from django.tasks import default_task_backend as _default_backend
from django.tasks.backends.dummy import DummyBackend
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from alerts import delivery
from alerts.events import EventType, emit
from alerts.models import AlertDelivery, AlertEvent, AlertReceiver, DeliveryAttempt
from alerts.tasks import deliver_alert

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_task_queue")]
queue = cast(DummyBackend, _default_backend)


def webhook(server, **fields) -> AlertReceiver:
    fields.setdefault("name", f"hook-{AlertReceiver.objects.count()}")
    return AlertReceiver.objects.create(kind="webhook", url=server.url(), **fields)


def emitted(django_capture_on_commit_callbacks, event_type=EventType.JOB_FAILED, model_type="diagnosis") -> AlertEvent:
    with django_capture_on_commit_callbacks(execute=True):
        emit(event_type, model_type=model_type, summary="Training job 12 failed", data={"job": 12})
    return AlertEvent.objects.latest("id")


def only_delivery() -> AlertDelivery:
    return AlertDelivery.objects.select_related("event", "receiver").get()


# --- Who receives what ------------------------------------------------------------------------------


def test_an_event_goes_to_each_active_receiver_that_wants_it_and_is_queued(
    webhook_server, django_capture_on_commit_callbacks
):
    everything = webhook(webhook_server, name="everything")
    jobs = webhook(webhook_server, name="jobs", event_types=["job.failed"], model_types=["diagnosis"])
    webhook(webhook_server, name="drift only", event_types=["drift.detected"])
    webhook(webhook_server, name="other model", model_types=["breast-mass"])
    webhook(webhook_server, name="off", active=False)

    event = emitted(django_capture_on_commit_callbacks)

    assert set(event.deliveries.values_list("receiver", flat=True)) == {everything.pk, jobs.pk}
    queued = sorted(result.args[0] for result in queue.results if result.task.name == "deliver_alert")
    assert queued == sorted(event.deliveries.values_list("pk", flat=True))


def test_the_test_event_is_never_sent_by_subscription(webhook_server):
    receiver = webhook(webhook_server)
    event = AlertEvent.objects.create(event_type=EventType.TEST, summary="Test", data={})
    assert not receiver.wants(event)


# --- A webhook ------------------------------------------------------------------------------------------


def test_a_delivered_webhook_is_signed_so_a_standard_library_verifies_it(
    webhook_server, django_capture_on_commit_callbacks
):
    receiver = webhook(webhook_server)
    event = emitted(django_capture_on_commit_callbacks)

    outcome = delivery.attempt(only_delivery().pk)

    assert (outcome.attempted, outcome.status) == (True, "delivered")
    request = webhook_server.requests[-1]
    assert request["path"] == "/hooks/engine"
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert headers["webhook-id"] == f"msg_{event.event_id.hex}"
    assert headers["content-type"] == "application/json"
    document = Webhook(receiver.secret).verify(request["body"], headers)
    assert document["type"] == "job.failed"
    assert document["data"] == {
        "id": str(event.event_id),
        "model_type": "diagnosis",
        "summary": "Training job 12 failed",
        "details": {"job": 12},
    }
    with pytest.raises(Exception, match="signature"):
        Webhook(AlertReceiver(kind="webhook").secret or "whsec_" + "A" * 44).verify(request["body"], headers)
    row = DeliveryAttempt.objects.get()
    assert (row.number, row.status_code, row.outcome, row.error, row.next_attempt_at) == (1, 200, "delivered", "", None)
    assert only_delivery().finished_at is not None


def test_a_failed_attempt_is_logged_and_retried_after_a_jittered_backoff(
    webhook_server, settings, django_capture_on_commit_callbacks
):
    settings.ALERTS_RETRY_BASE_SECONDS = 60
    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    webhook_server.status = 500
    pending = only_delivery()

    before = timezone.now()
    deliver_alert.call(pending.pk)

    row = DeliveryAttempt.objects.get()
    assert (row.number, row.status_code, row.outcome, row.error) == (1, 500, "retry", "HTTP 500")
    assert row.duration_ms >= 0
    assert row.next_attempt_at is not None
    waited = (row.next_attempt_at - before).total_seconds()
    assert 30 <= waited <= 61  # half of 60 s, plus up to the other half
    stored = only_delivery()
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("pending", 1, row.next_attempt_at)
    # The next attempt is queued for then, and an attempt before then does nothing.
    retry = [result for result in queue.results if result.task.name == "deliver_alert" and result.task.run_after]
    assert [result.task.run_after for result in retry] == [row.next_attempt_at]
    assert delivery.attempt(pending.pk).attempted is False
    assert len(webhook_server.requests) == 1


def test_delivery_gives_up_after_the_last_attempt(webhook_server, settings, django_capture_on_commit_callbacks):
    settings.ALERTS_MAX_ATTEMPTS = 3
    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    webhook_server.status = 503
    pending = only_delivery()

    outcomes = []
    for _ in range(4):
        due = AlertDelivery.objects.get(pk=pending.pk).next_attempt_at
        outcomes.append(delivery.attempt(pending.pk, now=(due or timezone.now()) + dt.timedelta(seconds=1)))

    assert [outcome.attempted for outcome in outcomes] == [True, True, True, False]
    log = list(DeliveryAttempt.objects.filter(delivery=pending).values_list("number", "outcome", "next_attempt_at"))
    assert [(number, outcome) for number, outcome, _ in log] == [(1, "retry"), (2, "retry"), (3, "gave_up")]
    assert log[-1][2] is None
    stored = only_delivery()
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("failed", 3, None)
    assert len(webhook_server.requests) == 3


def test_a_410_gone_gives_up_at_once_and_turns_the_receiver_off(webhook_server, django_capture_on_commit_callbacks):
    receiver = webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    webhook_server.status = 410

    delivery.attempt(only_delivery().pk)

    assert only_delivery().status == "failed"
    receiver.refresh_from_db()
    assert receiver.active is False
    assert "410" in receiver.disabled_reason


def test_a_retry_after_longer_than_the_backoff_is_honoured(
    webhook_server, settings, django_capture_on_commit_callbacks
):
    settings.ALERTS_RETRY_BASE_SECONDS = 10
    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    webhook_server.status = 429
    webhook_server.headers = {"Retry-After": "3600"}
    before = timezone.now()

    delivery.attempt(only_delivery().pk)

    due = only_delivery().next_attempt_at
    assert due is not None
    assert (due - before).total_seconds() >= 3600


def test_a_redirect_is_a_failure_and_is_not_followed(webhook_server, django_capture_on_commit_callbacks):
    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    webhook_server.status = 307
    webhook_server.headers = {"Location": webhook_server.url("/internal/admin")}

    delivery.attempt(only_delivery().pk)

    assert [request["path"] for request in webhook_server.requests] == ["/hooks/engine"]
    row = DeliveryAttempt.objects.get()
    assert (row.status_code, row.outcome) == (307, "retry")
    assert "redirects are not followed" in row.error


def test_a_receiver_that_does_not_answer_in_time_is_a_timeout(
    webhook_server, settings, django_capture_on_commit_callbacks
):
    settings.ALERTS_WEBHOOK_TIMEOUT_SECONDS = 1
    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    webhook_server.delay = 3

    started = time.monotonic()
    delivery.attempt(only_delivery().pk)

    assert time.monotonic() - started < 2.5
    row = DeliveryAttempt.objects.get()
    assert (row.status_code, row.error, row.outcome) == (None, "read timeout", "retry")


def test_a_huge_answer_is_never_read(webhook_server, django_capture_on_commit_callbacks):
    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    webhook_server.endless_body = True  # a terabyte announced, streamed for 5 s

    started = time.monotonic()
    delivery.attempt(only_delivery().pk)

    assert time.monotonic() - started < 2
    assert DeliveryAttempt.objects.get().outcome == "delivered"


def test_an_unreachable_receiver_is_a_connection_failure(settings, django_capture_on_commit_callbacks):
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = True
    AlertReceiver.objects.create(name="closed port", kind="webhook", url="http://127.0.0.1:9/hook")
    emitted(django_capture_on_commit_callbacks)

    delivery.attempt(only_delivery().pk)

    row = DeliveryAttempt.objects.get()
    assert (row.status_code, row.error) == (None, "connection refused or unreachable")


def test_neither_the_secret_nor_the_url_path_reaches_the_log_or_the_attempt_row(
    webhook_server, caplog, django_capture_on_commit_callbacks
):
    receiver = AlertReceiver.objects.create(
        name="chat", kind="webhook", url=webhook_server.url("/services/T000/B000/token-in-the-path")
    )
    emitted(django_capture_on_commit_callbacks)
    webhook_server.status = 500

    with caplog.at_level(logging.DEBUG):
        delivery.attempt(only_delivery().pk)

    written = caplog.text + json.dumps(list(DeliveryAttempt.objects.values()), default=str)
    assert receiver.secret not in written
    assert receiver.secret.removeprefix("whsec_") not in written
    assert "token-in-the-path" not in written


# --- Claims --------------------------------------------------------------------------------------------


def test_an_attempt_claimed_by_another_worker_is_not_sent_twice(webhook_server, django_capture_on_commit_callbacks):
    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    pending = only_delivery()
    # Another worker claimed attempt 1 (and is still sending): its lease has not ended.
    AlertDelivery.objects.filter(pk=pending.pk).update(
        attempts=1, next_attempt_at=timezone.now() + dt.timedelta(seconds=delivery.LEASE_SECONDS)
    )

    assert delivery.attempt(pending.pk).attempted is False
    assert webhook_server.requests == []
    # The other worker was lost: when its lease ends, the sweep sends attempt 2.
    later = timezone.now() + dt.timedelta(seconds=delivery.LEASE_SECONDS + 1)
    assert delivery.due_deliveries(later) == [pending.pk]
    assert delivery.attempt(pending.pk, now=later).status == "delivered"
    assert list(DeliveryAttempt.objects.values_list("number", flat=True)) == [2]


def test_the_sweep_sends_what_is_due(webhook_server, django_capture_on_commit_callbacks):
    from alerts.tasks import deliver_due_alerts  # noqa: F401  # the chain is registered on import

    webhook(webhook_server)
    emitted(django_capture_on_commit_callbacks)
    assert delivery.due_deliveries() == [only_delivery().pk]


# --- Backoff -----------------------------------------------------------------------------------------------


def test_backoff_doubles_with_equal_jitter_up_to_the_maximum(settings):
    settings.ALERTS_RETRY_BASE_SECONDS = 30
    settings.ALERTS_RETRY_MAX_SECONDS = 3600
    rng = random.Random(7)
    for failures, ceiling in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (20, 3600)]:
        waits = [delivery.backoff_seconds(failures, rng=rng) for _ in range(2000)]
        assert ceiling / 2 <= min(waits) <= max(waits) <= ceiling
        # Jitter spreads the retries over the upper half: not one instant for every receiver.
        assert max(waits) - min(waits) > 0.45 * ceiling


# --- E-mail ------------------------------------------------------------------------------------------------


def test_an_email_receiver_gets_the_event_through_the_mail_backend(django_capture_on_commit_callbacks):
    AlertReceiver.objects.create(name="leads", kind="email", email_to="lead@hospital.example\nml@hospital.example")
    event = emitted(django_capture_on_commit_callbacks)

    assert delivery.attempt(only_delivery().pk).status == "delivered"

    (message,) = mail.outbox
    assert message.to == ["lead@hospital.example", "ml@hospital.example"]
    assert message.subject == "[engine alert] Training job failed: Training job 12 failed"
    assert str(event.event_id) in message.body
    assert "job: 12" in message.body
    assert DeliveryAttempt.objects.get().outcome == "delivered"


def test_a_mail_server_failure_is_retried(settings, django_capture_on_commit_callbacks, monkeypatch):
    AlertReceiver.objects.create(name="leads", kind="email", email_to="lead@hospital.example")
    emitted(django_capture_on_commit_callbacks)

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp.hospital.example refused")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    delivery.attempt(only_delivery().pk)

    row = DeliveryAttempt.objects.get()
    assert (row.outcome, row.error) == ("retry", "e-mail not sent (ConnectionRefusedError)")
