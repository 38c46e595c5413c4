"""The admin of the record systems this CDS Hooks service trusts. No role holds these permissions:
superusers register a hospital's record system (README, "CDS Hooks")."""

from __future__ import annotations

from django.contrib import admin

from cds_hooks.keys import KEYS
from cds_hooks.models import TrustedClient
from learning_engine.admin_links import RelatedLinksMixin


@admin.register(TrustedClient)
class TrustedClientAdmin(RelatedLinksMixin, admin.ModelAdmin):
    list_display = ("name", "issuer", "audience", "user", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name", "issuer")
    raw_id_fields = ("user",)
    readonly_fields = ("created_at", "updated_at")
    fields = ("name", "issuer", "audience", "jwks_url", "jwks", "user", "is_active", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        KEYS.clear()  # this process reads the new keys at once; others when they see updated_at change
