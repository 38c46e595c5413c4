"""The admin of the model registry: versions, their comparison, activation history, performance.

Who does what (``learning_engine.roles``): ML engineers and clinical leads view versions,
performance records and the activation history; only clinical leads (``approve_modelversion``,
``deploy_modelversion``) see and run the approve / reject / activate / deactivate / archive
actions. Every action goes through ``confirm_and_apply``: a confirmation page with a note or a
reason, then one transition call per version in primary-key order (the model methods hold the
rules: two-person approval, one active version per model type, audit and history rows), then one
success and one "skipped" message.

Nothing is edited here: versions change only through their transitions, and the activation
history, performance records and artifact rejections are append-only records (view only).

Model types (registered by ``training.admin.model_types``) are re-registered with one more column, the
active version, read from the versions; the admin index shows each model type's active version
and live accuracy (``models_registry.templatetags.registry_admin``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from cases.dictionary.labels import labels_of
from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline, ReadOnlyInline
from learning_engine.admin_helpers import StateActionsMixin, confirm_and_apply
from learning_engine.admin_links import RelatedLinksMixin
from learning_engine.display import fmt, fmt_difference, fmt_difference_interval, metric_name, metric_rows, metric_value
from learning_engine.exceptions import DomainError
from models_registry.registry.compare import compare_versions
from models_registry.registry.models import (
    ActivationHistory,
    ArtifactRejection,
    ModelVersion,
    PerformanceRecord,
    VersionTransition,
)
from training.admin.display import (
    AlgorithmFilter,
    algorithm_label,
    calibration_chart,
    confusion_table,
    headline_rows,
    labels_under,
    per_class_rows,
    subgroup_tables,
)
from training.admin.model_types import ModelTypeAdmin as TrainingModelTypeAdmin
from training.models import DatasetSnapshot, ModelType
from training.models.dataset import built_on_visible

APPROVE = "models_registry.approve_modelversion"
DEPLOY = "models_registry.deploy_modelversion"
VIEW_VERSION = "models_registry.view_modelversion"
NOTE_MAX_LENGTH = 2000
_BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]
# Metrics of the comparison chart: all on 0..1 with higher better (the Brier score is in the table).
CHART_METRICS = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "auroc_macro")


def _metric(obj: ModelVersion, key: str) -> Any:
    return obj.metrics.get(key) if isinstance(obj.metrics, dict) else None


# --- Forms of the confirmation pages -------------------------------------------------------------


class ApproveForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=NOTE_MAX_LENGTH,
        help_text="What you reviewed (the evaluation, subgroups, the comparison with the active version).",
    )


class RejectForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=NOTE_MAX_LENGTH, help_text="Why it is rejected."
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=NOTE_MAX_LENGTH,
        help_text="Recorded in the audit trail and the activation history.",
    )


# --- Inlines (read-only records of a version) ----------------------------------------------------


class _ReadOnlyInline(ReadOnlyInline):
    # Whoever may view the version may view its records: they hold metrics and audit, no PHI.
    parent_view_permission = VIEW_VERSION


class VersionTransitionInline(AuditTrailInline):
    model = VersionTransition
    parent_view_permission = VIEW_VERSION


class PerformanceRecordInline(_ReadOnlyInline):
    model = PerformanceRecord
    fields = ("created_at", "source", "dataset", "accuracy", "f1_macro", "test_set_size", "created_by")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("created_by")

    @admin.display(description="accuracy")
    def accuracy(self, obj: PerformanceRecord) -> str:
        return metric_value("accuracy", obj.metrics.get("accuracy") if isinstance(obj.metrics, dict) else None)

    @admin.display(description="F1 (macro)")
    def f1_macro(self, obj: PerformanceRecord) -> str:
        return metric_value("f1_macro", obj.metrics.get("f1_macro") if isinstance(obj.metrics, dict) else None)


class ArtifactRejectionInline(_ReadOnlyInline):
    model = ArtifactRejection
    fields = ("created_at", "code", "purpose", "actor", "detail")
    readonly_fields = fields
    verbose_name_plural = "artifact rejections (refused loads)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("actor")


# --- Versions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartBar:
    x: float
    y: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True, slots=True)
class ChartGroup:
    label: str
    label_x: float
    bars: list[ChartBar]


@dataclass(frozen=True, slots=True)
class LegendItem:
    name: str
    colour: str
    x: float


@dataclass(frozen=True, slots=True)
class ComparisonChart:
    """Grouped vertical bars (a, b) per metric on a fixed 0..1 scale, drawn by compare.html."""

    width: int
    height: int
    baseline: float
    label_y: float
    top: float
    bar_width: float
    groups: list[ChartGroup]
    legend: list[LegendItem]


COLOURS = ("#417690", "#c0392b")


def comparison_chart(rows: list[tuple[str, Any, Any]], *, names: tuple[str, str], width: int = 640) -> ComparisonChart:
    """The geometry of the comparison chart: per metric, a bar for a and one for b (0..1)."""
    height, top, bottom, side = 260, 24.0, 40.0, 8.0
    baseline = height - bottom
    plot = baseline - top
    slot = (width - 2 * side) / max(len(rows), 1)
    bar_width = slot * 0.35
    groups = []
    for index, (label, value_a, value_b) in enumerate(rows):
        start = side + index * slot + slot * 0.15
        bars = []
        for offset, (name, value, colour) in enumerate(zip(names, (value_a, value_b), COLOURS, strict=True)):
            number = value if isinstance(value, (int, float)) and math.isfinite(value) else 0.0
            bar_height = plot * max(0.0, min(1.0, float(number)))
            bars.append(
                ChartBar(
                    x=round(start + offset * bar_width, 2),
                    y=round(baseline - bar_height, 2),
                    height=round(bar_height, 2),
                    colour=colour,
                    title=f"{name} {label}: {fmt(value)}",
                )
            )
        groups.append(ChartGroup(label=label, label_x=round(start + bar_width, 2), bars=bars))
    return ComparisonChart(
        width=width,
        height=height,
        baseline=baseline,
        label_y=baseline + 16,
        top=top,
        bar_width=round(bar_width, 2),
        groups=groups,
        legend=[
            LegendItem(name=name, colour=colour, x=8 + 160 * i)
            for i, (name, colour) in enumerate(zip(names, COLOURS, strict=True))
        ],
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(StateActionsMixin, RelatedLinksMixin, admin.ModelAdmin):
    list_display = (
        "version",
        "model_type",
        "algorithm_name",
        "accuracy",
        "f1_macro",
        "auroc_macro",
        "approval_badge",
        "deployment_badge",
        "created_by",
        "created_at",
    )
    list_display_links = ("version",)
    list_filter = ("model_type", "approval_status", "deployment_status", AlgorithmFilter)
    list_select_related = ("model_type", "created_by")
    list_per_page = 100
    search_fields = ("version",)
    search_help_text = "A version label."

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Built on a snapshot hidden from the user (built_on_visible): its counts would show; not listed.
        return built_on_visible(super().get_queryset(request), request.user)

    actions = [
        "approve_selected",
        "reject_selected",
        "activate_selected",
        "deactivate_selected",
        "archive_selected",
        "compare_selected",
    ]
    inlines = [PerformanceRecordInline, VersionTransitionInline, ArtifactRejectionInline]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "model_type",
                    "version",
                    "algorithm_name",
                    "hyperparameters",
                    "job",
                    "dataset",
                    "dictionary",
                    "training_ranges_table",
                )
            },
        ),
        (
            "Approval and deployment",
            {
                "fields": (
                    "approval_badge",
                    "prediction_latency",
                    "approved_by",
                    "approved_at",
                    "approval_note",
                    "deployment_badge",
                    "deployed_at",
                    "deactivated_at",
                )
            },
        ),
        ("Artifact", {"fields": ("artifact", "artifact_sha256", "artifact_format", "created_by", "created_at")}),
    )
    readonly_fields = (
        "model_type",
        "version",
        "algorithm_name",
        "hyperparameters",
        "job",
        "dataset",
        "dictionary",
        "training_ranges_table",
        "approval_badge",
        "prediction_latency",
        "approved_by",
        "approved_at",
        "approval_note",
        "deployment_badge",
        "deployed_at",
        "deactivated_at",
        "artifact",
        "artifact_sha256",
        "artifact_format",
        "created_by",
        "created_at",
    )

    # --- Permissions: view only; the actions carry their own --------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from completed jobs (or an external trainer's upload)

    def has_change_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE)

    def has_deploy_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(DEPLOY)

    def action_unavailable(self, request: HttpRequest, obj: ModelVersion, name: str) -> str | None:
        return _version_unavailable(obj, name, request.user)

    # --- Columns ---------------------------------------------------------------------------------

    @admin.display(description="algorithm", ordering="algorithm")
    def algorithm_name(self, obj: ModelVersion) -> str:
        return algorithm_label(obj.algorithm)

    @admin.display(description="accuracy")
    def accuracy(self, obj: ModelVersion) -> str:
        return metric_value("accuracy", _metric(obj, "accuracy"))

    @admin.display(description="F1 (macro)")
    def f1_macro(self, obj: ModelVersion) -> str:
        return metric_value("f1_macro", _metric(obj, "f1_macro"))

    @admin.display(description="AUROC")
    def auroc_macro(self, obj: ModelVersion) -> str:
        return fmt(_metric(obj, "auroc_macro"))

    @admin.display(description="training ranges")
    def training_ranges_table(self, obj: ModelVersion) -> str:
        """Min and max of each numeric input over the train split, named and in units as the
        version's dictionary gives them: what predict's out_of_range warnings compare with."""
        ranges = obj.training_ranges if isinstance(obj.training_ranges, dict) else {}
        if not ranges:
            return "Not measured: predict warns against the dictionary's expected ranges."
        labels = labels_of(obj.dictionary)

        def named(field: str) -> tuple[str, str]:
            key = field.removeprefix("findings.")
            if key not in labels.findings:
                return field, ""
            return labels.finding_name(key), labels.finding_unit(key)  # the unit as printed (°C, not Cel)

        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (*named(field), fmt(bounds.get("min")), fmt(bounds.get("max")))
                for field, bounds in sorted(ranges.items())
                if isinstance(bounds, dict)
            ),
        )
        return format_html(
            '<table class="training-ranges"><thead><tr><th>input</th><th>unit</th><th>min</th><th>max</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="single-row prediction latency")
    def prediction_latency(self, obj: ModelVersion) -> str:
        """What one predict request will cost, as the registry measured it (median and p95 of its
        offline evaluation), beside the upload limit: the approver sees it before approving."""
        offline = (
            obj.performance.filter(source=PerformanceRecord.Source.OFFLINE)
            .order_by("-created_at", "-id")
            .values_list("metrics", flat=True)
            .first()
        )
        latency = offline.get("latency_ms") if isinstance(offline, dict) else None
        if not isinstance(latency, dict) or not isinstance(latency.get("median"), int | float):
            return "not measured"
        p95 = latency.get("p95")
        p95_text = f"{p95:.1f}" if isinstance(p95, int | float) else "?"
        return (
            f"median {latency['median']:.1f} ms, p95 {p95_text} ms ({latency.get('calls')} calls); "
            f"uploads above {settings.ARTIFACT_MAX_PREDICT_MS} ms are refused (ARTIFACT_MAX_PREDICT_MS)"
        )

    @admin.display(description="approval", ordering="approval_status")
    def approval_badge(self, obj: ModelVersion) -> str:
        return format_html(
            '<span class="version-badge version-approval-{}">{}</span>',
            obj.approval_status,
            obj.get_approval_status_display(),
        )

    @admin.display(description="deployment", ordering="deployment_status")
    def deployment_badge(self, obj: ModelVersion) -> str:
        return format_html(
            '<span class="version-badge version-deployment-{}">{}</span>',
            obj.deployment_status,
            obj.get_deployment_status_display(),
        )

    # --- The page: the evaluation as the job's page shows it, and "Compare with..." ----------------

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ModelVersion | None = None,
    ) -> HttpResponse:
        if obj is not None:
            # The version keeps the headline metrics; the whole evaluation (confusion matrix, per
            # class, subgroups) is the offline performance record made when it was registered.
            offline = (
                obj.performance.filter(source=PerformanceRecord.Source.OFFLINE).order_by("-created_at", "-id").first()
            )
            metrics = dict(offline.metrics) if offline is not None and isinstance(offline.metrics, dict) else {}
            metrics.update(obj.metrics if isinstance(obj.metrics, dict) else {})
            others = (
                built_on_visible(ModelVersion.objects.filter(model_type_id=obj.model_type_id), request.user)
                .exclude(pk=obj.pk)
                .order_by("-created_at", "-id")
                .only("id", "version", "algorithm", "approval_status", "deployment_status")
            )
            labels = labels_under(obj.dictionary_id, obj.model_type)
            context.update(
                {
                    "subtitle": f"{obj.model_type.name} ({obj.model_type.slug}) {obj.version}: "
                    f"{algorithm_label(obj.algorithm)}",
                    "headline": headline_rows(metrics),
                    "confusion": confusion_table(metrics, labels),
                    "per_class": per_class_rows(metrics, labels),
                    "subgroups": subgroup_tables(metrics),
                    "bootstrap": metrics.get("bootstrap") if isinstance(metrics.get("bootstrap"), dict) else {},
                    "calibration_chart": calibration_chart(metrics),
                    "brier_definition": metrics.get("brier_definition") or "",
                    "evaluation_title": "Evaluation on the test split (the registry's own)",
                    "compare_url": reverse("admin:models_registry_modelversion_compare"),
                    "compare_choices": [
                        (
                            other.pk,
                            f"{other.version} ({algorithm_label(other.algorithm)}; "
                            f"{other.get_approval_status_display().lower()}, "
                            f"{other.get_deployment_status_display().lower()})",
                        )
                        for other in others
                    ],
                }
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Actions ---------------------------------------------------------------------------------

    @admin.action(
        description="Approve this version",
        description_plural="Approve selected versions",
        permissions=["approve"],
        location=_BOTH_LOCATIONS,
    )
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Approve model versions",
            done="Approved",
            form_class=ApproveForm,
            question="Approve these versions for activation? You must not be the person who trained them.",
            describe=_describe,
            apply=lambda version, data: version.approve(by=request.user, note=data["note"]),
            unavailable=lambda version: _version_unavailable(version, "approve_selected", request.user),
        )

    @admin.action(
        description="Reject this version",
        description_plural="Reject selected versions",
        permissions=["approve"],
        location=_BOTH_LOCATIONS,
    )
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Reject model versions",
            done="Rejected",
            form_class=RejectForm,
            describe=_describe,
            apply=lambda version, data: version.reject(by=request.user, note=data["note"]),
            unavailable=lambda version: _version_unavailable(version, "reject_selected", request.user),
        )

    @admin.action(
        description="Activate this version",
        description_plural="Activate selected versions",
        permissions=["deploy"],
        location=_BOTH_LOCATIONS,
    )
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        # Two versions of one model type cannot both end up active: activating both in turn would
        # silently leave the later one serving. Such a selection is skipped, with the reason.
        per_type: dict[int, int] = {}
        for model_type_id in queryset.values_list("model_type_id", flat=True):
            per_type[model_type_id] = per_type.get(model_type_id, 0) + 1

        def activate(version: ModelVersion, data: dict[str, Any]) -> None:
            if per_type.get(version.model_type_id, 0) > 1:
                raise DomainError(f"{version} shares its model type with another selected version; select one")
            version.activate(by=request_actor(request), reason=data["reason"])

        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Activate model versions",
            done="Activated",
            form_class=ReasonForm,
            question="Activate these versions? Each replaces the active version of its model type, which then "
            "serves every prediction.",
            describe=_describe,
            apply=activate,
            unavailable=lambda version: _version_unavailable(version, "activate_selected", request.user),
        )

    @admin.action(
        description="Deactivate this version",
        description_plural="Deactivate selected versions",
        permissions=["deploy"],
        location=_BOTH_LOCATIONS,
    )
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Deactivate model versions",
            done="Deactivated",
            form_class=ReasonForm,
            question="Deactivate these versions? Their model types then have no active version and refuse "
            "predictions until another is activated.",
            describe=_describe,
            apply=lambda version, data: version.deactivate(by=request.user, reason=data["reason"]),
            unavailable=lambda version: _version_unavailable(version, "deactivate_selected", request.user),
        )

    @admin.action(
        description="Archive this version",
        description_plural="Archive selected versions",
        permissions=["deploy"],
        location=_BOTH_LOCATIONS,
    )
    def archive_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset,
            title="Archive model versions",
            done="Archived",
            form_class=ReasonForm,
            question="Archive these versions? An archived version is kept for the record and never served again.",
            describe=_describe,
            apply=lambda version, data: version.archive(by=request.user, reason=data["reason"]),
            unavailable=lambda version: _version_unavailable(version, "archive_selected", request.user),
        )

    @admin.action(description="Compare two selected versions", permissions=["view"])
    def compare_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        pks = list(queryset.order_by("created_at", "id").values_list("pk", flat=True)[:3])
        if len(pks) != 2:
            self.message_user(request, "Select exactly two versions of one model type to compare.", messages.ERROR)
            return None
        url = reverse("admin:models_registry_modelversion_compare")
        return HttpResponseRedirect(f"{url}?a={pks[0]}&b={pks[1]}")

    # --- The comparison page ---------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        compare = path(
            "compare/",
            self.admin_site.admin_view(self.compare_view),
            name="models_registry_modelversion_compare",
        )
        return [compare, *super().get_urls()]  # before the catch-all "<path:object_id>/"

    def compare_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:models_registry_modelversion_changelist")
        try:
            pk_a, pk_b = int(request.GET.get("a", "")), int(request.GET.get("b", ""))
        except ValueError:
            self.message_user(request, "Choose two versions to compare.", messages.ERROR)
            return HttpResponseRedirect(changelist)
        versions = {
            v.pk: v
            for v in built_on_visible(
                ModelVersion.objects.select_related("model_type", "dataset"), request.user
            ).filter(pk__in=[pk_a, pk_b])
        }
        if pk_a not in versions or pk_b not in versions:
            self.message_user(request, "One of the versions does not exist.", messages.ERROR)
            return HttpResponseRedirect(changelist)
        a, b = versions[pk_a], versions[pk_b]
        try:
            comparison = compare_versions(a, b, by=request_actor(request))
        except DomainError as exc:
            self.message_user(request, f"The versions cannot be compared: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(changelist)
        rows = [
            {
                "metric": metric_name(row["metric"]),
                "a": metric_value(row["metric"], row["a"]),
                "b": metric_value(row["metric"], row["b"]),
                "difference": fmt_difference(row["metric"], row["difference"]),
                "ci": fmt_difference_interval(row["metric"], row["ci"]),
                "method": row.get("interval_method") or "",
                "better": _better(row),
            }
            for row in comparison["differences"]
        ]
        chart = comparison_chart(
            [
                (metric_name(row["metric"]), row["a"], row["b"])
                for row in comparison["differences"]
                if row["metric"] in CHART_METRICS
            ],
            names=(a.version, b.version),
        )
        # The snapshot both were scored on: named as the version it was built under.
        snapshot_dictionary = (
            DatasetSnapshot.objects.filter(pk=comparison["test_set"].get("dataset"))
            .values_list("dictionary_id", flat=True)
            .first()
        )
        labels = labels_under(snapshot_dictionary, a.model_type)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Compare {a.model_type.slug} {a.version} and {b.version}",
            "test_labels": [
                {"code": str(code), "name": labels.diagnosis_name(code)}
                for code in comparison["test_set"].get("labels") or []
            ],
            "subtitle": None,
            "opts": self.model._meta,
            "a": a,
            "b": b,
            "comparison": comparison,
            "rows": rows,
            "chart": chart,
            "p_value": f"{comparison['mcnemar']['p_value']:.4g}",
            "margin": f"{comparison['sample_size']['difference'] * 100:g}",
            "power": f"{comparison['sample_size']['power'] * 100:g}",
            "live_a": _live_figures(comparison["a"]["live"]),
            "live_b": _live_figures(comparison["b"]["live"]),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/models_registry/modelversion/compare.html", context)


def _version_unavailable(version: ModelVersion, action: str, user: Any) -> str | None:
    """Why a version action does not apply to the version's state (None when it does)."""
    if action in ("approve_selected", "reject_selected"):
        if not version.can_decide():
            return f"it is already {version.get_approval_status_display().lower()}"
        if user.pk in version.actor_ids():
            return "you took part in making it; another person must approve or reject it (two-person rule)"
    elif action == "activate_selected" and not version.can_activate():
        if version.deployment_status == ModelVersion.Deployment.ACTIVE:
            return "it is already active"
        if version.approval_status != ModelVersion.Approval.APPROVED:
            return f"it is {version.get_approval_status_display().lower()}, not approved"
        return f"it is {version.get_deployment_status_display().lower()}"
    elif action == "deactivate_selected" and not version.can_deactivate():
        return f"it is {version.get_deployment_status_display().lower()}, not active"
    elif action == "archive_selected" and not version.can_archive():
        return f"it is {version.get_deployment_status_display().lower()}"
    return None


