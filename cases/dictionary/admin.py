"""The admin of cohorts and their dictionary versions (registered from ``cases.admin``).

Everyone who works with cases may view them (``learning_engine.roles.DICTIONARY_READ``); clinical
leads add cohorts, copy a version to a new draft, edit drafts and publish. A published version's
page is read-only; its content is shown as tables (findings with units, codes and ranges; symptoms;
diagnoses), not as JSON. Every write goes through the model's methods, so it is audited
(``DictionaryTransition``) and claimed against a stale copy.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from cases.dictionary.definition import Definition, DefinitionError, Range, parse_definition
from cases.dictionary.models import Cohort, DataDictionary, DictionaryTransition
from learning_engine.actors import request_actor
from learning_engine.admin_audit import AuditTrailInline
from learning_engine.admin_helpers import StateActionsMixin, confirm_and_apply
from learning_engine.admin_links import RelatedLinksMixin
from learning_engine.exceptions import DomainError
from learning_engine.forms import StrictJSONField
from learning_engine.roles import PERM_PUBLISH_DICTIONARY

_BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


class _PrettyJSONField(StrictJSONField):
    def prepare_value(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


def _definition_error(error: DefinitionError) -> ValidationError:
    where = f"At {error.path}: " if error.path else ""
    return ValidationError(f"{where}{error.message}", code="invalid_definition")


class DictionaryForm(forms.ModelForm):
    """Add a draft (cohort and definition) or edit a draft's definition, checked as the files are."""

    definition = _PrettyJSONField(
        widget=forms.Textarea(attrs={"rows": 30, "cols": 100, "spellcheck": "false"}),
        help_text="Findings, symptoms, diagnoses and demographics as JSON: see docs/data-dictionary.md.",
    )
    # The definition the user opened: an edit of a draft changed meanwhile is refused, not merged.
    expected_sha256 = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = DataDictionary
        fields = ("cohort", "definition")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["expected_sha256"].initial = self.instance.definition_sha256

    def clean_definition(self) -> Any:
        definition = self.cleaned_data.get("definition")
        try:
            parse_definition(definition)
        except DefinitionError as error:
            raise _definition_error(error) from None
        return definition

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        instance = self.instance
        if instance.pk is not None and cleaned.get("expected_sha256") != instance.definition_sha256:
            raise ValidationError(
                "Someone changed this draft after you opened it, so your edit was not saved. Open it again.",
                code="stale",
            )
        return cleaned


class DictionaryTransitionInline(AuditTrailInline):
    """The audit trail: read-only and append-only."""

    model = DictionaryTransition
    verbose_name = None  # the model's own ("dictionary transition")


def _range(item: Range) -> str:
    return "" if item.min is None and item.max is None else str(item)


def findings_table(parsed: Definition) -> str:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                item.display_name,
                item.key,
                item.unit or "",
                item.loinc or "",
                item.value_type
                + (" (" + ", ".join(f"{code} {name}" for code, name in item.values) + ")" if item.values else ""),
                _range(item.hard_limits),
                _range(item.expected_range),
                "yes" if item.used_by_model else "no",
            )
            for item in parsed.findings
        ),
    )
    return format_html(
        '<table class="dictionary-findings"><thead><tr><th>finding</th><th>key</th><th>unit (UCUM)</th>'
        "<th>LOINC</th><th>type</th><th>hard limits</th><th>expected range</th><th>model input</th></tr>"
        "</thead><tbody>{}</tbody></table>",
        rows,
    )


@admin.register(Cohort)
class CohortAdmin(RelatedLinksMixin, admin.ModelAdmin):
    list_display = ("slug", "name", "current_version")
    search_fields = ("slug", "name")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Cohort]:
        return super().get_queryset(request).prefetch_related("dictionaries")

    @admin.display(description="current version")
    def current_version(self, obj: Cohort) -> str:
        published = [d.version for d in obj.dictionaries.all() if d.status == DataDictionary.Status.PUBLISHED]
        return f"v{max(published)}" if published else "none published"

    def get_readonly_fields(self, request: HttpRequest, obj: Cohort | None = None) -> tuple[str, ...]:
        # Cases name their cohort by slug: it cannot change once the cohort exists.
        return ("slug",) if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Cohort | None = None) -> bool:
        return False


