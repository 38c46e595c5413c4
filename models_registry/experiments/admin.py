"""The admin of A/B tests: a form to start one, its page with live figures and a chart, stop and conclude.

Who: ML engineers start tests (``add_abtest``) and may stop them; clinical leads conclude them
(``conclude_abtest``, promoting B on ``ship_b``) and may stop them. Both actions go through
``confirm_and_apply`` (a confirmation page with the reason, then ``ABTest.stop``/``conclude`` per
test). Nothing is edited: a test changes only through its transitions.

The test's page shows the live figures of ``models_registry.experiments.figures`` (per arm, the sample ratio
check, the difference's confidence sequence, the current decision) and the cumulative accuracy of
each arm over the test's time, as an inline SVG line chart (``learning_engine.charts``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime

from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline
from learning_engine.admin_helpers import StateActionsMixin, confirm_and_apply
from learning_engine.admin_links import RelatedLinksMixin
from learning_engine.charts import line_chart
from learning_engine.display import fmt, fmt_difference_interval, fmt_percent, metric_value
from learning_engine.exceptions import DomainError
from learning_engine.forms import StrictJSONField
from learning_engine.roles import PERM_ADD_AB_TEST, PERM_CONCLUDE_AB_TEST, PERM_STOP_AB_TEST
from models_registry.experiments.figures import accuracy_over_time, per_diagnosis
from models_registry.experiments.models import (
    DEFAULT_MIN_LABELLED,
    DEFAULT_SIGNIFICANCE,
    MAX_DURATION_HOURS,
    MAX_MIN_LABELLED,
    MAX_SIGNIFICANCE,
    ABTest,
    ABTestTransition,
)
from models_registry.registry.models import ModelVersion
from training.models import ModelType

_BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]
REASON_MAX_LENGTH = 2000
# The decisions of models_registry.experiments.stats.Decision as people read them.
DECISION_WORDS = {
    "ship_b": "Ship B: the candidate is more accurate",
    "rollback": "Keep A: the candidate is less accurate",
    "hold": "Hold: no clear difference yet",
    "invalid": "Invalid: the split of subjects is broken",
}


def decision_words(decision: str | None) -> str:
    if not decision:
        return "—"
    return DECISION_WORDS.get(decision, decision)


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.model_type.slug} {obj.version} ({obj.deployment_status})"


class StartTestForm(forms.Form):
    model_type = forms.ModelChoiceField(queryset=ModelType.objects.order_by("slug"))
    version_a = VersionChoiceField(
        queryset=ModelVersion.objects.none(), help_text="A: the production version (normally the active one)."
    )
    version_b = VersionChoiceField(queryset=ModelVersion.objects.none(), help_text="B: the candidate.")
    mode = forms.ChoiceField(choices=ABTest.Mode.choices, initial=ABTest.Mode.SPLIT)
    traffic_split = forms.FloatField(
        min_value=0.0, max_value=1.0, initial=0.5, help_text="Share of subjects sent to B (split mode)."
    )
    duration_hours = forms.IntegerField(min_value=1, max_value=MAX_DURATION_HOURS, initial=168)
    min_labelled_per_arm = forms.IntegerField(
        min_value=1,
        max_value=MAX_MIN_LABELLED,
        initial=DEFAULT_MIN_LABELLED,
        help_text="Predictions with feedback per arm before the decision can be anything but hold.",
    )
    significance_level = forms.FloatField(min_value=0.0, max_value=MAX_SIGNIFICANCE, initial=DEFAULT_SIGNIFICANCE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Approved versions that can still serve; the model checks the rest (same type, not twice).
        versions = (
            ModelVersion.objects.filter(approval_status=ModelVersion.Approval.APPROVED)
            .exclude(deployment_status=ModelVersion.Deployment.ARCHIVED)
            .select_related("model_type")
            .order_by("model_type__slug", "-created_at")
        )
        for name in ("version_a", "version_b"):
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = versions


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=REASON_MAX_LENGTH,
        help_text="Recorded on the test and in its audit trail.",
    )


class ConcludeForm(ReasonForm):
    """The reason, and (hidden) the decision of each test as the confirmation page showed it."""

    initial_decisions: ClassVar[dict[str, str]] = {}
    decisions = StrictJSONField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["decisions"].initial = self.initial_decisions

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        value = cleaned.get("decisions")
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            # Shown as the form's own error: without the decisions that were shown, nothing is concluded.
            self.add_error(None, "The confirmation page is out of date; run the action again.")
            cleaned["decisions"] = {}
        return cleaned


class ABTestTransitionInline(AuditTrailInline):
    model = ABTestTransition


@admin.register(ABTest)
class ABTestAdmin(StateActionsMixin, RelatedLinksMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "model_type",
        "version_a",
        "version_b",
        "mode",
        "traffic_share",
        "status_badge",
        "started_at",
        "end_display",
        "decision_display",
        "promoted",
    )
    list_display_links = ("id",)
    list_filter = ("status", "mode", "model_type")
    list_select_related = ("model_type", "version_a", "version_b")
    actions = ["stop_selected", "conclude_selected"]
    inlines = [ABTestTransitionInline]
    fields = (
        "model_type",
        "version_a",
        "version_b",
        "mode",
        "traffic_share",
        "duration_hours",
        "min_labelled_per_arm",
        "significance_level",
        "status_badge",
        "started_at",
        "end_display",
        "created_by",
        "concluded_by",
        "reason",
        "decision_display",
        "promoted",
    )
    readonly_fields = fields

    # --- Permissions -----------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_ADD_AB_TEST)

    def has_change_permission(self, request: HttpRequest, obj: ABTest | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ABTest | None = None) -> bool:
        return False

    def has_stop_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_STOP_AB_TEST)

    def has_conclude_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_CONCLUDE_AB_TEST)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ABTest) -> str:
        return format_html('<span class="version-badge ab-status-{}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description="traffic to B", ordering="traffic_split")
    def traffic_share(self, obj: ABTest) -> str:
        return "— (shadow: B sees every request)" if obj.mode == ABTest.Mode.SHADOW else fmt_percent(obj.traffic_split)

    @admin.display(description="end", ordering="ends_at")
    def end_display(self, obj: ABTest) -> str:
        """When it ends (running) or ended: never a future "ends at" for a test that is over."""
        if obj.is_running():
            return format_html("ends {} (planned)", date_format(localtime(obj.ends_at), "DATETIME_FORMAT"))
        ended = obj.ended_at or obj.ends_at
        return format_html(
            "ended {} ({}; planned end {})",
            date_format(localtime(ended), "DATETIME_FORMAT"),
            obj.get_status_display().lower(),
            date_format(localtime(obj.ends_at), "DATETIME_FORMAT"),
        )

    @admin.display(description="decision", ordering="decision")
    def decision_display(self, obj: ABTest) -> str:
        return decision_words(obj.decision) if obj.decision else ("—" if not obj.is_running() else "(running)")

    def action_unavailable(self, request: HttpRequest, obj: ABTest, name: str) -> str | None:
        return None if obj.is_running() else f"it is {obj.get_status_display().lower()}"

    # --- Start (the add page) ----------------------------------------------------------------------

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """A form that starts a test through ``ABTest.start`` (its checks, audit row and routing)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StartTestForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                test = ABTest.start(by=request_actor(request), **data)
            except DomainError as exc:  # a bad set-up (400) or a running test (409): say why
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"Started {test}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:models_registry_abtest_change", args=[test.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Start an A/B test",
            "subtitle": None,
            "opts": self.model._meta,
            "form": form,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/models_registry/abtest/start.html", context)

    # --- The test's page: figures and chart --------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        test = (
            ABTest.objects.select_related("version_a", "version_b", "model_type").filter(pk=object_id).first()
            if object_id.isdigit()
            else None
        )
        extra = dict(extra_context or {})
        if test is not None and self.has_view_permission(request, test):
            # A test that is over shows the figures it ended with (stored with its decision), not
            # today's: those are what the decision was made on.
            ended = not test.is_running()
            figures = test.evaluation if ended and isinstance(test.evaluation, dict) and test.evaluation else None
            figures = figures or test.evaluate()
            extra["figures"] = figures
            extra["ended"] = ended
            extra["decision_words"] = decision_words(test.decision if ended else figures.get("decision"))
            extra["arm_rows"] = [
                {
                    "arm": arm.upper(),
                    "version": row["version"],
                    "assigned": row["assigned"],
                    "predicted": row["predicted"],
                    "unkeyed": row["unkeyed"],
                    "labelled": row["labelled"],
                    "correct": row["correct"],
                    "accuracy": metric_value("accuracy", row["accuracy"]),
                    "interval": metric_value("accuracy_ci", row["accuracy_interval"]),
                    "p50": fmt(row["latency_ms"]["p50"], 1),
                    "p90": fmt(row["latency_ms"]["p90"], 1),
                    "p99": fmt(row["latency_ms"]["p99"], 1),
                }
                for arm, row in figures["arms"].items()
            ]
            extra["diagnosis_tables"] = _diagnosis_tables(test, figures)
            extra["difference"] = fmt_difference_interval("accuracy", figures["difference"]) or "—"
            extra["srm_p"] = "—" if figures["srm"]["p_value"] is None else f"{figures['srm']['p_value']:.4g}"
            extra["agreement"] = fmt((figures["shadow"] or {}).get("agreement"))
            extra["chart"] = line_chart(
                accuracy_over_time(test),
                title="Cumulative accuracy per arm (from clinicians' feedback)",
                x_label="labelled predictions per arm",
                y_label="accuracy",
                y_min=0.0,
                y_max=1.0,
                integer_x=True,
            )
        return super().change_view(request, object_id, form_url, extra)

    # --- Actions -----------------------------------------------------------------------------------

    @admin.action(
        description="Stop this A/B test",
        description_plural="Stop selected A/B tests",
        permissions=["stop"],
        location=_BOTH_LOCATIONS,
    )
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[ABTest]) -> HttpResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.select_related("version_a", "version_b", "model_type"),
            title="Stop A/B tests",
            done="Stopped",
            form_class=ReasonForm,
            question="Stop these tests? Nothing is promoted; each model type returns to its active version.",
            describe=_describe,
            apply=lambda test, data: test.stop(by=request.user, reason=data["reason"]),
            unavailable=lambda test: None if test.is_running() else f"it is {test.get_status_display().lower()}",
        )

    @admin.action(
        description="Conclude this A/B test",
        description_plural="Conclude selected A/B tests",
        permissions=["conclude"],
        location=_BOTH_LOCATIONS,
    )
    def conclude_selected(self, request: HttpRequest, queryset: QuerySet[ABTest]) -> HttpResponse | None:
        queryset = queryset.select_related("version_a", "version_b", "model_type")
        shown: dict[str, str] = {}
        if request.POST.get("post") == "yes":
            form_class: type[forms.Form] = ConcludeForm
        else:
            # The decisions shown on the confirmation page travel with it (one evaluation per test,
            # so what is shown is what is carried): a decision that changed before the post (new
            # feedback) skips that test instead of promoting on figures nobody saw.
            shown = {str(test.pk): test.evaluate()["decision"] for test in queryset if test.is_running()}
            form_class = type("ConcludeFormShown", (ConcludeForm,), {"initial_decisions": shown})

        def describe(test: ABTest) -> str:
            decision = shown.get(str(test.pk))
            return f"{_describe(test)} — current decision: {decision_words(decision)}" if decision else _describe(test)

        def conclude(test: ABTest, data: dict[str, Any]) -> None:
            expected = data["decisions"].get(str(test.pk))
            test.conclude(by=request_actor(request), reason=data["reason"], expected_decision=expected)

        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Conclude A/B tests",
            done="Concluded",
            form_class=form_class,
            question="Conclude these tests with the decision of this moment? A test whose decision is ship_b "
            "promotes B (it becomes the active version); any other decision keeps A.",
            describe=describe,
            apply=conclude,
            unavailable=lambda test: None if test.is_running() else f"it is {test.get_status_display().lower()}",
        )


def _diagnosis_tables(test: ABTest, figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Per arm, each diagnosis with its dictionary name: predicted, confirmed by feedback, and the
    share of the confirmed ones the arm got right (its recall of the diagnosis). From the figures
    shown (a test that is over: those it ended with), read again for one that ended before they
    had them."""
    tables = figures.get("per_diagnosis")
    if not isinstance(tables, dict):
        tables = per_diagnosis(test)
    versions = {"a": test.version_a, "b": test.version_b}
    return [
        {
            "arm": arm.upper(),
            "version": versions[arm].version,
            "rows": [
                {
                    **row,
                    "recall": metric_value("recall", row["correct"] / row["confirmed"]) if row["confirmed"] else "—",
                }
                for row in tables.get(arm) or []
                if isinstance(row, dict)
            ],
        }
        for arm in ("a", "b")
    ]


def _describe(test: ABTest) -> str:
    return f"{test.model_type.slug}: {test} ({test.status})"
