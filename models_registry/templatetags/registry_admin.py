"""The admin index block of the registry: each model type's active version and its live accuracy.

``{% load registry_admin %}{% registry_overview %}`` in ``templates/admin/index.html``, shown to
users who may view versions. Three queries whatever the number of model types: the model types,
their active versions, and those versions' latest live performance records.
"""

from __future__ import annotations

from typing import Any

from django import template

from models_registry.models import ModelVersion, PerformanceRecord
from training.models import ModelType

register = template.Library()


def overview_rows() -> list[dict[str, Any]]:
    """One row per model type: its active version (or None) and that version's live accuracy."""
    model_types = list(ModelType.objects.order_by("slug"))
    active = {v.model_type_id: v for v in ModelVersion.objects.active().filter(model_type__in=model_types)}
    live: dict[int, PerformanceRecord] = {}
    records = PerformanceRecord.objects.filter(
        version__in=list(active.values()), source=PerformanceRecord.Source.LIVE
    ).order_by("version_id", "-created_at", "-id")
    for record in records:
        live.setdefault(record.version_id, record)  # the latest per version comes first
    rows = []
    for model_type in model_types:
        version = active.get(model_type.pk)
        latest = live.get(version.pk) if version is not None else None
        metrics = latest.metrics if latest is not None and isinstance(latest.metrics, dict) else {}
        accuracy = metrics.get("accuracy")
        rows.append(
            {
                "model_type": model_type,
                "version": version,
                "live_accuracy": accuracy
                if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool)
                else None,
                "live_n": latest.test_set_size if latest is not None else 0,
            }
        )
    return rows


@register.inclusion_tag("admin/models_registry/includes/overview.html", takes_context=True)
def registry_overview(context: dict[str, Any]) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    allowed = bool(user is not None and user.has_perm("models_registry.view_modelversion"))
    # An inclusion tag renders in a context of its own: hand on the CSP nonce of the page, or the
    # block's <style> would carry none and the browser would refuse it.
    return {"allowed": allowed, "rows": overview_rows() if allowed else [], "csp_nonce": context.get("csp_nonce")}
