"""The dataset snapshot admin: read-only audit records, created by ``create_snapshot`` and built in
the background; a page that follows the build live, the composition and the residual scan."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline
from learning_engine.admin_helpers import (
    DeferredListAdminMixin,
    bar_chart,
)
from learning_engine.admin_links import RelatedLinksMixin
from learning_engine.display import (
    fmt_bytes,
    fmt_count,
    fmt_percent,
)
from learning_engine.exceptions import DomainError
from learning_engine.roles import PERM_DOWNLOAD_DATASET
from training.admin.common import LiveCreateAdminMixin, become, pk_or_404
from training.admin.display import as_dict, as_list, composition_table, labels_under, scan_summary, split_sizes
from training.admin.forms import DatasetCreateForm
from training.downloads import dataset_file_response
from training.models import DatasetSnapshot, DatasetTransition
from training.models.dataset import SPLITS, visible_to
from training.tasks import enqueue_dataset_build

# Never read for a list: the manifest holds every case id, the scan report up to its limit of findings.
DATASET_LIST_DEFERRED = ("manifest", "scan_report")


# Whoever may view the parent may view its audit trail (``parent_view_permission``: the roles do
# not list the audit models of every table); the entries hold states, actors and de-identified
# reasons only.


class DatasetTransitionInline(AuditTrailInline):
    model = DatasetTransition
    parent_view_permission = "training.view_datasetsnapshot"


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
        return fmt_count(split_sizes(as_dict(obj.label_counts))[split])

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
        sizes = split_sizes(as_dict(obj.label_counts))
        return ", ".join(f"{split} {fmt_count(sizes[split])}" for split in SPLITS)

    @admin.display(description="filters used")
    def filters_table(self, obj: DatasetSnapshot) -> str:
        filters = as_dict(obj.filters)
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
        composition = composition_table(as_dict(obj.label_counts), labels_under(obj.dictionary_id, obj.model_type))
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
            "manifest_sizes": [(split, len(as_list(as_dict(obj.manifest).get(split)))) for split in SPLITS],
            "scan": scan_summary(as_dict(obj.scan_report)),
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
        become(obj, snapshot)

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
        snapshot = self.get_queryset(request).filter(pk=pk_or_404(object_id)).first()
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
        obj = self.get_queryset(request).select_related("model_type").filter(pk=pk_or_404(object_id)).first()
        if obj is None:
            raise Http404
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        context = {**self.live_context(request, obj), "from_live": True}
        return TemplateResponse(request, "admin/training/datasetsnapshot/live.html", context)