@admin.register(DataDictionary)
class DataDictionaryAdmin(StateActionsMixin, RelatedLinksMixin, admin.ModelAdmin):
    form = DictionaryForm
    list_display = ("__str__", "cohort", "version", "status", "created_by", "created_at", "published_at")
    list_filter = ("status", "cohort")
    list_select_related = ("cohort", "created_by")
    actions = ["copy_to_new_draft", "publish_selected"]
    inlines = [DictionaryTransitionInline]
    readonly_shown = (
        "cohort",
        "version",
        "status",
        "based_on",
        "created_by",
        "created_at",
        "published_by",
        "published_at",
        "findings",
        "symptoms",
        "diagnoses",
        "demographics",
    )

    # --- Pages -----------------------------------------------------------------------------------

    def get_fields(self, request: HttpRequest, obj: DataDictionary | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["cohort", "definition"]
        fields = list(self.readonly_shown)
        if self.has_change_permission(request, obj):
            fields += ["definition", "expected_sha256"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: DataDictionary | None = None) -> tuple[str, ...]:
        return self.readonly_shown if obj is not None else ()

    @admin.display(description="findings")
    def findings(self, obj: DataDictionary) -> str:
        return findings_table(obj.parsed)

    @admin.display(description="symptoms")
    def symptoms(self, obj: DataDictionary) -> str:
        return format_html_join(
            ", ",
            "{} (<code>{}</code>{})",
            (
                (item.display_name, item.key, f", SNOMED CT {item.snomed_ct}" if item.snomed_ct else "")
                for item in obj.parsed.symptoms
            ),
        )

    @admin.display(description="diagnoses")
    def diagnoses(self, obj: DataDictionary) -> str:
        return format_html_join(
            mark_safe("<br>"), "<code>{}</code> {}", ((item.code, item.display_name) for item in obj.parsed.diagnoses)
        )

    @admin.display(description="model demographics")
    def demographics(self, obj: DataDictionary) -> str:
        used = [name for name, on in (("age", obj.parsed.uses_age), ("sex", obj.parsed.uses_sex)) if on]
        return ", ".join(used) or "none"

    # --- Permissions -----------------------------------------------------------------------------

    def has_change_permission(self, request: HttpRequest, obj: DataDictionary | None = None) -> bool:
        # A published (or referred-to) version is frozen: its page is read-only.
        return super().has_change_permission(request, obj) and (obj is None or obj.can_edit())

    def has_delete_permission(self, request: HttpRequest, obj: DataDictionary | None = None) -> bool:
        return False

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_PUBLISH_DICTIONARY)

    def has_copy_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request)

    # --- What a version's page offers ----------------------------------------------------------------

    def action_unavailable(self, request: HttpRequest, obj: DataDictionary, name: str) -> str | None:
        """A version's page offers publish on a draft only, and a copy only of a version that can no
        longer be edited (published or referred to); a list keeps both (the apply skips, with reasons)."""
        if name == "publish_selected" and not obj.can_publish():
            return "it is already published"
        if name == "copy_to_new_draft" and obj.can_edit():
            return "it is a draft: edit it here"
        return None

    # --- Writes (through the model) --------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: DataDictionary, form: forms.ModelForm, change: bool) -> None:
        definition = form.cleaned_data["definition"]
        if not change:
            created = DataDictionary.create_draft(form.cleaned_data["cohort"], definition, by=request_actor(request))
            obj.pk, obj.version = created.pk, created.version
            obj._state.adding = False
            return
        stored = DataDictionary.objects.get(pk=obj.pk)
        stored.edit(definition, by=request_actor(request))

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except DomainError as error:
            # Published or referred to meanwhile: say so instead of a server error.
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(request.path)

    # --- Actions ---------------------------------------------------------------------------------

    @admin.action(
        description="Copy this version to a new draft",
        description_plural="Copy selected versions to new drafts",
        permissions=["copy"],
        location=_BOTH_LOCATIONS,
    )
    def copy_to_new_draft(self, request: HttpRequest, queryset: QuerySet[DataDictionary]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.select_related("cohort"),
            title="Copy to new drafts",
            done="Copied",
            question="Make a new draft of each of these versions? The drafts can be edited and then published.",
            confirm_label="Copy",
            apply=lambda dictionary, data: dictionary.copy(by=request.user),
        )

    @admin.action(
        description="Publish this version",
        description_plural="Publish selected versions",
        permissions=["publish"],
        location=_BOTH_LOCATIONS,
    )
    def publish_selected(self, request: HttpRequest, queryset: QuerySet[DataDictionary]) -> TemplateResponse | None:
        return confirm_and_apply(
            self,
            request,
            queryset.select_related("cohort"),
            title="Publish dictionary versions",
            done="Published",
            question="Publish these versions? A published version never changes, and new cases of its cohort "
            "are checked against it.",
            confirm_label="Publish",
            apply=lambda dictionary, data: dictionary.publish(by=request.user),
            version_field="definition_sha256",
            unavailable=lambda dictionary: self.action_unavailable(request, dictionary, "publish_selected"),
        )
