"""The learning loop in the admin: policies (a clinical lead's, every save a new version), the
locked evaluation sets and the learning cycles, with a timeline per model type."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format, time_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from learning.models import CycleTransition, LearningCycle, LearningPolicy
from learning.tasks import ensure_learning_scheduled
from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline
from learning_engine.admin_helpers import confirm_and_apply
from learning_engine.admin_links import RelatedLinksMixin
from learning_engine.roles import PERM_RUN_LEARNING_CYCLE
from training.models import LockedEvaluationSet, ModelType

POLICY_FIELDSETS = (
    (None, {"fields": ("model_type", "enabled", "reason")}),
    (
        "Triggers (any one starts a cycle; empty turns one off)",
        {
            "fields": (
                "trigger_new_cases",
                "trigger_on_degradation",
                "trigger_drift_psi",
                "trigger_every_days",
                "retry_after_hours",
            )
        },
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
    (
        "Locked evaluation set (renewed only as written here, by a cycle's first step)",
        {
            "fields": (
                "locked_fraction",
                "locked_max_cases",
                "locked_renew_days",
                "locked_renew_on_drift",
                "locked_min_fresh_share",
                "locked_release_retired",
            )
        },
    ),
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
class LearningPolicyAdmin(RelatedLinksMixin, admin.ModelAdmin):
    """Saving a policy, new or edited, always stores a new version (``save_as_next_version``); a
    stored version never changes. Changing is adding: whoever may add a policy may open one to
    save an edited copy."""

    list_display = ("model_type", "version", "enabled", "auto_promote", "test", "created_by", "created")
    list_filter = ("model_type", "enabled")
    list_select_related = ("model_type", "created_by")
    fieldsets = POLICY_FIELDSETS  # type: ignore[assignment]
    readonly_fields = ("version", "created_by", "created_at")

    @admin.display(description="test", ordering="test_mode")
    def test(self, obj: LearningPolicy) -> str:
        """The test mode in a word, its whole sentence as the cell's title: the sentence in every row
        pushed "Created at" out of a 1,440 px wide list (the form keeps the sentence)."""
        return format_html('<span title="{}">{}</span>', obj.get_test_mode_display(), obj.test_mode.capitalize())

    @admin.display(description="created at", ordering="created_at")
    def created(self, obj: LearningPolicy) -> str:
        """The date over the time: on one line the moment was still cut off at 1,440 px."""
        moment = timezone.localtime(obj.created_at)
        return format_html("{}<br>{}", date_format(moment, "DATE_FORMAT"), time_format(moment, "TIME_FORMAT"))

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
        # The loop's periodic chain runs from the first policy on (a no-op while it is alive).
        ensure_learning_scheduled()

    def response_change(self, request: HttpRequest, obj: LearningPolicy) -> HttpResponse:
        self.message_user(
            request, f"Saved as version {obj.version}; the earlier versions are kept unchanged.", messages.SUCCESS
        )
        return super().response_change(request, obj)


@admin.register(LockedEvaluationSet)
class LockedEvaluationSetAdmin(RelatedLinksMixin, admin.ModelAdmin):
    """Read-only: a set is locked and renewed by the learning cycles, under the policy."""

    list_display = (
        "pk",
        "model_type",
        "status",
        "case_count",
        "patient_count",
        "created_at",
        "retired_at",
        "released",
    )
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
        "released",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CycleTransitionInline(AuditTrailInline):
    model = CycleTransition
    parent_view_permission = "learning.view_learningcycle"


class CancelForm(forms.Form):
    reason = forms.CharField(max_length=500, help_text="Why the cycle stops (kept in its audit trail).")


def _fmt(value: Any) -> str:
    """A figure as read: a whole number without decimals (a count of 150 is "150", not "150.0000")."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def trigger_rows(detail: dict[str, Any]) -> SafeString:
    """The figures that fired a trigger, one row each (the stored JSON, read by a person)."""
    if not detail:
        return format_html("{}", "-")
    body = format_html_join(
        "", "<tr><td>{}</td><td>{}</td></tr>", ((key.replace("_", " "), _fmt(detail[key])) for key in sorted(detail))
    )
    return format_html("<table><tbody>{}</tbody></table>", body)


def envelope_rows(envelope: dict[str, Any]) -> list[dict[str, str]]:
    """The envelope's criteria as table rows (figure, bound, result), in the order judged."""
    rows = []
    for item in envelope.get("criteria") or []:
        passed = item.get("passed")
        rows.append(
            {
                "name": str(item.get("name", "")),
                "figure": _fmt(item.get("figure")),
                "bound": _fmt(item.get("bound")),
                "result": "pass" if passed is True else "FAIL" if passed is False else "not judged",
                "detail": str(item.get("detail", "")),
            }
        )
    return rows


