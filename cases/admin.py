"""The case admin: review workflow, PHI-aware pages, and the statistics page.

What a user sees depends on ``cases.view_phi``. Without it (ML engineers, clinical leads) the raw
record (patient block, encounter date, raw note, raw label, unknown keys, external id) and
clinicians' free-text notes are left out of every page entirely, not collapsed or hidden in
HTML, and searching or filtering on those fields is refused, so a changelist count cannot be used
as an oracle for a patient's name either. Editing needs the PHI permission too: nobody edits what
they cannot see.

Workflow fields (status, reviewer, scores, the de-identified record) are never form fields: the
only writers are the model's transitions, called from the actions and from ``save_model``.

Every page that shows a PHI user raw case data (the change list with its external ids, a case's
page) and every add or edit writes an entry of the PHI access log (``cases.access_log``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from cases import case_page
from cases.access_log import AccessLogEntry, record_access
from cases.case_form import SLUG, CaseAdminForm, CohortChoiceForm, case_form_class, published_cohorts
from cases.deid import records
from cases.dictionary.checking import current_dictionary
from cases.dictionary.labels import definition_of, request_labels
from cases.models import CONTENT_FIELDS, Case, CaseTransition, Cohort
from cases.statistics import MIN_CASES_FOR_MEAN, compute_statistics
from cases.views import DEIDENTIFIED_STATES
from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline
from learning_engine.admin_helpers import DeferredListAdminMixin, StateActionsMixin, bar_chart, confirm_and_apply
from learning_engine.admin_links import RelatedLinksMixin, display_name
from learning_engine.exceptions import DomainError
from learning_engine.permissions import can_view_phi
from learning_engine.roles import PERM_REVIEW_CASE, PERM_VIEW_STATISTICS

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec

# Lookup roots (the first part of a changelist query parameter) that hold no PHI. Without the PHI
# permission only these may be filtered on; everything else (note__icontains=..., patient__name=...)
# is refused with a 400, because even a result count reveals whether a value is there.
NON_PHI_LOOKUP_ROOTS = frozenset(
    {
        "id",
        "pk",
        "source",
        "cohort",
        "status",
        "diagnosis_code",
        "rejection_reason",
        "quality_score",
        "submitted_by",
        "reviewed_by",
        "reviewed_at",
        "created_at",
        "updated_at",
        "patient_pseudonym",
        "deid_policy_version",
    }
)
NOTE_MAX_LENGTH = 2000
# Columns the changelist never shows. Deferred there: a page of 100 cases should not read 100 notes,
# and raw PHI then never even leaves the database for a list.
# The raw record, the folded identifiers (PHI) and the large derived columns stay in the database.
LIST_DEFERRED = (
    "patient",
    "findings",
    "symptoms",
    "note",
    "extra",
    "deidentified",
    "quality_issues",
    "residual_keys",
    "deid_dataset_row",
)


def _pretty_json(value: Any) -> str:
    return format_html('<pre class="case-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False, default=str))


# --- Filters -------------------------------------------------------------------------------------


class DictionaryCheckFilter(admin.SimpleListFilter):
    """Cases by their data dictionary check: the ones the migration flagged are there to review."""

    title = "dictionary check"
    parameter_name = "dictionary_check"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("failed", "Failed: flagged for review"), ("passed", "Passed"), ("unchecked", "Not checked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Case]) -> QuerySet[Case]:
        value = self.value()
        if value == "failed":
            return queryset.exclude(dictionary_errors=[])
        if value == "passed":
            return queryset.filter(dictionary__isnull=False)
        if value == "unchecked":
            return queryset.filter(dictionary__isnull=True, dictionary_errors=[])
        return queryset


class DiagnosisCodeFilter(admin.AllValuesFieldListFilter):
    """The codes on file, each with its dictionary name ("C50.9 Malignant neoplasm of breast ...");
    a code no dictionary names shows alone. Django's own filter otherwise (parameters, facets)."""

    def __init__(self, field: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().__init__(field, request, *args, **kwargs)
        self.labels = request_labels(request).merged

    def choices(self, changelist: Any) -> Any:
        choices = super().choices(changelist)
        yield next(choices)  # "All"
        # The rest follow ``lookup_choices`` in order, the empty value (None) last when there is one.
        values = [str(value) for value in self.lookup_choices if value is not None]
        for index, choice in enumerate(choices):
            value = values[index] if index < len(values) else ""
            name = self.labels.diagnosis_name(value) if value else ""
            if name and choice["display"].startswith(value):
                choice = {**choice, "display": f"{value} {name}{choice['display'][len(value) :]}"}
            yield choice


class QualityRangeFilter(admin.SimpleListFilter):
    title = "quality score"
    parameter_name = "quality"
    RANGES: dict[str, tuple[str, Q]] = {
        "poor": ("below 0.5", Q(quality_score__lt=0.5)),
        "fair": ("0.5 to below 0.8", Q(quality_score__gte=0.5, quality_score__lt=0.8)),
        "good": ("0.8 to below 1.0", Q(quality_score__gte=0.8, quality_score__lt=1.0)),
        "complete": ("1.0 (no issues)", Q(quality_score__gte=1.0)),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _q) in self.RANGES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Case]) -> QuerySet[Case]:
        entry = self.RANGES.get(self.value() or "")
        return queryset.filter(entry[1]) if entry else queryset


