"""What was collected: counts and distributions over a queryset of cases. No PHI.

Diagnosis codes and findings carry their data dictionary names (``cases.dictionary.labels``): the
names come from the dictionaries, never from a case.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, FloatField, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from cases.dictionary.labels import NO_LABELS, definition_of, labels_of
from cases.models import DEIDENTIFIED_STATES, Case, DataDictionary

HISTOGRAM_BINS = 10
# A finding's mean is given only over at least this many cases: over one case it would be that
# case's value (small-cell suppression; counts are given in any case).
MIN_CASES_FOR_MEAN = 5


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


def _current_dictionaries(cohorts: list[str]) -> dict[str, DataDictionary]:
    """The current (newest published) version of each of ``cohorts`` that has one: one query."""
    current: dict[str, DataDictionary] = {}
    rows = DataDictionary.objects.published().filter(cohort__slug__in=cohorts).select_related("cohort")
    for dictionary in rows.order_by("cohort__slug", "-version"):
        current.setdefault(dictionary.cohort.slug, dictionary)
    return current


def finding_summaries(queryset: Any, dictionaries: dict[str, DataDictionary]) -> list[dict[str, Any]]:
    """Per cohort and finding of its current version: cases with a value, their mean (numbers,
    integers and booleans, the share of 1s; none below ``MIN_CASES_FOR_MEAN`` cases) and how many
    lie outside the expected range. Over the cases that passed a dictionary check: their findings
    are numbers by construction. One aggregate query per cohort."""
    summaries: list[dict[str, Any]] = []
    for slug, dictionary in sorted(dictionaries.items()):
        definition = definition_of(dictionary)
        if not definition.findings:
            continue
        aggregates: dict[str, Any] = {}
        for index, finding in enumerate(definition.findings):
            has = Q(findings__has_key=finding.key)
            aggregates[f"n{index}"] = Count("id", filter=has)
            if finding.value_type == "category":
                continue
            value = Cast(KeyTextTransform(finding.key, "findings"), FloatField())
            aggregates[f"m{index}"] = Avg(value, filter=has)
            low, high = finding.expected_range.min, finding.expected_range.max
            outside = Q()
            if low is not None:
                outside |= Q(**{f"findings__{finding.key}__lt": low})
            if high is not None:
                outside |= Q(**{f"findings__{finding.key}__gt": high})
            if low is not None or high is not None:
                aggregates[f"o{index}"] = Count("id", filter=has & outside)
        figures = queryset.filter(cohort=slug, dictionary__isnull=False).order_by().aggregate(**aggregates)
        labels = labels_of(dictionary)
        for index, finding in enumerate(definition.findings):
            cases = int(figures[f"n{index}"] or 0)
            mean = figures.get(f"m{index}")
            summaries.append(
                {
                    "cohort": slug,
                    "dictionary_version": dictionary.version,
                    "key": finding.key,
                    "display_name": finding.display_name,
                    "unit": finding.unit,
                    "unit_display": labels.finding_unit(finding.key),
                    "value_type": finding.value_type,
                    "cases": cases,
                    "mean": round(float(mean), 4) if mean is not None and cases >= MIN_CASES_FOR_MEAN else None,
                    "outside_expected_range": int(figures.get(f"o{index}") or 0),
                }
            )
    return summaries


def compute_statistics(queryset: Any | None = None, *, phi: bool = True) -> dict[str, Any]:
    """The statistics of the design, over ``queryset`` (all cases by default).

    ``phi``: whether the user may see raw cases. Without it the finding summaries are over the
    approved and retracted cases only: a mean or a count over others would give away the values
    of a case the user may not see (the summary with and without one submitted or rejected case,
    through the filters or over time, differs by exactly that case). The counts stay over all.

    Shape: ``{"total", "by_status", "by_cohort", "by_diagnosis", "diagnoses", "findings",
    "quality_histogram", "deidentified", "rejected_by_reason", "reviews_by_reviewer"}``;
    ``diagnoses`` is ``by_diagnosis`` with each code's display name, ``findings`` the summaries of
    ``finding_summaries``.
    """
    queryset = Case.objects.all() if queryset is None else queryset
    by_cohort = _counts(queryset, "cohort")
    by_diagnosis = _counts(queryset, "diagnosis_code")
    dictionaries = _current_dictionaries(sorted(by_cohort))
    names = NO_LABELS
    for slug in sorted(dictionaries, reverse=True):  # the first cohort in slug order names a shared code
        names = labels_of(dictionaries[slug]).merge(names)
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
        "by_cohort": by_cohort,
        "by_diagnosis": by_diagnosis,
        "diagnoses": [
            {"code": code, "display_name": names.diagnosis_name(code), "cases": count}
            for code, count in by_diagnosis.items()
        ],
        "findings": finding_summaries(
            queryset if phi else queryset.filter(status__in=DEIDENTIFIED_STATES), dictionaries
        ),
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
