"""The alert event types: the one list every app imports when it emits (``alerts.events.emit``)."""

from __future__ import annotations

from django.db import models


class EventType(models.TextChoices):
    DRIFT_DETECTED = "drift.detected", "Drift detected"
    VERSION_DEGRADED = "version.degraded", "Version degraded"
    JOB_FAILED = "job.failed", "Training job failed"
    ABTEST_DECIDED = "abtest.decided", "A/B test decided"
    PROMOTION_PROPOSED = "promotion.proposed", "Promotion proposed"
    ROLLBACK_PROPOSED = "rollback.proposed", "Rollback proposed"
    VERSION_ROLLED_BACK = "version.rolled_back", "Version rolled back"
    # Sent only to the receivers an admin chose, by the "send a test event" action; never subscribed to.
    TEST = "alert.test", "Test event"


SUBSCRIBABLE = [choice for choice in EventType if choice != EventType.TEST]
