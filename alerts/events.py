"""``emit``: how every app raises an alert.

    from alerts.events import EventType, emit

    emit(EventType.JOB_FAILED, model_type="diagnosis", summary="Training job 12 failed", data={"job": 12})

The summary and data are checked at once (``AlertDataError``, a ``ValueError``: a caller's bug shows
in its own tests), and the ``AlertEvent`` row is written when the caller's transaction commits: an
event about a change that rolls back is never recorded nor sent. Outside a transaction it is written
at once. A failure to write it is logged and never undoes the caller's committed work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any, Protocol

from django.db import transaction

from alerts.deidentified import AlertDataError, clean_data, clean_slug, clean_summary, safe_label
from alerts.event_types import EventType
from alerts.models import AlertEvent

__all__ = ["AlertDataError", "EventType", "emit", "safe_label"]

logger = logging.getLogger(__name__)


class HasSlug(Protocol):
    @property
    def slug(self) -> str: ...


def emit(
    event_type: EventType | str,
    *,
    model_type: str | HasSlug | None = None,
    summary: str,
    data: Mapping[str, Any],
    using: str | None = None,
) -> None:
    """Record an alert event on commit. ``model_type``: a slug, or anything with a ``slug``."""
    if event_type not in EventType.values:
        raise AlertDataError(f"Unknown event type; one of: {', '.join(EventType.values)}.")
    slug = ""
    if model_type is not None:
        slug = clean_slug(model_type if isinstance(model_type, str) else model_type.slug, what="model_type")
    fields = {
        "event_type": str(EventType(event_type)),
        "model_type": slug,
        "summary": clean_summary(summary),
        "data": clean_data(data),
    }
    transaction.on_commit(partial(_record, fields), using=using, robust=True)


def _record(fields: dict[str, Any]) -> None:
    from alerts.tasks import dispatch  # the tasks module loads the periodic machinery: only when needed

    event = AlertEvent.objects.create(**fields)
    logger.info("Alert event %s recorded: %s (model type %s)", event.pk, event.event_type, event.model_type or "-")
    dispatch(event)
