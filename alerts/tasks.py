"""Background delivery (django.tasks): one task per attempt, and a periodic sweep for what is due.

``deliver_alert`` makes one attempt (``alerts.delivery.attempt``) and, after a failure, enqueues the
next one for its backoff time (``run_after``). The sweep (``learning_engine.periodic``) sends what
is due and was not queued or whose worker was lost; the claim in ``attempt`` makes the two safe
together.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.tasks import task

from alerts import delivery
from alerts.event_types import EventType
from alerts.models import AlertDelivery, AlertEvent, AlertReceiver
from learning_engine.periodic import ensure_scheduled, periodic_task

logger = logging.getLogger(__name__)


@task()
def deliver_alert(delivery_id: int) -> dict[str, Any]:
    outcome = delivery.attempt(delivery_id)
    if outcome.attempted and outcome.next_attempt_at is not None:
        _enqueue(delivery_id, run_after=outcome.next_attempt_at)
    return {"delivery": delivery_id, "attempted": outcome.attempted, "status": outcome.status}


@periodic_task(schedule="deliver_due_alerts", interval_setting="ALERTS_SWEEP_INTERVAL_SECONDS")
def deliver_due_alerts() -> dict[str, Any]:
    sent = [pk for pk in delivery.due_deliveries() if deliver_alert.call(pk)["attempted"]]
    return {"attempted": sent}


def dispatch(event: AlertEvent, receivers: list[AlertReceiver] | None = None) -> list[AlertDelivery]:
    """Create the event's deliveries and queue their first attempts (on commit)."""
    made = delivery.create_deliveries(event, receivers)
    if made:
        ensure_scheduled(deliver_due_alerts)
    for row in made:
        transaction.on_commit(partial(_enqueue, row.pk))
    return made


def _enqueue(delivery_id: int, *, run_after: Any = None) -> None:
    try:
        if run_after is None:
            deliver_alert.enqueue(delivery_id)
        else:
            deliver_alert.using(run_after=run_after).enqueue(delivery_id)
    except Exception:
        # The queue is away: the delivery stays due and the sweep sends it.
        logger.exception("Could not queue alert delivery %s; the sweep will send it", delivery_id)


def send_test_event(receiver: AlertReceiver, *, by: Any) -> AlertEvent:
    """An ``alert.test`` event delivered to ``receiver`` only (the admin's action), queued on commit."""
    event = AlertEvent.objects.create(
        event_type=EventType.TEST,
        summary=f"Test event for receiver {receiver.pk}, sent from the admin",
        data={"receiver": receiver.pk, "by": by.pk if by is not None else None},
    )
    dispatch(event, [receiver])
    return event
