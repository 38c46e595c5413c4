"""Serving's admin: the case sources of prediction clients."""

from __future__ import annotations

from django.contrib import admin

from learning_engine.admin_links import RelatedLinksMixin
from models_registry.serving.models import ClientSource


@admin.register(ClientSource)
class ClientSourceAdmin(RelatedLinksMixin, admin.ModelAdmin):
    """Which case source a client's feedback cases go under. No role holds these permissions:
    superusers bind a client to its site (``models_registry.serving.models``)."""

    list_display = ("user", "source", "created_at")
    search_fields = ("user__username", "source")
    raw_id_fields = ("user",)
