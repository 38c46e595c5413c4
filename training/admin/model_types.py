"""The model type admin: superusers edit, everyone with the view permission reads."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from learning_engine.admin_links import RelatedLinksMixin
from training.admin.forms import ModelTypeForm
from training.models import ModelType


@admin.register(ModelType)
class ModelTypeAdmin(RelatedLinksMixin, admin.ModelAdmin):
    form = ModelTypeForm
    list_display = (
        "slug",
        "name",
        "cohort",
        "default_algorithm",
        "epoch_algorithm",
        "min_cases_to_train",
        "min_quality",
    )
    list_filter = ("cohort", "default_algorithm")
    search_fields = ("slug", "name", "cohort")
    readonly_fields = ("created_at",)

    # Only superusers edit model types: a change alters what every later dataset and job means.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: ModelType | None = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: ModelType | None = None) -> bool:
        return False  # datasets, jobs and model versions refer to it
