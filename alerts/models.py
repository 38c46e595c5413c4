"""Alert events: one append-only row per event, recorded when the emitting transaction commits."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.db import models
from django.utils import timezone

from alerts.event_types import EventType
from alerts.sealing import SecretUnreadable, seal, unseal
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


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64 (the spec asks 24 to 64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class AlertReceiver(models.Model):
    """Where alerts go: a webhook (signed, Standard Webhooks) or e-mail addresses, for some events."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        EMAIL = "email", "E-mail"

    name = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WEBHOOK)
    url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Webhooks: the HTTPS address that receives a POST. Private and loopback addresses are refused.",
    )
    # Sealed (``alerts.sealing``): the column never holds the secret itself. Read and set ``secret``.
    secret_sealed = models.CharField(max_length=255, blank=True, editable=False)
    email_to = models.TextField(blank=True, help_text="E-mail: the addresses, one per line.")
    event_types = models.JSONField(default=list, blank=True, help_text="Empty: every event type.")
    model_types = models.JSONField(default=list, blank=True, help_text="Model type slugs; empty: every model type.")
    active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("send_test_alert", "Can send a test event to a receiver")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.kind == self.Kind.WEBHOOK and not self.secret_sealed:
            self.secret = new_secret()
        super().save(*args, **kwargs)

    @property
    def secret(self) -> str:
        """The signing secret, unsealed (``alerts.sealing.SecretUnreadable`` if no key opens it)."""
        return unseal(self.secret_sealed)

    @secret.setter
    def secret(self, value: str) -> None:
        self.secret_sealed = seal(value)

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_sealed)

    def wants(self, event: AlertEvent) -> bool:
        """Whether this receiver subscribed to ``event`` (the test event only by the admin's action)."""
        if event.event_type == EventType.TEST:
            return False
        if self.event_types and event.event_type not in self.event_types:
            return False
        return not self.model_types or event.model_type in self.model_types

    def rotate_secret(self) -> str:
        """A new signing secret, saved and returned (to be shown once)."""
        secret = new_secret()
        self.secret = secret
        type(self).objects.filter(pk=self.pk).update(secret_sealed=self.secret_sealed, updated_at=timezone.now())
        return secret

    def secret_fingerprint(self) -> str:
        """What identifies the secret without revealing it: the first 8 hex digits of its SHA-256."""
        if not self.secret_sealed:
            return ""
        try:
            secret = self.secret
        except SecretUnreadable:
            return "unreadable"
        return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8]

    def destination(self) -> str:
        """The origin of the URL only (a path may hold a token), or the number of addresses."""
        if self.kind == self.Kind.EMAIL:
            count = len(self.addresses())
            return f"{count} address{'es' if count != 1 else ''}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def addresses(self) -> list[str]:
        return [line.strip() for line in self.email_to.replace(",", "\n").splitlines() if line.strip()]


class AlertDelivery(models.Model):
    """One event to one receiver: retried with backoff until delivered or given up (its attempts are the log).

    ``next_attempt_at`` is when the delivery is due: set on a failure to the backoff time, and on a
    claim to the claim's lease end, so a worker lost mid-attempt leaves a delivery the sweep retries.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Given up"

    event = models.ForeignKey(AlertEvent, on_delete=models.PROTECT, related_name="deliveries")
    receiver = models.ForeignKey(AlertReceiver, on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "alert deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "receiver"], name="alerts_one_delivery_per_receiver")]

    def __str__(self) -> str:
        return f"{self.event.event_type} to {self.receiver}"


class DeliveryAttempt(AppendOnlyModel):
    """The delivery log: one row per attempt, never changed."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        RETRY = "retry", "Failed, will retry"
        GAVE_UP = "gave_up", "Failed, given up"

    delivery = models.ForeignKey(AlertDelivery, on_delete=models.PROTECT, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="alerts_one_row_per_attempt")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"
