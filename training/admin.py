"""The admin of model types, dataset snapshots and training jobs.

Who sees what (``learning_engine.roles``): ML engineers view everything here, create datasets and
jobs, and start, cancel and retry jobs (``training.change_trainingjob``); clinical leads only view;
clinicians see no training at all (Django answers 403). Model types are edited by superusers only.

Nothing here writes a status or a worker field: datasets are immutable audit records (read-only,
never deleted), and a job changes only through its transitions, called from the actions
(``confirm_and_apply``: a confirmation page first, then one success and one "skipped" message).
Job pages are therefore view-only for everyone; acting on a job is a separate permission
(``has_operate_permission``), not "change".

Lists defer the large JSON columns (a dataset's manifest, a job's history and evaluation) and
join what they show, so a list of 200 rows costs the same queries as one of 5. Charts are inline
SVG drawn on the server (no CDN); a running job's page refreshes its progress and curves every two
seconds with a small same-origin script that fetches a fragment (``<id>/live/``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from cases.dictionary.labels import NO_LABELS, Labels, version_labels
from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline
from learning_engine.admin_helpers import (
    DeferredListAdminMixin,
    StateActionsMixin,
    bar_chart,
    confirm_and_apply,
)
from learning_engine.admin_links import RelatedLinksMixin
from learning_engine.charts import LineChart, line_chart
from learning_engine.display import (
    finite_number,
    fmt,
    fmt_bytes,
    fmt_count,
    fmt_percent,
    metric_name,
    metric_rows,
    metric_value,
)
from learning_engine.exceptions import DomainError, InvalidRequest
from learning_engine.forms import StrictJSONField
from learning_engine.roles import PERM_DOWNLOAD_DATASET
from training.algorithms import SPECS, validate_hyperparameters
from training.downloads import dataset_file_response
from training.models import DatasetSnapshot, DatasetTransition, JobTransition, ModelType, TrainingJob
from training.models.dataset import SPLITS, built_on_visible, date_range_errors, visible_to
from training.splitting import check_fractions
from training.tasks import enqueue_dataset_build

ACTIVE_JOB_STATUSES = (TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING)
REASON_MAX_LENGTH = 500
# Convenience fields of the job form that are hyperparameters of the epoch-based algorithms.
EPOCH_FIELDS = ("epochs", "batch_size", "learning_rate")
# How many findings of a scan report, and case ids per kind, a dataset page lists.
MAX_FINDINGS_LISTED = 100
MAX_CASE_IDS_LISTED = 50
MAX_ATTEMPTS_LIMIT = 20
_BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


# --- Presentation helpers (pure functions of stored JSON; every key may be missing) --------------


def _count(value: Any) -> int:
    number = finite_number(value)
    return int(number) if number is not None else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
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
    latency = _dict(evaluation.get("latency_ms"))
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
    bins = [row for row in _list(_dict(evaluation.get("calibration")).get("bins")) if isinstance(row, Mapping)]
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
    confusion = _dict(evaluation.get("confusion_matrix"))
    codes = [str(label) for label in _list(confusion.get("labels"))]
    matrix = _list(confusion.get("matrix"))
    if not codes or len(matrix) != len(codes):
        return None
    rows = []
    column_totals = [0] * len(codes)
    for i, (label, raw) in enumerate(zip(codes, matrix, strict=True)):
        counts = [_count(value) for value in _list(raw)][: len(codes)]
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
        for entry in _list(evaluation.get("per_class"))
        if isinstance(entry, dict)
    ]


def subgroup_tables(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table per subgroup field (sex, age band, ...), each row with its size."""
    tables = []
    for field_name, groups in _dict(evaluation.get("subgroups")).items():
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
            for group in _list(groups)
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
    return {split: sum(_count(n) for n in _dict(label_counts.get(split)).values()) for split in SPLITS}


def composition_table(label_counts: Mapping[str, Any], labels: Labels = NO_LABELS) -> dict[str, Any]:
    """Cases per label and split, with totals and each label's dictionary name, from a snapshot's
    ``label_counts``."""
    per_split = {split: _dict(label_counts.get(split)) for split in SPLITS}
    codes = sorted({label for counts in per_split.values() for label in counts})
    rows: list[dict[str, Any]] = []
    for label in codes:
        counts = [_count(per_split[split].get(label, 0)) for split in SPLITS]
        rows.append({"label": label, "name": labels.diagnosis_name(label), "counts": counts, "total": sum(counts)})
    totals = [sum(row["counts"][i] for row in rows) for i in range(len(SPLITS))]
    return {"splits": SPLITS, "rows": rows, "totals": totals, "total": sum(totals)}