def _live_figures(live: Any) -> dict[str, Any] | None:
    """A version's live accuracy as the page writes metrics (a percentage), with its count."""
    if not isinstance(live, dict):
        return None
    return {**live, "accuracy": metric_value("accuracy", live.get("accuracy"))}


def _describe(version: ModelVersion) -> str:
    accuracy = metric_value("accuracy", _metric(version, "accuracy"))
    return (
        f"{version.model_type.slug} {version.version} ({algorithm_label(version.algorithm)}; accuracy {accuracy}; "
        f"{version.approval_status}, {version.deployment_status})"
    )


def _better(row: dict[str, Any]) -> str:
    """Which side the interval favours ("a", "b"), or "" when it includes 0 or there is none."""
    ci = row.get("ci")
    if not (isinstance(ci, list) and len(ci) == 2):
        return ""
    low, high = ci
    sign = 1 if row.get("higher_is_better") else -1
    if low > 0 or high < 0:
        return "b" if (low > 0) == (sign > 0) else "a"
    return ""


# --- Append-only records -------------------------------------------------------------------------


class _ReadOnlyAdmin(RelatedLinksMixin, admin.ModelAdmin):
    """View only: append-only records are never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ActivationHistory)
class ActivationHistoryAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "model_type", "from_version", "to_version", "actor", "reason")
    list_filter = ("model_type",)
    list_select_related = ("model_type", "from_version", "to_version", "actor")
    date_hierarchy = "created_at"
    fields = ("created_at", "model_type", "from_version", "to_version", "actor", "reason")
    readonly_fields = fields


@admin.register(PerformanceRecord)
class PerformanceRecordAdmin(_ReadOnlyAdmin):
    list_display = (
        "created_at",
        "model_type",
        "version",
        "source",
        "accuracy",
        "test_set_size",
        "dataset",
        "created_by",
    )
    list_filter = ("source", "version__model_type")
    list_select_related = ("version__model_type", "created_by")
    fields = ("created_at", "version", "source", "dataset", "test_set_size", "created_by", "metrics_table")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Built on a snapshot hidden from the user (built_on_visible): its counts would show; not listed.
        # A record's own snapshot (an evaluation on another one) too.
        mine = built_on_visible(super().get_queryset(request), request.user, "version__dataset")
        return built_on_visible(mine, request.user)

    @admin.display(description="metrics")
    def metrics_table(self, obj: PerformanceRecord) -> str:
        """The record's figures, named as on every other page (the full evaluation's tables are on
        the version's page)."""
        metrics = obj.metrics if isinstance(obj.metrics, dict) else {}
        rows = format_html_join(
            "", "<tr><th>{}</th><td class='num'>{}</td></tr>", metric_rows(metrics, skip=("brier_definition",))
        )
        return format_html('<table class="version-metrics"><tbody>{}</tbody></table>', rows) if rows else "—"

    @admin.display(description="model type", ordering="version__model_type__slug")
    def model_type(self, obj: PerformanceRecord) -> str:
        return obj.version.model_type.slug

    @admin.display(description="accuracy")
    def accuracy(self, obj: PerformanceRecord) -> str:
        return metric_value("accuracy", obj.metrics.get("accuracy") if isinstance(obj.metrics, dict) else None)


