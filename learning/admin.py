"""The learning loop in the admin: policies (a clinical lead's, every save a new version), the
locked evaluation sets and the learning cycles, with a timeline per model type."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse

from learning.models import LearningPolicy
from learning_engine.actors import request_actor
from training.models import LockedEvaluationSet

POLICY_FIELDSETS = (
    (None, {"fields": ("model_type", "enabled", "reason")}),
    (
        "Triggers (any one starts a cycle; empty turns one off)",
        {"fields": ("trigger_new_cases", "trigger_on_degradation", "trigger_drift_psi", "trigger_every_days")},
    ),
    ("Candidate recipe (chosen on the validation split)", {"fields": ("recipe",)}),
    (
        "Acceptance envelope (against the champion, on the locked evaluation set)",
        {
            "fields": (
                "min_evaluation_cases",
                "non_inferiority_margin",
                "significance_level",
                "subgroups",
                "subgroup_margin",
                "min_subgroup_cases",
                "max_calibration_error",
            )
        },
    ),
    ("Locked evaluation set", {"fields": ("locked_fraction", "locked_max_cases", "locked_renew_days")}),
    (
        "When a candidate passes",
        {
            "fields": (
                "test_mode",
                "test_traffic_split",
                "test_duration_hours",
                "test_min_labelled_per_arm",
                "test_approval",
                "auto_promote",
            )
        },
    ),
    ("Rollback guard", {"fields": ("rollback_action",)}),
)


@admin.register(LearningPolicy)
class LearningPolicyAdmin(admin.ModelAdmin):
    """Saving a policy, new or edited, always stores a new version (``save_as_next_version``); a
    stored version never changes. Changing is adding: whoever may add a policy may open one to
    save an edited copy."""

    list_display = ("model_type", "version", "enabled", "auto_promote", "test_mode", "created_by", "created_at")
    list_filter = ("model_type", "enabled")
    list_select_related = ("model_type", "created_by")
    fieldsets = POLICY_FIELDSETS  # type: ignore[assignment]
    readonly_fields = ("version", "created_by", "created_at")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return POLICY_FIELDSETS
        return ((None, {"fields": ("version", "created_by", "created_at")}), *POLICY_FIELDSETS)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The model type of a stored version is fixed: a new model type starts at its own version 1.
        return (*self.readonly_fields, "model_type") if obj is not None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LearningPolicy, form: Any, change: bool) -> None:
        obj.save_as_next_version(by=request_actor(request))

    def response_change(self, request: HttpRequest, obj: LearningPolicy) -> HttpResponse:
        self.message_user(
            request, f"Saved as version {obj.version}; the earlier versions are kept unchanged.", messages.SUCCESS
        )
        return super().response_change(request, obj)


@admin.register(LockedEvaluationSet)
class LockedEvaluationSetAdmin(admin.ModelAdmin):
    """Read-only: a set is locked and renewed by the learning cycles, under the policy."""

    list_display = ("pk", "model_type", "status", "case_count", "patient_count", "created_at", "retired_at")
    list_filter = ("model_type", "status")
    list_select_related = ("model_type",)
    # The case ids are left out: counts tell enough, and a list of ids is no use to a reader here.
    fields = (
        "model_type",
        "cohort",
        "status",
        "case_count",
        "patient_count",
        "label_counts",
        "seed",
        "reason",
        "created_at",
        "retired_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
