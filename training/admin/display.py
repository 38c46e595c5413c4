"""How the training admin shows stored evaluations, dataset compositions and scan reports.

Pure functions of stored JSON (every key may be missing), shared with the registry's version pages
(``models_registry.registry.admin``) and ``templates/admin/training/trainingjob/evaluation.html``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from cases.dictionary.labels import NO_LABELS, Labels, version_labels
from learning_engine.charts import LineChart, line_chart
from learning_engine.display import (
    finite_number,
    fmt,
    fmt_count,
    metric_name,
    metric_rows,
    metric_value,
)
from training.models import ModelType
from training.models.dataset import SPLITS

# How many findings of a scan report, and case ids per kind, a dataset page lists.
MAX_FINDINGS_LISTED = 100
MAX_CASE_IDS_LISTED = 50


def as_count(value: Any) -> int:
    number = finite_number(value)
    return int(number) if number is not None else 0


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# The evaluation's headline metrics, each with its interval's key (names: learning_engine.display).
HEADLINE_METRICS = (
    ("accuracy", "accuracy_ci"),
    ("f1_macro", "f1_macro_ci"),
    ("f1_weighted", None),
    ("precision_macro", None),
    ("recall_macro", None),
    ("precision_weighted", None),
    ("recall_weighted", None),
    ("auroc_macro", None),
    ("brier", None),
    ("ece", "ece_ci"),
)
SUBGROUP_TITLES = {"sex": "By sex", "age_band": "By age band"}


def headline_rows(evaluation: Mapping[str, Any]) -> list[dict[str, str]]:
    """The test-set metrics of an evaluation (``training.evaluation.evaluate``), with 95% intervals."""
    rows = [
        {
            "name": metric_name(key),
            "value": metric_value(key, evaluation.get(key)),
            "interval": metric_value(ci, evaluation.get(ci)) if ci and evaluation.get(ci) is not None else "",
        }
        for key, ci in HEADLINE_METRICS
        if key in evaluation
    ]
    if "test_size" in evaluation:
        rows.insert(0, {"name": metric_name("test_size"), "value": fmt_count(evaluation["test_size"]), "interval": ""})
    latency = as_dict(evaluation.get("latency_ms"))
    if latency:
        rows.append(
            {
                "name": "Single-row prediction latency (ms)",
                "value": f"median {fmt(latency.get('median'), 1)}, p95 {fmt(latency.get('p95'), 1)}",
                "interval": f"{fmt_count(latency.get('calls'))} calls",
            }
        )
    return rows


def calibration_chart(evaluation: Mapping[str, Any]) -> LineChart | None:
    """The reliability diagram of an evaluation's ``calibration``: accuracy against mean probability
    per bin, beside the diagonal of perfect calibration; None when the evaluation has none."""
    bins = [row for row in as_list(as_dict(evaluation.get("calibration")).get("bins")) if isinstance(row, Mapping)]
    points = [
        (float(row["confidence"]), float(row["accuracy"]))
        for row in bins
        if row.get("count") and row.get("confidence") is not None and row.get("accuracy") is not None
    ]
    if not points:
        return None
    return line_chart(
        [("the model (per bin)", points), ("perfect calibration", [(0.0, 0.0), (1.0, 1.0)])],
        title="Reliability diagram: accuracy per bin of the predicted label's probability",
        x_label="mean predicted probability",
        y_label="accuracy",
        y_min=0.0,
        y_max=1.0,
        integer_x=False,
    )


def labels_under(dictionary_id: int | None, model_type: ModelType) -> Labels:
    """The names of the data dictionary version a snapshot or a model was built under, else (built
    before dictionaries) of its cohort's current one: one query per page."""
    return version_labels(dictionary_id, model_type.cohort)


def confusion_table(evaluation: Mapping[str, Any], labels: Labels = NO_LABELS) -> dict[str, Any] | None:
    """Rows of the confusion matrix (true label by predicted label), with totals and each label's
    dictionary name on both axes (empty for a label no dictionary names); None if absent."""
    confusion = as_dict(evaluation.get("confusion_matrix"))
    codes = [str(label) for label in as_list(confusion.get("labels"))]
    matrix = as_list(confusion.get("matrix"))
    if not codes or len(matrix) != len(codes):
        return None
    rows = []
    column_totals = [0] * len(codes)
    for i, (label, raw) in enumerate(zip(codes, matrix, strict=True)):
        counts = [as_count(value) for value in as_list(raw)][: len(codes)]
        counts += [0] * (len(codes) - len(counts))
        for j, count in enumerate(counts):
            column_totals[j] += count
        rows.append(
            {
                "label": label,
                "name": labels.diagnosis_name(label),
                "cells": [{"count": c, "hit": i == j} for j, c in enumerate(counts)],
                "total": sum(counts),
            }
        )
    return {
        "labels": codes,
        "columns": [{"label": code, "name": labels.diagnosis_name(code)} for code in codes],
        "rows": rows,
        "column_totals": column_totals,
        "total": sum(column_totals),
    }


def _interval(values: Mapping[str, Any], key: str) -> str:
    """A metric's interval as ``metric_value`` writes it, empty when there is none."""
    return metric_value(key, values[key]) if values.get(key) else ""


def per_class_rows(evaluation: Mapping[str, Any], labels: Labels = NO_LABELS) -> list[dict[str, str]]:
    return [
        {
            "label": str(entry.get("label", "")),
            "name": labels.diagnosis_name(entry.get("label", "")),
            "precision": metric_value("precision", entry.get("precision")),
            "recall": metric_value("recall", entry.get("recall")),
            "f1": metric_value("f1", entry.get("f1")),
            "support": fmt_count(entry.get("support")),
            "auroc": fmt(entry.get("auroc")),
        }
        for entry in as_list(evaluation.get("per_class"))
        if isinstance(entry, dict)
    ]