@admin.register(ArtifactRejection)
class ArtifactRejectionAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "version", "job", "code", "purpose", "actor")
    list_filter = ("code", "purpose")
    list_select_related = ("version", "job", "actor")
    # A refused upload has no version: its job and the refused bytes' sha256 say what it was.
    fields = ("created_at", "version", "job", "sha256", "code", "purpose", "actor", "detail")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Those of a job or version built on a snapshot hidden from the user are hidden too.
        rows = built_on_visible(super().get_queryset(request), request.user, "version__dataset")
        return built_on_visible(rows, request.user, "job__dataset")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No role lists this audit table; whoever may view versions may see their refused loads.
        return request.user.has_perm(VIEW_VERSION) or super().has_view_permission(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


# --- Model types, with their active version -------------------------------------------------------


admin.site.unregister(ModelType)


@admin.register(ModelType)
class ModelTypeAdmin(TrainingModelTypeAdmin):
    """``training.admin.model_types.ModelTypeAdmin`` with the active version (read from the versions)."""

    list_display = (*TrainingModelTypeAdmin.list_display, "active_version")  # type: ignore[assignment]  # one more

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelType]:
        active = ModelVersion.objects.filter(model_type=OuterRef("pk"), deployment_status="active")
        return super().get_queryset(request).annotate(active_version_label=Subquery(active.values("version")[:1]))

    @admin.display(description="active version")
    def active_version(self, obj: ModelType) -> str:
        return getattr(obj, "active_version_label", None) or "—"
