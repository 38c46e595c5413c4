"""The training job admin: the list with live counts, the job form, the live page with its curves and
evaluation, and the start, cancel and retry actions (confirmation page first)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline
from learning_engine.admin_helpers import (
    DeferredListAdminMixin,
    StateActionsMixin,
    confirm_and_apply,
)
from learning_engine.admin_links import RelatedLinksMixin
from learning_engine.display import (
    fmt_count,
)
from training.admin.common import LiveCreateAdminMixin, become, pk_or_404
from training.admin.display import (
    AlgorithmFilter,
    algorithm_label,
    as_dict,
    as_list,
    calibration_chart,
    confusion_table,
    headline_rows,
    history_charts,
    labels_under,
    metric_items,
    per_class_rows,
    subgroup_tables,
)
from training.admin.forms import CancelForm, JobCreateForm
from training.models import DatasetSnapshot, JobTransition, TrainingJob
from training.models.dataset import built_on_visible

ACTIVE_JOB_STATUSES = (TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING)


_BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


# Never read for a list: per-epoch history, evaluation and log grow with the job.
JOB_LIST_DEFERRED = ("history", "evaluation", "error_log", "metrics", "hyperparameters")


class JobTransitionInline(AuditTrailInline):
    model = JobTransition
    parent_view_permission = "training.view_trainingjob"


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


def _job_label(job: TrainingJob) -> str:
    """A job as the confirmation pages list it (the actions' querysets join the model type)."""
    return f"Job {job.pk} ({job.model_type.slug}, {job.algorithm}, {job.get_status_display().lower()})"


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
        loss_chart, accuracy_chart = history_charts(as_list(job.history))
        return {
            "job": job,
            "active": job.status in ACTIVE_JOB_STATUSES,
            "progress_bar": _progress_bar(job),
            "loss_chart": loss_chart,
            "accuracy_chart": accuracy_chart,
            "epochs_reported": len(as_list(job.history)),
            "latest_metrics": metric_items(as_dict(job.metrics)),
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
            evaluation = as_dict(obj.evaluation)
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
                    "bootstrap": as_dict(evaluation.get("bootstrap")),
                    "calibration_chart": calibration_chart(evaluation),
                }
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Creating --------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: TrainingJob, form: Any, change: bool) -> None:
        job = TrainingJob.submit(by=request_actor(request), **form.submission)
        become(obj, job)

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
            .filter(pk=pk_or_404(object_id))
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