def scan_summary(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """A residual-identifier scan report: kinds with counts, fields and case ids (never values)."""
    if not report:
        return None
    findings = [f for f in _list(report.get("findings")) if isinstance(f, dict)]
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


def _pretty_json(value: Any) -> str:
    return format_html('<pre class="training-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, default=str))


def _progress_bar(job: TrainingJob) -> str:
    percent = max(0.0, min(100.0, float(job.progress or 0.0)))
    return format_html(
        '<progress class="job-progress job-progress-{}" value="{}" max="100" title="{}">{}%</progress>'
        ' <span class="job-progress-text">{}%</span>',
        job.status,
        f"{percent:.1f}",
        job.stage or job.get_status_display(),
        f"{percent:.0f}",
        f"{percent:.0f}",
    )


def _stage_progress(snapshot: DatasetSnapshot) -> str:
    """Where a build is: its stage's done of total as a bar, or a count while the total is unknown."""
    if not snapshot.stage:
        return "waiting for a worker"
    done, total = snapshot.stage_done, snapshot.stage_total
    if not total:
        return f"{fmt_count(done)} so far" if done else "started"
    percent = max(0.0, min(100.0, 100.0 * done / total))
    return format_html(
        '<progress class="job-progress" value="{}" max="100">{}%</progress> '
        '<span class="job-progress-text">{} of {} ({})</span>',
        f"{percent:.1f}",
        f"{percent:.0f}",
        fmt_count(done),
        fmt_count(total),
        fmt_percent(percent / 100),
    )


def _job_label(job: TrainingJob) -> str:
    """A job as the confirmation pages list it (the actions' querysets join the model type)."""
    return f"Job {job.pk} ({job.model_type.slug}, {job.algorithm}, {job.get_status_display().lower()})"


# --- Model types ---------------------------------------------------------------------------------


class ModelTypeForm(forms.ModelForm):
    class Meta:
        model = ModelType
        fields = (
            "slug",
            "name",
            "description",
            "cohort",
            "label_field",
            "default_algorithm",
            "default_hyperparameters",
            "epoch_algorithm",
            "min_cases_to_train",
            "min_quality",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        algorithm = cleaned.get("default_algorithm")
        given = cleaned.get("default_hyperparameters")
        if algorithm and given is not None and "default_hyperparameters" not in self.errors:
            try:
                validate_hyperparameters(algorithm, given or {})
            except InvalidRequest as exc:
                self.add_error("default_hyperparameters", exc.message)
        return cleaned


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


# --- Audit inlines -------------------------------------------------------------------------------


# Whoever may view the parent may view its audit trail (``parent_view_permission``: the roles do
# not list the audit models of every table); the entries hold states, actors and de-identified
# reasons only.


class DatasetTransitionInline(AuditTrailInline):
    model = DatasetTransition
    parent_view_permission = "training.view_datasetsnapshot"


class JobTransitionInline(AuditTrailInline):
    model = JobTransition
    parent_view_permission = "training.view_trainingjob"


# --- Dataset snapshots ---------------------------------------------------------------------------

# Never read for a list: the manifest holds every case id, the scan report up to its limit of findings.
DATASET_LIST_DEFERRED = ("manifest", "scan_report")


class DatasetCreateForm(forms.ModelForm):
    """What ``training.datasets.create_snapshot`` takes; the build then runs in the background."""

    # Set by ``DatasetSnapshotAdmin.get_form`` to the user asking: the date range rule depends on
    # whether they may see PHI. Unset, the form judges as for a user without that permission.
    requesting_user: Any = None

    # Labels in the words of ``prepare_dataset``'s flags (--min-quality, --validation-fraction, ...).
    min_quality = forms.FloatField(
        label="Minimum quality",
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Minimum quality score of the cases (0 to 1). Empty: the model type's default.",
    )
    encounter_after = forms.DateField(
        required=False,
        help_text="Optional: only encounters on or after this date. Without the PHI permission: a 1 January.",
    )
    encounter_before = forms.DateField(
        required=False,
        help_text="Optional: only encounters on or before this date. Without the PHI permission: a 31 December.",
    )
    force = forms.BooleanField(
        label="Build another copy",
        required=False,
        help_text="Build even when a ready dataset of the model type already has this content "
        "(the same cases, labels and splits); else the form points to it.",
    )

    class Meta:
        model = DatasetSnapshot
        fields = ("model_type", "validation_fraction", "test_fraction", "seed")
        help_texts = {
            "validation_fraction": "Share of patients in the validation split (0 to below 1).",
            "test_fraction": "Share of patients in the test split (above 0, below 1).",
            "seed": "The same cases and seed give the same split and the same content hash.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        validation, test = cleaned.get("validation_fraction"), cleaned.get("test_fraction")
        if validation is not None and test is not None:
            try:
                check_fractions(validation, test)
            except ValueError as exc:
                # On a field, so the model's own range constraint is not reported a second time.
                message = str(exc)
                target = "validation_fraction" if message.startswith("The validation fraction") else "test_fraction"
                self.add_error(target, message)
        # The domain's rule (create_snapshot enforces it too), asked here so each error stands
        # beside its field: without the PHI permission a range covers whole years.
        after, before = cleaned.get("encounter_after"), cleaned.get("encounter_before")
        for field, errors in date_range_errors(after, before, by=self.requesting_user).items():
            for error in errors:
                self.add_error(field, error)
        if not self.errors and not cleaned.get("force") and cleaned.get("model_type") is not None:
            self._point_to_a_twin(cleaned)
        return cleaned

    def _point_to_a_twin(self, cleaned: dict[str, Any]) -> None:
        """A ready dataset with the content this one would have: named, linked, nothing built."""
        from training.datasets import ready_twin, snapshot_request  # pyarrow: see save_model

        try:
            request = snapshot_request(
                cleaned["model_type"],
                by=self.requesting_user,
                min_quality=cleaned.get("min_quality"),
                encounter_after=cleaned.get("encounter_after"),
                encounter_before=cleaned.get("encounter_before"),
                validation_fraction=cleaned["validation_fraction"],
                test_fraction=cleaned["test_fraction"],
                seed=cleaned["seed"],
            )
        except DomainError:
            return  # save_model's create_snapshot refuses it with the reason
        twin = ready_twin(request, by=self.requesting_user)
        if twin is not None:
            message = format_html(
                '<a href="{}">Dataset {}</a> is ready with this content ({} cases, content hash {}). '
                'Use it, or tick "Build another copy" to build a second one.',
                reverse("admin:training_datasetsnapshot_change", args=[twin.pk]),
                twin.pk,
                fmt_count(twin.case_count or 0),
                twin.content_hash[:12],
            )
            self.add_error("force", ValidationError(message, code="duplicate_dataset"))


class LiveCreateAdminMixin:
    """Admin pages whose objects are created by a model method and then change in the background.

    A ``DomainError`` raised by the creating method (what the form let through but the model
    refused) becomes an error message, never a 500; ``<id>/live/`` serves the fragment the page
    polls (``live_view``) while the object is still being worked on.
    """

    live_url_name: str

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        except DomainError as exc:
            # The atomic changeform view rolled back.
            self.message_user(request, f"Nothing was created: {exc.message}", messages.ERROR)  # type: ignore[attr-defined]
            return HttpResponseRedirect(request.path)

    def get_urls(self) -> list[URLPattern]:
        live = path(
            "<path:object_id>/live/",
            self.admin_site.admin_view(self.live_view),  # type: ignore[attr-defined]
            name=self.live_url_name,
        )
        return [live, *super().get_urls()]  # type: ignore[misc]  # before the catch-all "<path:object_id>/"


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(RelatedLinksMixin, DeferredListAdminMixin, LiveCreateAdminMixin, admin.ModelAdmin):
    list_deferred = DATASET_LIST_DEFERRED
    live_url_name = "training_datasetsnapshot_live"
    list_display = (
        "id",
        "model_type",
        "status",
        "cases",
        "patients",
        "train_cases",
        "validation_cases",
        "test_cases",
        "policy_version",
        "short_hash",
        "created_by",
        "created_at",
    )
    list_display_links = ("id",)
    list_filter = ("status", "model_type", "policy_version", ("created_by", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("model_type", "created_by")
    list_per_page = 100
    search_fields = ("=id", "^content_hash")
    search_help_text = "Dataset id or the start of its content hash."
    inlines = [DatasetTransitionInline]
    add_form = DatasetCreateForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Without the PHI permission, no snapshot over a range finer than whole years (visible_to).
        return visible_to(super().get_queryset(request), request.user)

    # What never changes once the snapshot exists; the rest (status, stage, counts, content, file,
    # error, composition, scan) is the live panel (live.html), polled while the snapshot builds.
    fieldsets_view = (
        (None, {"fields": ("id", "model_type", "dictionary", "created_by", "created_at")}),
        ("Build parameters", {"fields": ("filters_table", "seed", "validation_share", "test_share")}),
    )

    # --- Permissions: read-only audit records ----------------------------------------------------

    def has_change_permission(self, request: HttpRequest, obj: DatasetSnapshot | None = None) -> bool:
        return False  # immutable once ready; a building one belongs to its build

    def has_delete_permission(self, request: HttpRequest, obj: DatasetSnapshot | None = None) -> bool:
        return False  # jobs and model versions point at it; it is evidence of what was trained on

    # --- Lists -----------------------------------------------------------------------------------

    def _split_count(self, obj: DatasetSnapshot, split: str) -> str:
        if obj.status != DatasetSnapshot.Status.READY:
            return "—"
        return fmt_count(split_sizes(_dict(obj.label_counts))[split])

    @admin.display(description="cases", ordering="case_count")
    def cases(self, obj: DatasetSnapshot) -> str:
        return fmt_count(obj.case_count)

    @admin.display(description="patients", ordering="patient_count")
    def patients(self, obj: DatasetSnapshot) -> str:
        return fmt_count(obj.patient_count)

    @admin.display(description="validation share")
    def validation_share(self, obj: DatasetSnapshot) -> str:
        return fmt_percent(obj.validation_fraction)

    @admin.display(description="test share")
    def test_share(self, obj: DatasetSnapshot) -> str:
        return fmt_percent(obj.test_fraction)

    @admin.display(description="train")
    def train_cases(self, obj: DatasetSnapshot) -> str:
        return self._split_count(obj, "train")

    @admin.display(description="validation")
    def validation_cases(self, obj: DatasetSnapshot) -> str:
        return self._split_count(obj, "validation")

    @admin.display(description="test")
    def test_cases(self, obj: DatasetSnapshot) -> str:
        return self._split_count(obj, "test")

    @admin.display(description="hash", ordering="content_hash")
    def short_hash(self, obj: DatasetSnapshot) -> str:
        return (
            format_html('<code title="{}">{}</code>', obj.content_hash, obj.content_hash[:12])
            if obj.content_hash
            else "—"
        )

    # --- The page --------------------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: DatasetSnapshot | None = None) -> Any:
        if obj is None:
            return (
                (None, {"fields": ("model_type", "min_quality", "encounter_after", "encounter_before")}),
                ("Split", {"fields": ("validation_fraction", "test_fraction", "seed")}),
                (None, {"fields": ("force",)}),
            )
        return self.fieldsets_view

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            return type(form.__name__, (form,), {"requesting_user": request.user})
        return form

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return super().get_inline_instances(request, obj) if obj is not None else []

    @admin.display(description="cases per split")
    def cases_per_split(self, obj: DatasetSnapshot) -> str:
        if obj.status != DatasetSnapshot.Status.READY:
            return "—"
        sizes = split_sizes(_dict(obj.label_counts))
        return ", ".join(f"{split} {fmt_count(sizes[split])}" for split in SPLITS)

    @admin.display(description="filters used")
    def filters_table(self, obj: DatasetSnapshot) -> str:
        filters = _dict(obj.filters)
        if not filters:
            return "—"
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td>{}</td></tr>',
            ((key.replace("_", " "), "—" if value in (None, "") else value) for key, value in sorted(filters.items())),
        )
        return format_html('<table class="dataset-filters"><tbody>{}</tbody></table>', rows)

    @admin.display(description="file")
    def file_path(self, obj: DatasetSnapshot) -> str:
        return obj.file.name or "—"

    @admin.display(description="file size")
    def file_size_display(self, obj: DatasetSnapshot) -> str:
        return fmt_bytes(obj.file_size) if obj.file_size else "—"

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: DatasetSnapshot | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(self.live_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def live_context(self, request: HttpRequest, obj: DatasetSnapshot) -> dict[str, Any]:
        """Everything on a snapshot's page that changes while it builds: its page and ``live_view``
        render it with the same template, so the page never shows half an update."""
        building = obj.status == DatasetSnapshot.Status.BUILDING
        ready = obj.status == DatasetSnapshot.Status.READY
        composition = composition_table(_dict(obj.label_counts), labels_under(obj.dictionary_id, obj.model_type))
        return {
            "original": obj,
            "building": building,
            "ready": ready,
            "stage_progress": _stage_progress(obj) if building else "",
            "case_count": fmt_count(obj.case_count) if ready else "—",
            "patient_count": fmt_count(obj.patient_count) if ready else "—",
            "cases_per_split": self.cases_per_split(obj),
            "file_size": self.file_size_display(obj),
            "composition": composition,
            "split_charts": [
                bar_chart(
                    [(row["label"], row["counts"][index]) for row in composition["rows"]],
                    hints={row["label"]: row["name"] for row in composition["rows"]},
                    title=f"{split}: cases per label",
                    width=320,
                    height=220,
                    value_label="cases",
                )
                for index, split in enumerate(SPLITS)
            ]
            if composition["rows"]
            else [],
            # The manifest can hold 100,000 ids: the page shows how many per split, not which.
            "manifest_sizes": [(split, len(_list(_dict(obj.manifest).get(split)))) for split in SPLITS],
            "scan": scan_summary(_dict(obj.scan_report)),
            "live_url": reverse("admin:training_datasetsnapshot_live", args=[obj.pk]),
            **self._workflow_links(request, obj),
        }

    def _workflow_links(self, request: HttpRequest, obj: DatasetSnapshot) -> dict[str, str]:
        """Where to go from a ready snapshot: its file, and a new job on it (each with its permission)."""
        if obj.status != DatasetSnapshot.Status.READY:
            return {}
        links = {}
        if self.has_download_permission(request):
            links["download_url"] = reverse("admin:training_datasetsnapshot_download", args=[obj.pk])
        if request.user.has_perm("training.add_trainingjob"):
            query = urlencode({"model_type": obj.model_type_id, "dataset": obj.pk})
            links["train_url"] = f"{reverse('admin:training_trainingjob_add')}?{query}"
        return links

    # --- Creating --------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: DatasetSnapshot, form: Any, change: bool) -> None:
        # Imported here: the builder pulls in pyarrow, which every process would otherwise load
        # when the admin is discovered at startup.
        from training.datasets import create_snapshot

        data = form.cleaned_data
        snapshot = create_snapshot(
            data["model_type"],
            by=request_actor(request),
            min_quality=data.get("min_quality"),
            encounter_after=data.get("encounter_after"),
            encounter_before=data.get("encounter_before"),
            validation_fraction=data["validation_fraction"],
            test_fraction=data["test_fraction"],
            seed=data["seed"],
        )
        enqueue_dataset_build(snapshot.pk)  # on commit
        _become(obj, snapshot)

    def response_add(self, request: HttpRequest, obj: DatasetSnapshot, post_url_continue: str | None = None) -> Any:
        if "_addanother" in request.POST or admin.options.IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request,
            f"Dataset {obj.pk} is building in the background; this page shows when it is ready.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:training_datasetsnapshot_change", args=[obj.pk]))

    # --- Download (the API's permission, checks and access log) ------------------------------

    def get_urls(self) -> list[URLPattern]:
        download = path(
            "<path:object_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="training_datasetsnapshot_download",
        )
        return [download, *super().get_urls()]  # before the catch-all "<path:object_id>/"

    def has_download_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_DOWNLOAD_DATASET)

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        from cases.access_log import AccessLogEntry

        if not self.has_download_permission(request):
            raise PermissionDenied
        snapshot = self.get_queryset(request).filter(pk=_pk(object_id)).first()
        if snapshot is None:
            raise Http404
        try:
            return dataset_file_response(
                snapshot, by=request_actor(request), request=request, channel=AccessLogEntry.Channel.ADMIN
            )
        except DomainError as exc:
            self.message_user(request, f"Nothing to download: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:training_datasetsnapshot_change", args=[snapshot.pk]))

    # --- Live status while building: LiveCreateAdminMixin ---------------------------------------

    def live_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        # The manifest is empty while building; once the build ends this answer is the final state.
        obj = self.get_queryset(request).select_related("model_type").filter(pk=_pk(object_id)).first()
        if obj is None:
            raise Http404
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        context = {**self.live_context(request, obj), "from_live": True}
        return TemplateResponse(request, "admin/training/datasetsnapshot/live.html", context)


# --- Training jobs -------------------------------------------------------------------------------

# Never read for a list: per-epoch history, evaluation and log grow with the job.
JOB_LIST_DEFERRED = ("history", "evaluation", "error_log", "metrics", "hyperparameters")


class DatasetChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        digest = obj.content_hash[:12] if obj.content_hash else "no hash"
        return f"Dataset {obj.pk}: {obj.model_type.slug}, {fmt_count(obj.case_count)} cases, {digest}"


class JobCreateForm(forms.ModelForm):
    """What ``TrainingJob.submit`` takes. Errors show on the form; the job is created by ``submit``."""

    algorithm = forms.ChoiceField(
        required=False,
        choices=[("", "Default of the model type"), *ModelType.Algorithm.choices],
        help_text="Empty: the model type's default; its epoch-based algorithm if epochs or batch size are given.",
    )
    epochs = forms.IntegerField(required=False, min_value=1, help_text="SGD and MLP only.")
    batch_size = forms.IntegerField(required=False, min_value=1, help_text="SGD and MLP only.")
    learning_rate = forms.FloatField(required=False, min_value=0.0, help_text="Optional.")
    hyperparameters = StrictJSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='Optional JSON object, e.g. {"alpha": 0.0001}. Known names per algorithm: '
        + "; ".join(f"{name}: {', '.join(spec)}" for name, spec in SPECS.items())
        + ".",
    )
    dataset = DatasetChoiceField(
        required=False,
        queryset=DatasetSnapshot.objects.none(),
        help_text="A ready snapshot of the same model type. Empty: the job prepares a fresh one first.",
    )
    priority = forms.IntegerField(initial=0, min_value=-100, max_value=100, help_text="-100 (last) to 100 (first).")
    max_attempts = forms.IntegerField(initial=3, min_value=1, max_value=MAX_ATTEMPTS_LIMIT)

    class Meta:
        model = TrainingJob
        fields = ("model_type", "algorithm", "hyperparameters", "dataset", "priority", "max_attempts")

    # The requesting user (set by ``TrainingJobAdmin.get_form``): the snapshots offered are those
    # they may see (``visible_to``); without a user, those anyone may see.
    user: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submission: dict[str, Any] = {}
        ready = DatasetSnapshot.objects.filter(status=DatasetSnapshot.Status.READY)
        self.fields["dataset"].queryset = (  # type: ignore[attr-defined]
            visible_to(ready, self.user)
            .select_related("model_type")
            .defer("manifest", "scan_report", "label_counts", "filters")
            .order_by("-created_at", "-id")
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        given = cleaned.get("hyperparameters")
        if given in (None, ""):
            given = {}
        if not isinstance(given, dict):
            self.add_error("hyperparameters", 'Must be a JSON object, such as {"alpha": 0.0001}.')
            return cleaned
        given = dict(given)
        for name in EPOCH_FIELDS:
            value = cleaned.get(name)
            if value is None:
                continue
            if name in given and given[name] != value:
                self.add_error(name, f"The hyperparameters also give {name} = {given[name]!r}; give it once.")
            given[name] = value
        model_type = cleaned.get("model_type")
        dataset = cleaned.get("dataset")
        if model_type is None or self.errors:
            return cleaned
        if dataset is not None and dataset.model_type_id != model_type.pk:
            self.add_error(
                "dataset", f"Dataset {dataset.pk} belongs to {dataset.model_type.slug}, not {model_type.slug}."
            )
            return cleaned
        algorithm = cleaned.get("algorithm") or None
        # The same checks TrainingJob.submit makes, here so that they show on the form.
        resolved = model_type.resolve_algorithm(algorithm, given)
        defaults = model_type.default_hyperparameters if resolved == model_type.default_algorithm else {}
        try:
            validate_hyperparameters(resolved, {**defaults, **given})
        except InvalidRequest as exc:
            field = exc.extra.get("field")
            target = field if field in EPOCH_FIELDS and cleaned.get(field) is not None else "hyperparameters"
            self.add_error(target, exc.message)
            return cleaned
        self.submission = {
            "model_type": model_type,
            "dataset": dataset,
            "algorithm": algorithm,
            "hyperparameters": given,
            "priority": cleaned["priority"],
            "max_attempts": cleaned["max_attempts"],
        }
        return cleaned


class CancelForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why the jobs are cancelled. Kept in each job's audit trail.",
    )


@admin.register(TrainingJob)
class TrainingJobAdmin(
    StateActionsMixin, RelatedLinksMixin, DeferredListAdminMixin, LiveCreateAdminMixin, admin.ModelAdmin
):
    list_deferred = JOB_LIST_DEFERRED
    live_url_name = "training_trainingjob_live"
    list_display = (
        "id",
        "model_type",
        "status_badge",
        "progress_bar",
        "stage",
        "algorithm_name",
        "priority",
        "attempts_display",
        "executor",
        "created_by",
        "created_at",
    )
    list_display_links = ("id",)
    list_filter = ("status", "model_type", AlgorithmFilter, "executor")
    list_select_related = ("model_type", "created_by")
    list_per_page = 100
    search_fields = ("=id",)
    search_help_text = "Job id."
    actions = ["start_selected", "cancel_selected", "retry_selected"]
    inlines = [JobTransitionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Built on a snapshot hidden from the user (built_on_visible): its counts would show; not listed.
        return built_on_visible(super().get_queryset(request), request.user)

    add_form = JobCreateForm
    fieldsets_view = (
        (
            None,
            {
                "fields": (
                    "id",
                    "model_type",
                    "dataset_link",
                    "algorithm_name",
                    "hyperparameters_display",
                    "priority",
                    "executor",
                    "created_by",
                    "created_at",
                )
            },
        ),
        # Status, stage, progress, attempts, times, heartbeat and worker are in the live panel above
        # the fields: it refreshes together while the job runs; these fields do not change then.
        ("Task", {"classes": ("collapse",), "fields": ("task_id",)}),
        ("Artifact", {"classes": ("collapse",), "fields": ("artifact", "artifact_format", "artifact_sha256")}),
    )

    # --- Permissions -----------------------------------------------------------------------------

    def has_change_permission(self, request: HttpRequest, obj: TrainingJob | None = None) -> bool:
        return False  # job pages are view-only: a job changes through its transitions (the actions)

    def has_delete_permission(self, request: HttpRequest, obj: TrainingJob | None = None) -> bool:
        return False  # a job is the record of how a model version was made

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Start, cancel and retry: what ``training.change_trainingjob`` grants (ML engineers)."""
        return request.user.has_perm("training.change_trainingjob")

    # --- Lists -----------------------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: TrainingJob) -> str:
        return format_html('<span class="job-status job-status-{}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, obj: TrainingJob) -> str:
        return _progress_bar(obj)

    @admin.display(description="algorithm", ordering="algorithm")
    def algorithm_name(self, obj: TrainingJob) -> str:
        return algorithm_label(obj.algorithm)

    @admin.display(description="attempts")
    def attempts_display(self, obj: TrainingJob) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        if self.has_view_or_change_permission(request):
            # One grouped count for the line above the list: how busy the workers are right now.
            counts = dict(
                TrainingJob.objects.filter(status__in=ACTIVE_JOB_STATUSES)
                .values("status")
                .annotate(n=Count("id"))
                .values_list("status", "n")
            )
            context["running_count"] = counts.get(TrainingJob.Status.RUNNING, 0)
            context["queued_count"] = counts.get(TrainingJob.Status.QUEUED, 0)
        return super().changelist_view(request, context)

    # --- The page --------------------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: TrainingJob | None = None) -> Any:
        if obj is None:
            return (
                (None, {"fields": ("model_type", "dataset", "priority", "max_attempts")}),
                (
                    "Algorithm",
                    {
                        "fields": ("algorithm", "epochs", "batch_size", "learning_rate", "hyperparameters"),
                        "description": "Missing hyperparameters take the algorithm's defaults.",
                    },
                ),
            )
        return self.fieldsets_view

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = type(self.add_form.__name__, (self.add_form,), {"user": request.user})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return super().get_inline_instances(request, obj) if obj is not None else []

    @admin.display(description="dataset")
    def dataset_link(self, obj: TrainingJob) -> str:
        if obj.dataset_id is None:
            return "— (the job prepares a fresh snapshot first)"
        dataset = (
            DatasetSnapshot.objects.filter(pk=obj.dataset_id).only("id", "status", "case_count", "content_hash").first()
        )
        if dataset is None:
            return str(obj.dataset_id)
        url = reverse("admin:training_datasetsnapshot_change", args=[dataset.pk])
        digest = dataset.content_hash[:12] if dataset.content_hash else "no hash yet"
        return format_html(
            '<a href="{}">Dataset {}</a> ({}, {} cases, {})',
            url,
            dataset.pk,
            dataset.status,
            fmt_count(dataset.case_count),
            digest,
        )

    @admin.display(description="hyperparameters")
    def hyperparameters_display(self, obj: TrainingJob) -> str:
        return _pretty_json(obj.hyperparameters)

    def live_context(self, job: TrainingJob) -> dict[str, Any]:
        loss_chart, accuracy_chart = history_charts(_list(job.history))
        return {
            "job": job,
            "active": job.status in ACTIVE_JOB_STATUSES,
            "progress_bar": _progress_bar(job),
            "loss_chart": loss_chart,
            "accuracy_chart": accuracy_chart,
            "epochs_reported": len(_list(job.history)),
            "latest_metrics": metric_items(_dict(job.metrics)),
        }

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: TrainingJob | None = None,
    ) -> HttpResponse:
        if obj is not None:
            evaluation = _dict(obj.evaluation)
            dictionary_id = (
                DatasetSnapshot.objects.filter(pk=obj.dataset_id).values_list("dictionary_id", flat=True).first()
                if obj.dataset_id is not None
                else None
            )
            labels = labels_under(dictionary_id, obj.model_type)
            context.update(
                {
                    # The heading without the status, which the live panel keeps current beside it.
                    "subtitle": f"Job {obj.pk}: {obj.model_type.slug}, {algorithm_label(obj.algorithm)}",
                    **self.live_context(obj),
                    "live_url": reverse("admin:training_trainingjob_live", args=[obj.pk]),
                    "headline": headline_rows(evaluation),
                    "confusion": confusion_table(evaluation, labels),
                    "per_class": per_class_rows(evaluation, labels),
                    "subgroups": subgroup_tables(evaluation),
                    "bootstrap": _dict(evaluation.get("bootstrap")),
                    "calibration_chart": calibration_chart(evaluation),
                }
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Creating --------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: TrainingJob, form: Any, change: bool) -> None:
        job = TrainingJob.submit(by=request_actor(request), **form.submission)
        _become(obj, job)

    def response_add(self, request: HttpRequest, obj: TrainingJob, post_url_continue: str | None = None) -> Any:
        if "_addanother" in request.POST or admin.options.IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(request, f"Job {obj.pk} is queued ({obj.algorithm}).", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:training_trainingjob_change", args=[obj.pk]))

    # --- Live progress: LiveCreateAdminMixin ---------------------------------------------------------

    def live_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """The progress, stage, latest metrics and curves of a job: what the page polls while it runs."""
        job = (
            self.get_queryset(request)
            .select_related("model_type")
            .defer("evaluation", "error_log")
            .filter(pk=_pk(object_id))
            .first()
        )
        if job is None:
            raise Http404
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return TemplateResponse(request, "admin/training/trainingjob/live.html", self.live_context(job))

    # --- Actions ---------------------------------------------------------------------------------

    def action_unavailable(self, request: HttpRequest, obj: TrainingJob, name: str) -> str | None:
        return _job_unavailable(obj, name)

    @admin.action(
        description="Start this job",
        description_plural="Start selected jobs",
        permissions=["operate"],
        location=_BOTH_LOCATIONS,
    )
    def start_selected(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.select_related("model_type"),
            title="Start jobs",
            done="Enqueued",
            question=(
                "Put these queued jobs on the worker queue again? Use this for a job whose task was lost. "
                "A job is still run only once; jobs of external trainers start through the API."
            ),
            confirm_label="Start",
            apply=lambda job, data: job.enqueue_again(),
            describe=_job_label,
            unavailable=lambda job: _job_unavailable(job, "start_selected"),
        )

    @admin.action(
        description="Cancel this job",
        description_plural="Cancel selected jobs",
        permissions=["operate"],
        location=_BOTH_LOCATIONS,
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.select_related("model_type"),
            title="Cancel jobs",
            done="Cancelled",
            form_class=CancelForm,
            question="Cancel these jobs? A queued job never runs; a running job stops at its next epoch or stage.",
            confirm_label="Cancel jobs",
            apply=lambda job, data: job.cancel(by=request.user, reason=data["reason"]),
            describe=_job_label,
            unavailable=lambda job: _job_unavailable(job, "cancel_selected"),
        )

    @admin.action(
        description="Retry this job",
        description_plural="Retry selected jobs",
        permissions=["operate"],
        location=_BOTH_LOCATIONS,
    )
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.select_related("model_type"),
            title="Retry jobs",
            done="Requeued",
            question="Queue these failed jobs again? Each retry counts against the job's maximum attempts.",
            confirm_label="Retry",
            apply=lambda job, data: job.retry(by=request.user),
            describe=_job_label,
            unavailable=lambda job: _job_unavailable(job, "retry_selected"),
        )


def _job_unavailable(job: TrainingJob, action: str) -> str | None:
    """Why a job action does not apply to the job's state (None when it does)."""
    status = job.get_status_display().lower()
    if action == "start_selected":
        if job.status != TrainingJob.Status.QUEUED:
            return f"it is {status}"
        if job.executor != TrainingJob.Executor.WORKER:
            return "an external trainer starts it through the API"
    elif action == "cancel_selected":
        if not job.can_cancel():
            return f"it is {status}"
    elif action == "retry_selected" and not job.can_retry():
        if job.status != TrainingJob.Status.FAILED:
            return f"it is {status}, not failed"
        return f"it has used all {job.max_attempts} attempts"
    return None


# --- Shared --------------------------------------------------------------------------------------


def _pk(object_id: str) -> int:
    try:
        return int(unquote(object_id))
    except ValueError:
        raise Http404 from None


def _become(obj: Any, created: Any) -> None:
    """Make the admin's unsaved ``obj`` the row a model method created (messages, log, redirect)."""
    for field in type(created)._meta.concrete_fields:
        setattr(obj, field.attname, getattr(created, field.attname))
    obj._state.adding = False
    obj._state.db = created._state.db
