"""The record systems (CDS Clients) this CDS Hooks service trusts, and the tokens they used.

A ``TrustedClient`` is one record system: the issuer (``iss``) its JWTs carry, its public keys (a
JWKS given inline or the https URL it publishes them at), the base URL it calls this service at
(every token's ``aud`` is that base plus the endpoint called), and the prediction client account
its calls act as (the prediction log and feedback name that account; its role decides what the
client may do). Superusers configure them in the admin; no role holds these permissions.

``UsedToken`` is the replay cache: one row per (client, ``jti``) until the token expires. The
unique constraint makes a replay fail in the database, whichever process sees it first.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from cds_hooks.keys import KeySetError, check_jwks_url, parse_jwks


class TrustedClient(models.Model):
    name = models.CharField(max_length=100, unique=True, help_text="The record system, as people call it.")
    issuer = models.CharField(
        max_length=255,
        unique=True,
        help_text="The iss claim of its tokens, exactly (for example https://ehr.example-hospital.org/).",
    )
    audience = models.URLField(
        max_length=255,
        help_text="The base URL this record system calls the service at (https://cds.example-hospital.org): "
        "a token's aud must be this base followed by the endpoint it calls (/cds-services, "
        "/cds-services/{id}, /cds-services/{id}/feedback).",
    )
    jwks_url = models.URLField(
        "JWKS URL",
        max_length=500,
        blank=True,
        help_text="Where the record system publishes its public keys (https). Leave empty to give them inline.",
    )
    jwks = models.JSONField(
        "JWKS",
        null=True,
        blank=True,
        help_text='Its public keys inline, as a JWK Set ({"keys": [...]}), when it publishes no URL.',
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="cds_hooks_clients",
        help_text="The account its calls act as: a prediction client (predictions and feedback are logged under it).",
    )
    is_active = models.BooleanField(default=True, help_text="Untick to refuse its calls at once.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "CDS Hooks client"
        constraints = [
            models.CheckConstraint(
                name="cds_client_one_key_source",
                condition=(Q(jwks_url="") & Q(jwks__isnull=False)) | (~Q(jwks_url="") & Q(jwks__isnull=True)),
                violation_error_message="Give either a JWKS URL or an inline JWKS, not both.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if bool(self.jwks_url) == (self.jwks is not None):
            errors["jwks_url"] = "Give either a JWKS URL or an inline JWKS, not both."
        if self.jwks_url:
            try:
                check_jwks_url(self.jwks_url)
            except KeySetError as exc:
                errors["jwks_url"] = str(exc)
        if self.jwks is not None:
            try:
                parse_jwks(self.jwks)
            except KeySetError as exc:
                errors["jwks"] = str(exc)
        if self.audience and not self.audience.startswith(("https://", "http://")):
            errors["audience"] = "An http(s) URL."
        if errors:
            raise ValidationError(errors)

    @property
    def base_url(self) -> str:
        return self.audience.rstrip("/")


class UsedToken(models.Model):
    """A token's ``jti``, kept until the token expires: a second call with it is a replay."""

    client = models.ForeignKey(TrustedClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "jti"], name="cds_used_token_once")]

    def __str__(self) -> str:
        return f"token of client {self.client_id} until {self.expires_at:%Y-%m-%d %H:%M}"
