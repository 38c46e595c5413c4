"""What was collected: counts and distributions over a queryset of cases. No PHI."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from cases.models import Case

HISTOGRAM_BINS = 10


def quality_histogram(queryset: Any, bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """Counts of quality scores in ``bins`` equal-width bins over 0..1 (the last includes 1.0)."""
    edges = [round(i / bins, 4) for i in range(bins + 1)]
    aggregates = {}
    for i in range(bins):
        low, high = edges[i], edges[i + 1]
        upper = Q(quality_score__lte=high) if i == bins - 1 else Q(quality_score__lt=high)
        aggregates[f"b{i}"] = Count("id", filter=Q(quality_score__gte=low) & upper)
    counts = queryset.aggregate(**aggregates)
    return [{"low": edges[i], "high": edges[i + 1], "count": counts[f"b{i}"]} for i in range(bins)]


def _counts(queryset: Any, field: str) -> dict[str, int]:
    rows = queryset.order_by().values(field).annotate(n=Count("id")).order_by(field)
    return {str(row[field] or ""): row["n"] for row in rows}


def compute_statistics(queryset: Any | None = None) -> dict[str, Any]:
    """The statistics of the design, over ``queryset`` (all cases by default).

    Shape: ``{"total", "by_status", "by_cohort", "by_diagnosis", "quality_histogram",
    "deidentified", "rejected_by_reason", "reviews_by_reviewer"}``.
    """
    queryset = Case.objects.all() if queryset is None else queryset
    reviewed = queryset.exclude(reviewed_by=None)
    reviewers = (
        reviewed.order_by()
        .values("reviewed_by__username")
        .annotate(
            reviews=Count("id"),
            approved=Count("id", filter=Q(status__in=[Case.Status.APPROVED, Case.Status.RETRACTED])),
            rejected=Count("id", filter=Q(status=Case.Status.REJECTED)),
        )
        .order_by("-reviews", "reviewed_by__username")
    )
    return {
        "total": queryset.count(),
        "by_status": dict.fromkeys(Case.Status.values, 0) | _counts(queryset, "status"),
        "by_cohort": _counts(queryset, "cohort"),
        "by_diagnosis": _counts(queryset, "diagnosis_code"),
        "quality_histogram": quality_histogram(queryset),
        "deidentified": queryset.filter(status=Case.Status.APPROVED).filter(deidentified__isnull=False).count(),
        "rejected_by_reason": _counts(queryset.filter(status=Case.Status.REJECTED), "rejection_reason"),
        "reviews_by_reviewer": [
            {
                "reviewer": row["reviewed_by__username"],
                "reviews": row["reviews"],
                "approved": row["approved"],
                "rejected": row["rejected"],
            }
            for row in reviewers
        ],
    }