def subgroup_tables(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table per subgroup field (sex, age band, ...), each row with its size."""
    tables = []
    for field_name, groups in as_dict(evaluation.get("subgroups")).items():
        rows = [
            {
                "value": str(group.get("value", "")),
                "n": fmt_count(group.get("n")),
                "accuracy": metric_value("accuracy", group.get("accuracy")),
                "accuracy_ci": metric_value("accuracy_ci", group.get("accuracy_ci"))
                if group.get("accuracy_ci")
                else "",
                "f1_macro": metric_value("f1_macro", group.get("f1_macro")),
                "f1_macro_ci": metric_value("f1_macro_ci", group.get("f1_macro_ci"))
                if group.get("f1_macro_ci")
                else "",
                "auroc_macro": fmt(group.get("auroc_macro")),
                "brier": fmt(group.get("brier")),
            }
            for group in as_list(groups)
            if isinstance(group, dict)
        ]
        title = SUBGROUP_TITLES.get(field_name, f"By {field_name.replace('_', ' ')}")
        tables.append({"field": field_name, "title": title, "rows": rows})
    return tables


def metric_items(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A job's latest metrics as (display name, value) pairs, named as everywhere else."""
    return metric_rows(metrics)


def history_charts(history: Iterable[Any]) -> tuple[LineChart | None, LineChart | None]:
    """The loss curves (train and validation) and the validation accuracy curve, per epoch."""
    epochs = [entry for entry in history if isinstance(entry, dict)]
    if not epochs:
        return None, None

    def points(key: str) -> list[tuple[float, Any]]:
        return [
            (float(finite_number(entry.get("epoch")) or index), entry.get(key)) for index, entry in enumerate(epochs, 1)
        ]

    loss = line_chart(
        [("train loss", points("train_loss")), ("validation loss", points("val_loss"))],
        title="Loss per epoch (log loss)",
        x_label="epoch",
        y_label="loss",
    )
    accuracy = line_chart(
        [("validation accuracy", points("val_accuracy"))],
        title="Validation accuracy per epoch",
        x_label="epoch",
        y_label="accuracy",
        y_min=0.0,
        y_max=1.0,
    )
    return loss, accuracy


def split_sizes(label_counts: Mapping[str, Any]) -> dict[str, int]:
    return {split: sum(as_count(n) for n in as_dict(label_counts.get(split)).values()) for split in SPLITS}


def composition_table(label_counts: Mapping[str, Any], labels: Labels = NO_LABELS) -> dict[str, Any]:
    """Cases per label and split, with totals and each label's dictionary name, from a snapshot's
    ``label_counts``."""
    per_split = {split: as_dict(label_counts.get(split)) for split in SPLITS}
    codes = sorted({label for counts in per_split.values() for label in counts})
    rows: list[dict[str, Any]] = []
    for label in codes:
        counts = [as_count(per_split[split].get(label, 0)) for split in SPLITS]
        rows.append({"label": label, "name": labels.diagnosis_name(label), "counts": counts, "total": sum(counts)})
    totals = [sum(row["counts"][i] for row in rows) for i in range(len(SPLITS))]
    return {"splits": SPLITS, "rows": rows, "totals": totals, "total": sum(totals)}


def scan_summary(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """A residual-identifier scan report: kinds with counts, fields and case ids (never values)."""
    if not report:
        return None
    findings = [f for f in as_list(report.get("findings")) if isinstance(f, dict)]
    kinds: dict[str, dict[str, Any]] = {}
    for finding in findings:
        kind = kinds.setdefault(str(finding.get("kind", "?")), {"count": 0, "fields": set(), "case_ids": set()})
        kind["count"] += 1
        kind["fields"].add(str(finding.get("field", "?")))
        kind["case_ids"].add(finding.get("case_id"))
    by_kind = []
    for name, kind in sorted(kinds.items()):
        case_ids = sorted(kind["case_ids"], key=lambda value: (not isinstance(value, int), str(value)))
        by_kind.append(
            {
                "kind": name,
                "count": kind["count"],
                "fields": ", ".join(sorted(kind["fields"])),
                "case_ids": ", ".join(str(c) for c in case_ids[:MAX_CASE_IDS_LISTED]),
                "more_cases": max(0, len(case_ids) - MAX_CASE_IDS_LISTED),
            }
        )
    return {
        "clean": report.get("clean"),
        "cases_scanned": report.get("cases_scanned"),
        "strings_scanned": report.get("strings_scanned"),
        "findings_total": report.get("findings_total", len(findings)),
        "truncated": bool(report.get("findings_truncated")),
        "by_kind": by_kind,
        "findings": findings[:MAX_FINDINGS_LISTED],
        "more_findings": max(0, len(findings) - MAX_FINDINGS_LISTED),
    }


def algorithm_label(key: str) -> str:
    """``logistic_regression`` -> "Logistic regression" (an unknown key as it is)."""
    return str(dict(ModelType.Algorithm.choices).get(key, key))


class AlgorithmFilter(admin.SimpleListFilter):
    """Filter on a plain ``algorithm`` column by the algorithms' names, not their keys."""

    title = "algorithm"
    parameter_name = "algorithm"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(ModelType.Algorithm.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(algorithm=self.value()) if self.value() else queryset
