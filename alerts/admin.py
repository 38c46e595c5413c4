"""The admin of alerts: receivers (clinical leads configure them), events and the delivery log (read-only).

A webhook's signing secret is stored sealed (``alerts.sealing``) and never shown back: once, on the
page after the admin generated it (a receiver added without one typed, or its secret rotated), and
then only as "set" with a fingerprint. A person may type a receiver's own secret into a write-only
field that is never filled in again. Lists show a webhook's origin only: the path of a chat
service's webhook URL is itself a token.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.validators import validate_email, validate_slug
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from alerts.event_types import SUBSCRIBABLE
from alerts.models import AlertDelivery, AlertEvent, AlertReceiver, DeliveryAttempt
from alerts.tasks import send_test_event
from alerts.webhooks import RefusedURL, check_url_shape
from learning_engine.admin_audit import ReadOnlyInline
from learning_engine.admin_helpers import confirm_and_apply
from learning_engine.admin_links import RelatedLinksMixin

SECRETS_TEMPLATE = "admin/alerts/secrets.html"


class ReceiverForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=[(choice.value, choice.label) for choice in SUBSCRIBABLE],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event type.",
    )
    model_types = forms.CharField(
        required=False, help_text="Model type slugs, separated by commas; empty: every model type."
    )
    new_secret = forms.CharField(
        label="New signing secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only. Webhooks: type the receiver's own Standard Webhooks secret (whsec_ and 24 to 64 "
        "bytes in base64) to replace the stored one; empty keeps it (a new webhook then gets a generated one).",
    )

    class Meta:
        model = AlertReceiver
        fields = ["name", "kind", "url", "email_to", "event_types", "model_types", "active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["model_types"] = ", ".join(self.instance.model_types)

    def clean_model_types(self) -> list[str]:
        slugs = [part.strip() for part in self.cleaned_data["model_types"].split(",") if part.strip()]
        for slug in slugs:
            try:
                validate_slug(slug)
            except ValidationError:
                raise ValidationError("Each model type is a slug (letters, digits, - and _).") from None
        return sorted(set(slugs))

    def clean_new_secret(self) -> str:
        value: str = self.cleaned_data["new_secret"]
        if not value:
            return ""
        body = value.removeprefix("whsec_")
        try:
            size = len(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            size = 0
        if not value.startswith("whsec_") or not 24 <= size <= 64:
            # The value itself is never echoed back in the message.
            raise ValidationError("A signing secret is whsec_ and 24 to 64 bytes in base64.")
        return value

    def clean_email_to(self) -> str:
        addresses = [part.strip() for part in self.cleaned_data["email_to"].replace(",", "\n").splitlines()]
        addresses = [address for address in addresses if address]
        for position, address in enumerate(addresses, start=1):
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"Address {position} is not an e-mail address.") from None
        return "\n".join(addresses)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind == AlertReceiver.Kind.WEBHOOK:
            url = cleaned.get("url") or ""
            if not url:
                self.add_error("url", "A webhook needs its URL.")
            else:
                try:
                    check_url_shape(url)
                except RefusedURL as refused:
                    self.add_error("url", str(refused))
        elif kind == AlertReceiver.Kind.EMAIL and not cleaned.get("email_to"):
            self.add_error("email_to", "An e-mail receiver needs at least one address.")
        if kind == AlertReceiver.Kind.EMAIL and cleaned.get("new_secret"):
            self.add_error("new_secret", "Only a webhook has a signing secret.")
        return cleaned


@admin.register(AlertReceiver)
class AlertReceiverAdmin(RelatedLinksMixin, admin.ModelAdmin):
    form = ReceiverForm
    list_display = ("name", "kind", "destination", "subscription", "active", "disabled_reason")
    list_filter = ("kind", "active")
    search_fields = ("name",)
    readonly_fields = ("secret_fingerprint", "disabled_reason", "created_at", "updated_at")
    actions = ["send_test_event_selected", "rotate_secret_selected"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["name", "kind", "url", "email_to", "event_types", "model_types", "active", "new_secret"]
        return [*fields, "secret_fingerprint", "disabled_reason", "created_at", "updated_at"] if obj else fields

    @admin.display(description="destination")
    def destination(self, receiver: AlertReceiver) -> str:
        return receiver.destination()

    @admin.display(description="events")
    def subscription(self, receiver: AlertReceiver) -> str:
        events = ", ".join(receiver.event_types) or "every event"
        models = ", ".join(receiver.model_types) or "every model type"
        return f"{events}; {models}"

    @admin.display(description="signing secret")
    def secret_fingerprint(self, receiver: AlertReceiver) -> str:
        if not receiver.has_secret:
            return "not set" if receiver.kind == AlertReceiver.Kind.WEBHOOK else "-"
        fingerprint = receiver.secret_fingerprint()
        if fingerprint == "unreadable":
            return "set, but unreadable under the current SECRET_KEY: rotate it"
        return f"set ({fingerprint}); never shown again: rotate it, or type a new one, to replace it"

    def save_model(self, request: HttpRequest, obj: AlertReceiver, form: Any, change: bool) -> None:
        if obj.active:
            obj.disabled_reason = ""  # turned on again by a person
        typed = form.cleaned_data.get("new_secret") or ""
        if typed:
            obj.secret = typed
        # The generated secret is shown once after adding; a typed one the person has already.
        request._alerts_generated_secret = (  # type: ignore[attr-defined]
            not change and not typed and obj.kind == AlertReceiver.Kind.WEBHOOK
        )
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: AlertReceiver, post_url_continue: str | None = None
    ) -> HttpResponse:
        if getattr(request, "_alerts_generated_secret", False):
            return self._secrets_page(request, [(obj, obj.secret)], title=f"Signing secret of {obj.name}")
        return super().response_add(request, obj, post_url_continue)

    def has_send_test_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("alerts.send_test_alert")

    @admin.action(description="Send a test event to the selected receivers", permissions=["send_test"])
    def send_test_event_selected(self, request: HttpRequest, queryset: QuerySet[AlertReceiver]) -> Any:
        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Send a test event",
            done="Queued a test event to",
            question="Each selected receiver gets one alert.test event, signed as any other; its delivery log "
            "shows the answer.",
            apply=lambda receiver, data: send_test_event(receiver, by=request.user),
            unavailable=lambda receiver: None if receiver.active else "turned off",
        )

    @admin.action(description="Rotate the signing secret of the selected webhooks", permissions=["change"])
    def rotate_secret_selected(self, request: HttpRequest, queryset: QuerySet[AlertReceiver]) -> Any:
        rotated: list[tuple[AlertReceiver, str]] = []
        response = confirm_and_apply(
            self,
            request,
            queryset,
            title="Rotate signing secrets",
            done="Rotated the signing secret of",
            question="Each selected webhook gets a new signing secret at once; deliveries signed with the old "
            "one fail verification until the receiver has the new one.",
            apply=lambda receiver, data: rotated.append((receiver, receiver.rotate_secret())),
            unavailable=lambda receiver: None if receiver.kind == AlertReceiver.Kind.WEBHOOK else "not a webhook",
        )
        if response is None and rotated:
            return self._secrets_page(request, rotated, title="New signing secrets")
        return response

    def _secrets_page(
        self, request: HttpRequest, secrets: list[tuple[AlertReceiver, str]], *, title: str
    ) -> TemplateResponse:
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title, "secrets": secrets}
        return TemplateResponse(request, SECRETS_TEMPLATE, context)


class ReadOnlyAdmin(RelatedLinksMixin, admin.ModelAdmin):
    """Records the engine writes: viewed here, never added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryInline(ReadOnlyInline):
    model = AlertDelivery
    fields = ("receiver", "status", "attempts", "next_attempt_at", "finished_at")
    readonly_fields = fields
    parent_view_permission = "alerts.view_alertdelivery"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("receiver")


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "event_type", "model_type", "summary")
    list_filter = ("event_type", "model_type")
    search_fields = ("summary", "=model_type")
    fields = ("event_id", "event_type", "model_type", "summary", "data", "created_at")
    readonly_fields = fields
    inlines = [DeliveryInline]
    date_hierarchy = "created_at"


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("number", "started_at", "status_code", "duration_ms", "error", "outcome", "next_attempt_at")
    readonly_fields = fields
    parent_view_permission = "alerts.view_alertdelivery"


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "event", "receiver_name", "status", "attempts", "next_attempt_at")
    list_filter = ("status", "event__event_type")
    list_select_related = ("event", "receiver")
    fields = ("event", "receiver_name", "status", "attempts", "next_attempt_at", "created_at", "finished_at")
    readonly_fields = fields
    inlines = [AttemptInline]

    @admin.display(description="receiver")
    def receiver_name(self, delivery: AlertDelivery) -> str:
        return delivery.receiver.name  # the name only: its URL is for those who configure receivers


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    """The delivery log, one row per attempt, newest first."""

    list_display = (
        "started_at",
        "delivery",
        "number",
        "status_code",
        "duration_ms",
        "outcome",
        "error",
        "next_attempt_at",
    )
    list_filter = ("outcome",)
    list_select_related = ("delivery__event", "delivery__receiver")
    ordering = ("-started_at", "-id")