# --- Action forms --------------------------------------------------------------------------------


class ApproveForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional. Kept with the review and in the audit trail.",
    )


class RejectForm(forms.Form):
    reason = forms.ChoiceField(choices=[("", "---------"), *Case.RejectionReason.choices])
    note = forms.CharField(
        max_length=NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="What the submitter should fix. Kept with the review and in the audit trail.",
    )


class RetractForm(forms.Form):
    reason = forms.CharField(
        max_length=NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why the case must leave future datasets. Kept in the audit trail.",
    )


# --- Inline audit trail --------------------------------------------------------------------------


class CaseTransitionInline(AuditTrailInline):
    """The audit trail: read-only, append-only (no add, change or delete here either)."""

    model = CaseTransition

    def _fields(self, request: HttpRequest) -> tuple[str, ...]:
        fields: tuple[str, ...] = ("created_at", "actor", "from_state", "to_state")
        # A transition's reason is a clinician's free text (the review note); it is not scrubbed.
        if can_view_phi(request.user):
            fields += ("reason",)
        return fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self._fields(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self._fields(request)


def _case_unavailable(case: Case, action: str, user: Any) -> str | None:
    """Why a review action does not apply to the case (None when it does)."""
    if action == "retract_selected":
        return None if case.status == Case.Status.APPROVED else "it is not approved"
    if case.status != Case.Status.SUBMITTED:
        return f"it is {case.get_status_display().lower()}"
    if not case.can_review(user):
        return "you submitted or last edited it; another clinician must review it (four-eyes rule)"
    return None


# --- The case admin ------------------------------------------------------------------------------

_BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


@admin.register(Case)
class CaseAdmin(StateActionsMixin, RelatedLinksMixin, DeferredListAdminMixin, admin.ModelAdmin):
    list_deferred = LIST_DEFERRED
    form = CaseAdminForm
    list_display_links = ("id",)
    list_filter = (
        "status",
        "cohort",
        ("diagnosis_code", DiagnosisCodeFilter),
        "rejection_reason",
        QualityRangeFilter,
        DictionaryCheckFilter,
    )
    list_select_related = ("submitted_by", "reviewed_by")
    list_per_page = 100
    search_help_text = "Diagnosis code or pseudonym; with PHI access also external id or MRN."
    actions = ["approve_selected", "reject_selected", "retract_selected"]
    inlines = [CaseTransitionInline]

    # --- Lists -----------------------------------------------------------------------------------

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        identity = ("id", "external_id") if can_view_phi(request.user) else ("id",)
        # Narrow enough for a 1,400 px window with the navigation and filters open: source and
        # cohort share a column, so do the submitter and the reviewer; the date is a date.
        return (*identity, "source_cohort", "status", "diagnosis", "quality", "people", "created")

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        fields = ["^diagnosis_code", "=patient_pseudonym"]
        if can_view_phi(request.user):
            fields += ["external_id", "=patient__mrn"]
        return fields

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if not can_view_phi(request.user):
            root = lookup.split("__", 1)[0]
            simple_filters = {
                getattr(f, "parameter_name", None) for f in self.get_list_filter(request) if isinstance(f, type)
            }
            if root not in NON_PHI_LOOKUP_ROOTS and lookup not in simple_filters:
                return False
        return super().lookup_allowed(lookup, value, request)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        if "cl" in context and can_view_phi(request.user):
            self._log(request, AccessLogEntry.Action.LIST, [case.pk for case in context["cl"].result_list])
        return response

    @staticmethod
    def _log(request: HttpRequest, action: str, case_ids: list[int], fields: tuple[str, ...] = ()) -> None:
        record_access(
            action=action,
            case_ids=case_ids,
            actor=request.user,
            request=request,
            channel=AccessLogEntry.Channel.ADMIN,
            fields=fields,
        )

    @admin.display(description="quality", ordering="quality_score")
    def quality(self, obj: Case) -> str:
        return f"{obj.quality_score:.2f}"

    @admin.display(description="source / cohort", ordering="source")
    def source_cohort(self, obj: Case) -> str:
        return format_html("{}<br><span class='quiet'>{}</span>", obj.source, obj.cohort)

    @admin.display(description="diagnosis", ordering="diagnosis_code")
    def diagnosis(self, obj: Case) -> str:
        # The name is the cohort's dictionary's, set on the page's rows by ``get_changelist_instance``.
        name = getattr(obj, "diagnosis_name", "")
        if not name:
            return obj.diagnosis_code or "—"
        return format_html("{}<br><span class='quiet'>{}</span>", obj.diagnosis_code, name)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        labels = request_labels(request)  # one read for the whole page, whatever its rows
        for case in changelist.result_list:
            case.diagnosis_name = labels.diagnosis_name(case.diagnosis_code, case.cohort)
        return changelist

    @admin.display(description="submitter / reviewer", ordering="submitted_by__username")
    def people(self, obj: Case) -> str:
        reviewer = display_name(obj.reviewed_by) if obj.reviewed_by_id else "—"
        return format_html("{}<br><span class='quiet'>{}</span>", display_name(obj.submitted_by), reviewer)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Case) -> str:
        moment = localtime(obj.created_at)
        return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), moment, moment.date())

    # --- Permissions -----------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Case]:
        queryset = super().get_queryset(request)
        if not can_view_phi(request.user):
            # The API's rule: without PHI access only cases with a de-identified record exist (a
            # submitted or rejected case is "not found" in lists, pages, history and actions alike).
            queryset = queryset.filter(status__in=DEIDENTIFIED_STATES)
        return queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and can_view_phi(request.user)

    def _may_edit_content(self, request: HttpRequest, obj: Case | None = None) -> bool:
        return super().has_change_permission(request, obj) and can_view_phi(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Case | None = None) -> bool:
        # An approved or retracted case is frozen: its page becomes read-only.
        return self._may_edit_content(request, obj) and (obj is None or obj.can_edit())

    def has_delete_permission(self, request: HttpRequest, obj: Case | None = None) -> bool:
        return False  # cases are evidence in the audit trail; retract instead

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_REVIEW_CASE)

    # --- Change view -----------------------------------------------------------------------------

    def get_inlines(self, request: HttpRequest, obj: Case | None) -> list[type[admin.options.InlineModelAdmin]]:
        return [CaseTransitionInline] if obj is not None else []

    def _may_enter(self, request: HttpRequest, obj: Case | None) -> bool:
        """Whether this request gets the case form: an add, or an edit the user may make."""
        return self.has_add_permission(request) if obj is None else self.has_change_permission(request, obj)

    @staticmethod
    def _requested_cohort(request: HttpRequest) -> str | None:
        """``?cohort=<slug>``: the cohort the form is for; anything but a slug is no cohort."""
        slug = request.GET.get("cohort")
        return slug if slug is not None and SLUG.fullmatch(slug) else None

    def _form_class(self, request: HttpRequest, obj: Case | None) -> type[CaseAdminForm]:
        """The form generated from the dictionary of ``?cohort=`` or else the case's cohort (its
        current version), built once per request (the fieldsets, the form and the readonly fields
        all ask). The admin instance is shared by every request, so the request carries it."""
        built: dict[Any, type[CaseAdminForm]] = request.__dict__.setdefault("_case_form_classes", {})
        key = obj.pk if obj is not None else None
        if key not in built:
            slug = self._requested_cohort(request) if "cohort" in request.GET else (obj.cohort if obj else None)
            built[key] = case_form_class(current_dictionary(slug) if slug else None, case=obj)
        return built[key]

    def get_form(self, request: HttpRequest, obj: Case | None = None, change: bool = False, **kwargs: Any) -> Any:
        if self._may_enter(request, obj):
            return self._form_class(request, obj)
        return super().get_form(request, obj, change=change, **kwargs)

    def _editable_fields(self, request: HttpRequest, obj: Case | None) -> tuple[str, ...]:
        return tuple(self._form_class(request, obj).base_fields) if self._may_enter(request, obj) else ()

    def get_fieldsets(self, request: HttpRequest, obj: Case | None = None) -> _FieldsetSpec:
        if obj is None:
            return self._form_class(request, None).fieldsets
        record = ("dictionary_check", "findings_table", "symptoms_list", "diagnosis_named")
        if not can_view_phi(request.user):
            return [
                (
                    "Case",
                    {
                        "fields": (
                            "id",
                            "source",
                            "cohort",
                            "status",
                            "submitted_by",
                            "reviewed_by",
                            "reviewed_at",
                            "rejection_reason",
                            "created_at",
                            "updated_at",
                        )
                    },
                ),
                ("Clinical record (de-identified)", {"fields": record}),
                ("Quality", {"fields": ("quality", "quality_issues_list")}),
                (
                    "De-identified record",
                    {"fields": ("patient_pseudonym", "deid_policy_version", "deidentified_record")},
                ),
            ]
        editable = self.has_change_permission(request, obj)
        case_fields = ["id", "source", "external_id", "status", "revision"]
        if not editable:
            case_fields += ["cohort"]
        case_fields += ["patient_pseudonym", "deid_policy_version", "submitted_by", "last_edited_by", "created_at"]
        case_fields += ["updated_at"]
        fieldsets: list[tuple[Any, _FieldOpts]] = [
            ("Case", {"fields": tuple(case_fields)}),
            ("Clinical record", {"fields": record}),
            ("Review", {"fields": ("reviewed_by", "reviewed_at", "rejection_reason", "review_note")}),
            ("Quality", {"fields": ("quality", "quality_issues_list")}),
        ]
        if editable:
            form_class = self._form_class(request, obj)
            if form_class.dictionary_version is None:
                fieldsets.append(
                    (
                        "Edit the clinical content",
                        {
                            "fields": ("expected_revision",),
                            "description": mark_safe(
                                "The case's cohort has no published data dictionary, so the form cannot be built "
                                'from one. <a href="?choose_cohort=1">Choose the cohort</a> to edit it under.'
                            ),
                        },
                    )
                )
            else:
                fieldsets += form_class.fieldsets
        fieldsets.append(
            (
                "Record as JSON: raw (PHI) and de-identified",
                {
                    "fields": ("record_comparison",),
                    "classes": ("wide", "collapse"),
                },
            )
        )
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Case | None = None) -> list[str]:
        editable = set(self._editable_fields(request, obj))
        return [name for name in flatten_fieldsets(self.get_fieldsets(request, obj)) if name not in editable]

    # --- The clinical record in the dictionary's words (cases.case_page) --------------------------

    def _shown_content(self, request: HttpRequest, obj: Case) -> dict[str, Any]:
        """The raw record for a PHI user, the de-identified one for everyone else."""
        if can_view_phi(request.user):
            return {"findings": obj.findings, "symptoms": obj.symptoms}
        return obj.deidentified or {}

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Case | None:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._shown = self._shown_content(request, obj)  # type: ignore[attr-defined]
        return obj

    @admin.display(description="data dictionary")
    def dictionary_check(self, obj: Case) -> str:
        return case_page.dictionary_check(obj)

    @admin.display(description="findings")
    def findings_table(self, obj: Case) -> str:
        dictionary = case_page.case_dictionary(obj)
        shown = getattr(obj, "_shown", {})
        return case_page.findings_table(shown.get("findings") or {}, definition_of(dictionary) if dictionary else None)

    @admin.display(description="symptoms")
    def symptoms_list(self, obj: Case) -> str:
        dictionary = case_page.case_dictionary(obj)
        shown = getattr(obj, "_shown", {})
        return case_page.symptoms_list(shown.get("symptoms") or [], definition_of(dictionary) if dictionary else None)

    @admin.display(description="diagnosis")
    def diagnosis_named(self, obj: Case) -> str:
        dictionary = case_page.case_dictionary(obj)
        return case_page.diagnosis_text(obj.diagnosis_code, definition_of(dictionary) if dictionary else None)

    @admin.display(description="quality issues")
    def quality_issues_list(self, obj: Case) -> str:
        # Quality messages name fields and ranges, never patient values (see cases.quality).
        if not obj.quality_issues:
            return "None"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li>{}: {}</li>", ((i.get("field", ""), i.get("message", "")) for i in obj.quality_issues)
            ),
        )

    @admin.display(description="de-identified record")
    def deidentified_record(self, obj: Case) -> str:
        if obj.deidentified is None:
            return "Not de-identified yet: the de-identified record is computed and stored when the case is approved."
        return _pretty_json(obj.deidentified)

    @admin.display(description="record")
    def record_comparison(self, obj: Case) -> str:
        """Raw next to de-identified. Only in the PHI user's fieldsets (see ``get_fieldsets``)."""
        if obj.deidentified is not None:
            deid_title, deidentified = "De-identified (stored at approval)", obj.deidentified
        else:
            deid_title = "De-identified preview (stored when the case is approved)"
            deidentified = records.deidentify(obj.to_record(), key=settings.PSEUDONYM_KEY)
        return format_html(
            '<div class="case-record-compare"><div><h3>Raw record (PHI)</h3>{}</div><div><h3>{}</h3>{}</div></div>',
            _pretty_json(obj.to_record().to_json()),
            deid_title,
            _pretty_json(deidentified),
        )

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        chooser = self._cohort_chooser(request, object_id)
        if chooser is not None:
            return chooser
        saving = request.method == "POST" and any(k in request.POST for k in ("_save", "_continue", "_addanother"))
        if saving and object_id is not None:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None and self._may_edit_content(request, obj) and not obj.can_edit():
                # Approved while this user was editing: say so instead of a bare 403.
                self.message_user(
                    request,
                    f"{obj} can no longer be edited (only submitted or rejected cases can). Nothing was saved.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(request.path)
        try:
            response = super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            # A transition lost a race between the form check and the write; the atomic block of
            # the change view has rolled everything back.
            self.message_user(request, f"Nothing was saved: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(request.path)
        except IntegrityError:
            self.message_user(
                request,
                "Nothing was saved: a case with this source and external id was just created by someone else.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.path)
        self._log_change_form(request, object_id, response)
        return response

    def _cohort_chooser(self, request: HttpRequest, object_id: str | None) -> HttpResponse | None:
        """The first step of entering a case: the cohort whose dictionary the form follows.

        Shown on the add page until ``?cohort=`` names a cohort with a published dictionary (an
        unknown one is an error beside the select), and on a case's page with ``?choose_cohort``
        (a case of a cohort without a dictionary, or one entered under the wrong cohort). None:
        the admin's own page (which also answers a user who may not add or edit).
        """
        obj = None
        if object_id is not None:
            if not {"choose_cohort", "cohort"} & set(request.GET):
                return None
            obj = self.get_object(request, unquote(object_id))
            if obj is None:
                return None
        if not self._may_enter(request, obj):
            return None
        if "choose_cohort" in request.GET or "cohort" not in request.GET:
            form = CohortChoiceForm(initial={"cohort": obj.cohort if obj is not None else None})
        else:
            form = CohortChoiceForm(request.GET)
            if form.is_valid():
                return None
        what = "Add case" if obj is None else f"Edit {obj}"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{what}: choose the cohort",
            "subtitle": None,
            "opts": self.opts,
            "case": obj,
            "form": form,
            "cohorts": [(cohort, cohort.current_dictionary()) for cohort in published_cohorts()],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/cases/case/choose_cohort.html", context)

    def _log_change_form(self, request: HttpRequest, object_id: str | None, response: HttpResponse) -> None:
        """An edit or a submission saved by ``save_model``, or a case's page shown to a PHI user."""
        saved: tuple[str, int, tuple[str, ...]] | None = getattr(request, "_case_saved", None)
        if saved is not None:
            action, case_id, fields = saved
            self._log(request, action, [case_id], fields)
        elif object_id is not None and response.status_code == 200 and can_view_phi(request.user):
            context = getattr(response, "context_data", None) or {}
            original = context.get("original")
            if original is not None:
                self._log(request, AccessLogEntry.Action.VIEW, [original.pk])

    def save_model(self, request: HttpRequest, obj: Case, form: CaseAdminForm, change: bool) -> None:
        record = form.record
        if record is None:  # the form validated, so this is a programming error
            raise RuntimeError("CaseAdminForm validated without building a record.")
        if form.quality:
            # Outside the expected range: taken, with a lower quality score, and said so.
            self.message_user(
                request,
                "Saved with quality issues: " + " ".join(issue.message for issue in form.quality),
                messages.WARNING,
            )
        # Read back by ``changeform_view`` for the access log (the admin instance is shared by
        # every request, so the request carries it).
        if change:
            # The form has already written the new values onto ``obj``; put the stored ones back so
            # that ``revise`` can name the fields that change (its claim still checks the revision).
            stored = Case.objects.filter(pk=obj.pk).values(*CONTENT_FIELDS).first() or {}
            for name, value in stored.items():
                setattr(obj, name, value)
            changed = obj.revise(record, by=request_actor(request), dictionary=form.dictionary)
            request._case_saved = (AccessLogEntry.Action.EDIT, obj.pk, changed)  # type: ignore[attr-defined]
            return
        case = Case.submit(record, by=request_actor(request), dictionary=form.dictionary)
        request._case_saved = (AccessLogEntry.Action.SUBMIT, case.pk, ())  # type: ignore[attr-defined]
        # The admin keeps using ``obj`` (messages, log entry, redirect): make it the saved case.
        for field in Case._meta.concrete_fields:
            setattr(obj, field.attname, getattr(case, field.attname))
        obj._state.adding = False
        obj._state.db = case._state.db

    # --- Actions ---------------------------------------------------------------------------------

    def action_unavailable(self, request: HttpRequest, obj: Case, name: str) -> str | None:
        return _case_unavailable(obj, name, request.user)

    @admin.action(
        description="Approve this case",
        description_plural="Approve selected cases",
        permissions=["review"],
        location=_BOTH_LOCATIONS,
    )
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Case]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.defer(None),  # the changelist deferred the record; a transition reads it
            title="Approve cases",
            done="Approved",
            form_class=ApproveForm,
            question="Approve these cases? Each is de-identified and becomes available for training datasets.",
            confirm_label="Approve",
            apply=lambda case, data: case.approve(by=request.user, note=data["note"]),
            unavailable=lambda case: _case_unavailable(case, "approve_selected", request.user),
            version_field="revision",
        )

    @admin.action(
        description="Reject this case",
        description_plural="Reject selected cases",
        permissions=["review"],
        location=_BOTH_LOCATIONS,
    )
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Case]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.defer(None),
            title="Reject cases",
            done="Rejected",
            form_class=RejectForm,
            question="Reject these cases? The submitter sees the reason and note and can edit and resubmit.",
            confirm_label="Reject",
            apply=lambda case, data: case.reject(by=request.user, reason=data["reason"], note=data["note"]),
            unavailable=lambda case: _case_unavailable(case, "reject_selected", request.user),
            version_field="revision",
        )

    @admin.action(
        description="Retract this case",
        description_plural="Retract selected cases",
        permissions=["review"],
        location=_BOTH_LOCATIONS,
    )
    def retract_selected(self, request: HttpRequest, queryset: QuerySet[Case]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.defer(None),
            title="Retract cases",
            done="Retracted",
            form_class=RetractForm,
            question="Retract these approved cases? They leave future datasets; datasets already built keep them.",
            confirm_label="Retract",
            apply=lambda case, data: case.retract(by=request.user, reason=data["reason"]),
            unavailable=lambda case: _case_unavailable(case, "retract_selected", request.user),
            version_field="revision",
        )

    # --- Statistics page -------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "statistics/",
                self.admin_site.admin_view(self.statistics_view),
                name="{}_{}_statistics".format(*info),
            )
        ]
        return custom + super().get_urls()  # before the catch-all "<path:object_id>/"

    def statistics_view(self, request: HttpRequest) -> TemplateResponse:
        if not request.user.has_perm(PERM_VIEW_STATISTICS):
            raise PermissionDenied
        phi = can_view_phi(request.user)
        stats = compute_statistics(phi=phi)
        histogram = bar_chart(
            [(f"{b['low']:.1f}-{b['high']:.1f}", b["count"]) for b in stats["quality_histogram"]],
            title="Quality score histogram",
            value_label="cases",
        )
        status_chart = bar_chart(
            [(label, stats["by_status"].get(value, 0)) for value, label in Case.Status.choices],
            title="Cases by status",
            width=400,
            value_label="cases",
        )
        reasons = dict(Case.RejectionReason.choices)
        cohort_names = dict(Cohort.objects.filter(slug__in=list(stats["by_cohort"])).values_list("slug", "name"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Case statistics",
            "subtitle": None,
            "opts": self.opts,
            "stats": stats,
            "histogram": histogram,
            "status_chart": status_chart,
            "status_rows": [(label, stats["by_status"].get(value, 0)) for value, label in Case.Status.choices],
            "cohort_rows": [
                (slug, cohort_names.get(slug, ""), count)
                for slug, count in sorted(stats["by_cohort"].items(), key=lambda item: (-item[1], item[0]))
            ],
            "diagnosis_rows": sorted(
                ((row["code"], row["display_name"], row["cases"]) for row in stats["diagnoses"]),
                key=lambda item: (-item[2], item[0]),
            ),
            "finding_tables": _finding_tables(stats["findings"]),
            "findings_of_every_case": phi,
            "min_cases_for_mean": MIN_CASES_FOR_MEAN,
            "rejection_rows": [
                (reasons.get(code, code or "(none)"), count) for code, count in stats["rejected_by_reason"].items()
            ],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/cases/case/statistics.html", context)


def _finding_tables(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statistics' finding summaries as one table per cohort, values written for reading."""
    tables: dict[str, dict[str, Any]] = {}
    for row in summaries:
        table = tables.setdefault(
            row["cohort"], {"cohort": row["cohort"], "version": row["dictionary_version"], "rows": []}
        )
        mean = row["mean"]
        if mean is None:
            mean_text = "—"
        elif row["value_type"] == "boolean":
            mean_text = f"{mean * 100:.1f}% yes"
        else:
            mean_text = f"{mean:.4g} {row['unit_display']}".strip()
        table["rows"].append({**row, "mean_text": mean_text})
    return list(tables.values())


# The PHI access log's admin (the privacy officer's page) lives in a module of its own.
from cases import access_log_admin  # noqa: E402, F401

# Cohorts and dictionary versions have their admin next to their models.
from cases.dictionary import admin as _dictionary_admin  # noqa: E402, F401
