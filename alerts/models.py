"""Alert events: one append-only row per event, recorded when the emitting transaction commits."""

from __future__ import annotations

import uuid

from django.db import models

from alerts.event_types import EventType
from learning_engine.audit import AppendOnlyModel


class AlertEvent(AppendOnlyModel):
    """Something an ML engineer or a clinical lead should hear about (``alerts.events.emit``).

    ``data`` holds ids, slugs and figures only (``alerts.deidentified``). The model type is kept as its
    slug, not a foreign key: this app sits below ``training``, and an event outlives what it names.
    """

    EventType = EventType

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event_type = models.CharField(max_length=32, choices=EventType.choices, db_index=True)
    model_type = models.SlugField(max_length=64, blank=True, help_text="Slug of the model type; empty when none.")
    summary = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model_type", "-created_at"], name="alerts_event_model_type")]

    def __str__(self) -> str:
        return f"{self.event_type}: {self.summary}"