@admin.register(LearningCycle)
class LearningCycleAdmin(RelatedLinksMixin, admin.ModelAdmin):
    """Read-only: a cycle changes only through its steps (the periodic task, ``learning_cycle``) and
    the cancel action (clinical leads). ``timeline/<model type>/`` shows a model type's cycles."""

    list_display = ("pk", "model_type", "kind", "trigger", "status", "candidate", "envelope_passed", "created_at")
    list_filter = ("model_type", "status", "kind", "trigger")
    list_select_related = ("model_type", "candidate")
    inlines = (CycleTransitionInline,)
    actions = ("cancel_selected",)
    fields = (
        "model_type",
        "policy",
        "kind",
        "trigger",
        "trigger_figures",
        "status",
        "outcome",
        "champion",
        "locked_set",
        "locked_renewal_text",
        "dataset",
        "candidates",
        "candidate",
        "envelope_table",
        "envelope_passed",
        "ab_test",
        "test_decision",
        "created_by",
        "created_at",
        "finished_at",
        "timeline_link",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The notice of every proposal waiting for the clinical lead, above the list."""
        if request.method == "GET" and self.has_view_permission(request):
            waiting = LearningCycle.objects.filter(status=LearningCycle.Status.PROPOSED).select_related(
                "model_type", "candidate", "ab_test"
            )
            for cycle in waiting.order_by("pk")[:20]:
                if cycle.kind == LearningCycle.Kind.ROLLBACK:
                    action = f"roll back {cycle.model_type.slug} to {cycle.candidate}"
                else:
                    action = (
                        f"promote {cycle.candidate} of {cycle.model_type.slug} (conclude A/B test {cycle.ab_test_id})"
                    )
                self.message_user(
                    request,
                    f"Learning cycle {cycle.pk} proposes to {action}: a clinical lead decides.",
                    messages.WARNING,
                )
        return super().changelist_view(request, extra_context)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_RUN_LEARNING_CYCLE)

    @admin.display(description="Acceptance envelope")
    def envelope_table(self, obj: LearningCycle) -> str:
        rows = envelope_rows(obj.envelope or {})
        if not rows:
            return "-"
        return format_html_join_rows(rows)

    @admin.display(description="Trigger figures")
    def trigger_figures(self, obj: LearningCycle) -> SafeString:
        return trigger_rows(obj.trigger_detail or {})

    @admin.display(description="Locked set renewal")
    def locked_renewal_text(self, obj: LearningCycle) -> str:
        return renewal_text(obj.locked_renewal or {})

    @admin.display(description="Timeline")
    def timeline_link(self, obj: LearningCycle) -> str:
        url = reverse("admin:learning_learningcycle_timeline", args=[obj.model_type.slug])
        return format_html('<a href="{}">Every cycle of {}</a>', url, obj.model_type.slug)

    @admin.action(description="Cancel the selected learning cycles", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[LearningCycle]) -> TemplateResponse | None:
        actor = request_actor(request)
        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Cancel learning cycles",
            apply=lambda cycle, data: cycle.cancel(by=actor, reason=data["reason"]),
            form_class=CancelForm,
            done="Cancelled",
            question="Cancel these cycles? Jobs already queued finish, but nothing they make is tested or served.",
            unavailable=lambda cycle: None if cycle.can_cancel() else f"it is {cycle.status}",
        )

    def get_urls(self) -> list[URLPattern]:
        timeline = path(
            "timeline/<slug:slug>/",
            self.admin_site.admin_view(self.timeline_view),
            name="learning_learningcycle_timeline",
        )
        return [timeline, *super().get_urls()]

    def timeline_view(self, request: HttpRequest, slug: str) -> HttpResponse:
        """Every cycle of one model type, newest first, each with its steps and its envelope."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        model_type = get_object_or_404(ModelType, slug=slug)
        cycles = (
            LearningCycle.objects.filter(model_type=model_type)
            .select_related("policy", "champion", "candidate", "ab_test")
            .prefetch_related(Prefetch("transitions", queryset=CycleTransition.objects.select_related("actor")))
            .order_by("-created_at", "-id")[:200]
        )
        entries = [
            {
                "cycle": cycle,
                "envelope": envelope_rows(cycle.envelope or {}),
                "renewal": renewal_text(cycle.locked_renewal or {}) if cycle.locked_renewal else "",
            }
            for cycle in cycles
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Learning cycles of {model_type.slug}",
            "model_type": model_type,
            "policy": LearningPolicy.current(model_type),
            "entries": entries,
        }
        return TemplateResponse(request, "admin/learning/learningcycle/timeline.html", context)


def renewal_text(record: dict[str, Any]) -> str:
    """A cycle's ``locked_renewal`` in words (figures only: ids, counts, shares, dates)."""
    if not record:
        return "Not renewed: the policy called for no renewal when the cycle began."
    share = record.get("fresh_share")
    fresh = (
        f"; {record.get('fresh_cases')} cases ({share:.0%}) since the drift began (at least "
        f"{record.get('min_fresh_share') or 0:.0%} needed)"
        if isinstance(share, int | float)
        else ""
    )
    if not record.get("renewed"):
        return (
            f"Renewal on {record.get('cause')} waits: {record.get('deferred', '')}. Set {record.get('retired_set')} "
            f"kept (would have taken {record.get('cases')} cases{fresh}). Why it was due: {record.get('why')}"
        )
    kept = "released to training" if record.get("released_to_training") else "kept out of training"
    return (
        f"Renewed on {record.get('cause')}: set {record.get('retired_set')} ({record.get('retired_cases')} cases) "
        f"retired and {kept}; set {record.get('new_set')} locked with {record.get('cases')} cases of "
        f"{record.get('patients')} patients{fresh}. Why: {record.get('why')}"
    )


def format_html_join_rows(rows: list[dict[str, str]]) -> SafeString:
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((row["name"], row["figure"], row["bound"], row["result"], row["detail"]) for row in rows),
    )
    return format_html(
        "<table><thead><tr><th>criterion</th><th>figure</th><th>bound</th><th>result</th><th></th></tr>"
        "</thead><tbody>{}</tbody></table>",
        body,
    )
