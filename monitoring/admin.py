"""The monitoring pages of the admin: the snapshots' list, and a page per model type with charts.

Read-only for everyone (snapshots are computed, never edited); seen by whoever holds
``monitoring.view_monitoringsnapshot`` (ML engineers and clinical leads). The charts are server-side
SVG (``learning_engine.charts``): no JavaScript, no CDN. Figures only: no case, value or subject.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from learning_engine.admin_links import RelatedLinksMixin
from models_registry.models import ModelVersion
from monitoring.figures import charts, monitoring_figures
from monitoring.models import MonitoringSnapshot
from monitoring.profiles import bin_labels, features_of_reference
from training.models import ModelType


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@admin.register(MonitoringSnapshot)
class MonitoringSnapshotAdmin(RelatedLinksMixin, admin.ModelAdmin[MonitoringSnapshot]):
    change_list_template = "admin/monitoring/monitoringsnapshot/change_list.html"
    list_display = (
        "computed_at",
        "model_type",
        "version_label",
        "arm",
        "predictions",
        "labelled",
        "accuracy_display",
        "degraded",
        "max_psi_display",
        "page_link",
    )
    list_filter = ("model_type", "degraded")
    list_select_related = ("model_type", "version")
    ordering = ("-computed_at", "-id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MonitoringSnapshot | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: MonitoringSnapshot | None = None) -> bool:
        return False

    @admin.display(description="version", ordering="version__version")
    def version_label(self, obj: MonitoringSnapshot) -> str:
        return obj.version.version

    @admin.display(description="live accuracy")
    def accuracy_display(self, obj: MonitoringSnapshot) -> str:
        if obj.live_accuracy is None:
            return "—"
        return f"{_pct(obj.live_accuracy)} [{_pct(obj.accuracy_low)}, {_pct(obj.accuracy_high)}]"

    @admin.display(description="max PSI", ordering="max_psi")
    def max_psi_display(self, obj: MonitoringSnapshot) -> str:
        return _num(obj.max_psi)

    @admin.display(description="monitoring page")
    def page_link(self, obj: MonitoringSnapshot) -> str:
        url = reverse("admin:monitoring_model_type", args=[obj.model_type.slug])
        return format_html('<a href="{}">{}</a>', url, obj.model_type.slug)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = dict(extra_context or {})
        extra["monitored_types"] = [
            (model_type.slug, reverse("admin:monitoring_model_type", args=[model_type.slug]))
            for model_type in ModelType.objects.order_by("slug")
        ]
        return super().changelist_view(request, extra)

    def get_urls(self) -> list[URLPattern]:
        page = path(
            "model-type/<slug:slug>/",
            self.admin_site.admin_view(self.model_type_view),
            name="monitoring_model_type",
        )
        return [page, *super().get_urls()]  # before the catch-all "<path:object_id>/"

    def model_type_view(self, request: HttpRequest, slug: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        model_type = get_object_or_404(ModelType, slug=slug)
        version = None
        label = request.GET.get("version", "")
        if "\x00" in label:  # no version has one, and PostgreSQL errs on it in a lookup
            raise Http404("No such version.")
        if label:
            version = get_object_or_404(ModelVersion, model_type=model_type, version=label[:32])
        figures = monitoring_figures(model_type, version=version)
        latest: MonitoringSnapshot | None = figures["latest"]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Monitoring of {model_type.slug}",
            "model_type": model_type,
            "figures": figures,
            "latest": latest,
            "charts": charts(figures["history"]) if figures["history"] else None,
            "drift_rows": _drift_rows(latest),
            "share_rows": _share_rows(latest),
            "arm_rows": [_summary(snapshot) for snapshot in figures["arms"]],
            "history_rows": [_summary(snapshot) for snapshot in reversed(figures["history"][-20:])],
            "latest_summary": _summary(latest) if latest is not None else None,
            "versions": ModelVersion.objects.filter(model_type=model_type).order_by("-created_at", "-id")[:20],
        }
        return TemplateResponse(request, "admin/monitoring/monitoringsnapshot/model_type.html", context)


def _summary(snapshot: MonitoringSnapshot) -> dict[str, Any]:
    bar = None if snapshot.offline_accuracy is None else snapshot.offline_accuracy - snapshot.tolerance
    return {
        "snapshot": snapshot,
        "accuracy": _pct(snapshot.live_accuracy),
        "interval": "—"
        if snapshot.accuracy_low is None
        else f"[{_pct(snapshot.accuracy_low)}, {_pct(snapshot.accuracy_high)}]",
        "recent": "—"
        if snapshot.recent_accuracy is None
        else f"{_pct(snapshot.recent_accuracy)} [{_pct(snapshot.recent_low)}, {_pct(snapshot.recent_high)}] over "
        f"{snapshot.recent_units} units from unit {snapshot.recent_start + 1}",
        "offline": _pct(snapshot.offline_accuracy),
        "bar": _pct(bar),
        "ece": _num(snapshot.ece),
        "offline_ece": _num(snapshot.offline_ece),
        "max_psi": _num(snapshot.max_psi),
        "prediction_psi": _num(snapshot.prediction_psi),
        "drifted": ", ".join(sorted(snapshot.drifted)) or "none",
    }


def _drift_rows(snapshot: MonitoringSnapshot | None) -> list[dict[str, Any]]:
    if snapshot is None:
        return []
    from monitoring.models import ReferenceProfile

    profile = ReferenceProfile.objects.filter(version_id=snapshot.version_id).values_list("profile", flat=True).first()
    bins = {feature.name: len(bin_labels(feature)) for feature in features_of_reference(profile or {})}
    rows = []
    for name, figure in sorted(snapshot.drift.items(), key=lambda item: -(item[1].get("psi") or 0.0)):
        rows.append(
            {
                "name": name,
                "psi": _num(figure.get("psi")),
                "drifted": name in snapshot.drifted,
                "missing": _pct(figure.get("missing_rate")),
                "reference_missing": _pct(figure.get("reference_missing_rate")),
                "out_of_range": _pct(figure.get("out_of_range_rate")),
                "bins": bins.get(name, "—"),
            }
        )
    return rows


def _share_rows(snapshot: MonitoringSnapshot | None) -> list[dict[str, str]]:
    if snapshot is None:
        return []
    codes = sorted(set(snapshot.prediction_shares) | set(snapshot.reference_prediction_shares))
    return [
        {
            "code": code,
            "live": _pct(snapshot.prediction_shares.get(code, 0.0)),
            "offline": _pct(snapshot.reference_prediction_shares.get(code))
            if snapshot.reference_prediction_shares
            else "—",
        }
        for code in codes
    ]
