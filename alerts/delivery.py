"""Delivering alert events: one ``AlertDelivery`` per receiver, attempts until delivered or given up.

Concurrency policy: an attempt claims its delivery with a conditional UPDATE (pending, the attempt
count it read, due), which also moves ``next_attempt_at`` to the end of a lease; two workers (the
queued attempt and the sweep) never send the same attempt, and a worker lost mid-attempt leaves a
delivery that is due again when the lease ends. The network call runs outside any transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from alerts import webhooks
from alerts.models import AlertDelivery, AlertEvent, AlertReceiver, DeliveryAttempt
from alerts.sealing import SecretUnreadable

logger = logging.getLogger(__name__)

# How long a claimed attempt may take before the sweep may try again: above the webhook timeout.
LEASE_SECONDS = 120


def create_deliveries(event: AlertEvent, receivers: list[AlertReceiver] | None = None) -> list[AlertDelivery]:
    """A pending delivery of ``event`` to each active receiver that wants it (or to ``receivers``)."""
    if receivers is None:
        receivers = [receiver for receiver in AlertReceiver.objects.filter(active=True) if receiver.wants(event)]
    made = []
    for receiver in receivers:
        try:
            with transaction.atomic():
                made.append(
                    AlertDelivery.objects.create(event=event, receiver=receiver, next_attempt_at=timezone.now())
                )
        except IntegrityError:
            continue  # already there (a second dispatch of the same event)
    return made


def backoff_seconds(failures: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half of base x 2^(failures-1) (capped), plus up to that half again."""
    ceiling = min(float(settings.ALERTS_RETRY_MAX_SECONDS), settings.ALERTS_RETRY_BASE_SECONDS * 2.0 ** (failures - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Outcome:
    attempted: bool
    status: str = ""
    next_attempt_at: dt.datetime | None = None


def attempt(delivery_id: int, *, now: dt.datetime | None = None) -> Outcome:
    """Make the next attempt of a due, pending delivery and log it; ``attempted=False`` when it is not due
    or another worker has it."""
    now = now or timezone.now()
    delivery = AlertDelivery.objects.select_related("event", "receiver").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != AlertDelivery.Status.PENDING:
        return Outcome(False)
    number = delivery.attempts + 1
    claimed = (
        AlertDelivery.objects.filter(pk=delivery.pk, status=AlertDelivery.Status.PENDING, attempts=delivery.attempts)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(attempts=number, next_attempt_at=now + dt.timedelta(seconds=LEASE_SECONDS))
    )
    if not claimed:
        return Outcome(False)

    receiver = delivery.receiver
    started = time.monotonic()
    if not receiver.active:
        answer = webhooks.Answer(None, "receiver inactive")
    elif receiver.kind == AlertReceiver.Kind.EMAIL:
        answer = _send_email(delivery.event, receiver)
    else:
        answer = _send_webhook(delivery.event, receiver, now=now)
    duration = webhooks.elapsed_ms(started)

    give_up = not answer.delivered and (number >= settings.ALERTS_MAX_ATTEMPTS or answer.gone or not receiver.active)
    next_at: dt.datetime | None = None
    if answer.delivered:
        status, outcome = AlertDelivery.Status.DELIVERED, DeliveryAttempt.Outcome.DELIVERED
    elif give_up:
        status, outcome = AlertDelivery.Status.FAILED, DeliveryAttempt.Outcome.GAVE_UP
    else:
        status, outcome = AlertDelivery.Status.PENDING, DeliveryAttempt.Outcome.RETRY
        wait = backoff_seconds(number)
        if answer.retry_after_seconds is not None:
            # The receiver's Retry-After, when longer than the backoff, within the maximum wait.
            wait = max(wait, min(float(answer.retry_after_seconds), float(settings.ALERTS_RETRY_MAX_SECONDS)))
        next_at = timezone.now() + dt.timedelta(seconds=wait)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=now,
            duration_ms=duration,
            status_code=answer.status_code,
            error=answer.error[:200],
            outcome=outcome,
            next_attempt_at=next_at,
        )
        AlertDelivery.objects.filter(pk=delivery.pk, attempts=number).update(
            status=status,
            next_attempt_at=next_at,
            finished_at=None if status == AlertDelivery.Status.PENDING else timezone.now(),
        )
        if answer.gone:
            # 410 Gone: the receiver asks to stop (the specification); a person turns it on again.
            AlertReceiver.objects.filter(pk=receiver.pk).update(
                active=False, disabled_reason=f"Answered 410 Gone to delivery {delivery.pk}; turned off."
            )
    log = logger.info if answer.delivered else logger.warning
    log(
        "Alert delivery %s (event %s, receiver %s) attempt %s: %s",
        delivery.pk,
        delivery.event_id,
        receiver.pk,
        number,
        outcome if answer.delivered else f"{outcome}, {answer.error}",
    )
    return Outcome(True, status, next_at)


def _send_webhook(event: AlertEvent, receiver: AlertReceiver, *, now: dt.datetime) -> webhooks.Answer:
    body = webhooks.payload(
        event_id=str(event.event_id),
        event_type=event.event_type,
        created_at=event.created_at,
        model_type=event.model_type,
        summary=event.summary,
        data=event.data,
    )
    try:
        secret = receiver.secret
    except SecretUnreadable:
        return webhooks.Answer(None, "signing secret unreadable (SECRET_KEY changed without a fallback): rotate it")
    headers = webhooks.signed_headers(secret=secret, message_id=message_id(event), body=body, now=now)
    return webhooks.post(receiver.url, body=body, headers=headers)


def message_id(event: AlertEvent) -> str:
    """The webhook-id: the same for every attempt of an event (the receiver's idempotency key), no dots."""
    return f"msg_{event.event_id.hex}"


def _send_email(event: AlertEvent, receiver: AlertReceiver) -> webhooks.Answer:
    lines = [
        event.summary,
        "",
        f"Event: {event.event_type}",
        f"Model type: {event.model_type or '-'}",
        f"When: {event.created_at.isoformat(timespec='seconds')}",
        f"Event id: {event.event_id}",
        "",
        *(f"{key}: {value}" for key, value in event.data.items()),
    ]
    message = EmailMessage(
        subject=f"[engine alert] {event.get_event_type_display()}: {event.summary}"[:200],
        body="\n".join(lines),
        from_email=settings.ALERTS_EMAIL_FROM,
        to=receiver.addresses(),
    )
    try:
        message.send(fail_silently=False)
    except Exception as failure:  # SMTP and socket errors: retried; the message never holds the server's text
        return webhooks.Answer(None, f"e-mail not sent ({type(failure).__name__})")
    return webhooks.Answer(None, "", sent=True)


def due_deliveries(now: dt.datetime | None = None) -> list[int]:
    """Pending deliveries whose time has come (a retry, or an attempt whose worker was lost)."""
    now = now or timezone.now()
    return list(
        AlertDelivery.objects.filter(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:500]
    )
