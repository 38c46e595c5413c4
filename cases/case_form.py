"""The admin's case form, generated from the cohort's current data dictionary (issue 11).

A case is entered under one cohort, and its fields follow that cohort's current (newest published)
dictionary version: the patient block as separate inputs, one input per finding (a number input
with the display name, the UCUM unit and the ranges as help text; a yes/no or a category select for
boolean and category findings), symptom checkboxes and a diagnosis select with the ICD-10 code and
name. The cohort is chosen first (``CohortChoiceForm``), so the add page is ``?cohort=<slug>``.

Checking goes through the path the API and the import take: the form builds an interchange record,
``parse_record`` reads it and ``check_record`` checks it against the dictionary, and every problem is
put beside its field (``form_field_of`` maps the record's paths to the form's names). Each input
first checks its own type (a number, a date), so all problems show at once: where an input is
invalid, a neutral stand-in takes its place for the record check, and the check's findings about
that input are dropped (the input's own error says what is wrong).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from typing import Any, ClassVar

from django import forms
from django.contrib.admin import widgets
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.html import escape

from cases.dictionary.checking import RecordRefused, check_record
from cases.dictionary.definition import Definition, Finding, Range
from cases.dictionary.labels import definition_of
from cases.dictionary.models import Cohort, DataDictionary
from cases.dictionary.units import print_unit
from cases.dictionary.validation import Issue
from cases.interchange import (
    MAX_NOTE_LENGTH,
    MAX_SHORT_TEXT,
    PATIENT_KEYS,
    SEXES,
    CaseRecord,
    RecordError,
    parse_record,
)
from cases.models import Case

FINDING_PREFIX = "finding_"
FINDINGS_PER_LINE = 3
PATIENT_PREFIX = "patient_"
# The patient block's inputs, in the order a clinician reads them off a chart.
PATIENT_LABELS = {
    "mrn": "MRN",
    "name": "Name",
    "birth_date": "Birth date",
    "sex": "Sex",
    "address": "Address",
    "zip": "ZIP code",
    "phone": "Phone",
    "email": "Email",
    "ssn": "SSN",
}
assert set(PATIENT_LABELS) == PATIENT_KEYS
# The patient inputs a line, in the admin's fieldset layout.
PATIENT_LINES = tuple(
    tuple(f"{PATIENT_PREFIX}{key}" for key in line)
    for line in (("mrn", "name"), ("birth_date", "sex"), ("address", "zip"), ("phone", "email", "ssn"))
)
NOT_RECORDED = "Not recorded"
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")
# Stand-ins for the record check where an input has its own error (never saved: the form is invalid).
_STAND_IN_TEXT = "-"


def published_cohorts() -> QuerySet[Cohort]:
    """Cohorts with a published dictionary version: the only ones a case can be entered under."""
    return Cohort.objects.filter(dictionaries__status=DataDictionary.Status.PUBLISHED).distinct().order_by("slug")


class CohortField(forms.ModelChoiceField):
    def to_python(self, value: Any) -> Any:
        # A slug or nothing reaches the database: a NUL in ``?cohort=`` is refused by PostgreSQL.
        if value not in self.empty_values and not (isinstance(value, str) and SLUG.fullmatch(value)):
            raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return super().to_python(value)

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.slug})" if obj.name and obj.name != obj.slug else obj.slug


class CohortChoiceForm(forms.Form):
    """Step one of entering a case: the cohort whose dictionary the form follows (a GET form)."""

    cohort = CohortField(
        queryset=Cohort.objects.none(),
        to_field_name="slug",
        empty_label=None,
        help_text="The case form's findings, symptoms and diagnoses follow this cohort's current data dictionary.",
        error_messages={
            "invalid_choice": "No such cohort, or it has no published data dictionary yet.",
            "required": "Choose the cohort of the case.",
        },
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cohort"].queryset = published_cohorts()  # type: ignore[attr-defined]


# --- Reading the dictionary ------------------------------------------------------------------------


def unit_text(finding: Finding) -> str:
    """The unit as printed beside a value (``Cel`` -> ``°C``; nothing for a dimensionless ``1``)."""
    return print_unit(finding.unit)


def range_text(item: Range, finding: Finding) -> str:
    unit = unit_text(finding)
    text = str(item)
    return f"{text} {unit}" if unit and text != "any value" else text


def number_text(value: float) -> str:
    """A finding's value as typed: 104, not 104.0; 38.4 as it is."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def finding_help(finding: Finding) -> str:
    parts = []
    if finding.value_type in ("number", "integer"):
        parts.append(f"Expected {range_text(finding.expected_range, finding)}")
        parts.append(f"hard limits {range_text(finding.hard_limits, finding)}")
        if finding.value_type == "integer":
            parts.append("a whole number")
    if finding.loinc:
        parts.append(f"LOINC {finding.loinc}")
    # Admin help text is rendered as HTML; a dictionary's units and names are text.
    return escape("; ".join(parts) + ".") if parts else ""


def finding_label(finding: Finding) -> str:
    unit = unit_text(finding)
    return f"{finding.display_name} ({unit})" if unit else finding.display_name


def choice_value(value: float) -> str:
    return number_text(value)


class FindingNumberField(forms.FloatField):
    """A number finding's input. Its initial value is the stored number as typed (``number_text``:
    104, not 104.0), so "changed" compares numbers, not that text with the float it comes back as
    (the admin's history otherwise named every number of an edit as changed)."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        if isinstance(initial, str) and initial:
            try:
                initial = float(initial)
            except ValueError:
                return True
        return super().has_changed(initial, data)


def _finding_field(finding: Finding, stored: Any) -> forms.Field:
    common: dict[str, Any] = {"required": False, "label": finding_label(finding), "help_text": finding_help(finding)}
    if finding.value_type in ("number", "integer"):
        # A float for both: "must be a whole number" is the dictionary's check, as for the API.
        # Django's FloatField refuses NaN and infinities (1e309) as "Enter a number."
        step = "1" if finding.value_type == "integer" else "any"
        return FindingNumberField(widget=forms.NumberInput(attrs={"step": step}), **common)
    if finding.value_type == "boolean":
        choices = [("", NOT_RECORDED), ("0", "No"), ("1", "Yes")]
    else:
        choices = [("", NOT_RECORDED), *((str(code), name) for code, name in finding.values)]
    # A value on file that the dictionary does not list stays selectable, so an edit does not drop
    # it silently: the check then says what is wrong with it, beside it.
    if isinstance(stored, (int, float)) and not isinstance(stored, bool) and math.isfinite(stored):
        text = choice_value(float(stored))
        if text not in {value for value, _label in choices}:
            choices.append((text, f"{text} (not a value of this dictionary)"))
    return forms.TypedChoiceField(
        choices=choices,
        coerce=float,
        empty_value=None,
        error_messages={"invalid_choice": "Not one of the listed values."},
        **common,
    )


def _date_field(**kwargs: Any) -> forms.DateField:
    return forms.DateField(widget=widgets.AdminDateWidget, **kwargs)


def _patient_field(key: str) -> forms.Field:
    label = PATIENT_LABELS[key]
    if key == "birth_date":
        return _date_field(required=False, label=label)
    if key == "sex":
        return forms.ChoiceField(
            choices=[("", NOT_RECORDED), *((sex, sex.capitalize()) for sex in sorted(SEXES))],
            required=False,
            label=label,
            error_messages={"invalid_choice": "Not one of the listed values."},
        )
    return forms.CharField(
        max_length=MAX_SHORT_TEXT,
        required=key == "mrn",
        label=label,
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )


def unknown_entries(case: Case | None, definition: Definition) -> tuple[list[int], list[int]]:
    """Positions of the case's findings and symptoms this definition does not define (cases on
    file from before dictionaries, flagged for review)."""
    if case is None or case.pk is None:
        return [], []
    findings = [i for i, key in enumerate(case.findings or {}) if definition.finding(key) is None]
    symptoms = [i for i, key in enumerate(case.symptoms or []) if key not in definition.symptom_keys]
    return findings, symptoms


# --- The form ----------------------------------------------------------------------------------------


class CaseAdminForm(forms.ModelForm):
    """A case's content under one dictionary version; subclasses come from ``case_form_class``.

    ``expected_revision`` carries the revision the user opened; an edit of a case someone changed
    meanwhile is refused instead of silently overwriting their change.
    """

    dictionary_version: ClassVar[DataDictionary | None] = None
    fieldsets: ClassVar[list[tuple[Any, Any]]] = []

    expected_revision = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Case
        fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record: CaseRecord | None = None
        self.dictionary: DataDictionary | None = None
        self.quality: tuple[Issue, ...] = ()
        case = self.instance
        if case.pk is None:
            return
        self.fields["expected_revision"].initial = case.revision
        if self.dictionary_version is None:
            return
        definition = definition_of(self.dictionary_version)
        for key in PATIENT_KEYS:
            if f"{PATIENT_PREFIX}{key}" in self.fields:
                value = (case.patient or {}).get(key) or ""
                if key == "birth_date" and isinstance(value, str) and value:
                    # A date, as the input gives back: the stored ISO text would always "change".
                    with contextlib.suppress(ValueError):
                        value = dt.date.fromisoformat(value)
                self.initial.setdefault(f"{PATIENT_PREFIX}{key}", value)
        for finding in definition.findings:
            value = (case.findings or {}).get(finding.key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.initial.setdefault(f"{FINDING_PREFIX}{finding.key}", choice_value(float(value)))
        self.initial.setdefault("symptoms", [key for key in case.symptoms or [] if key in definition.symptom_keys])
        self.initial.setdefault("diagnosis_code", case.diagnosis_code)
        self.initial.setdefault("encounter_date", case.encounter_date)
        self.initial.setdefault("note", case.note)

    # --- Checking ----------------------------------------------------------------------------------

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        case = self.instance
        if case.pk is not None:
            if not case.can_edit():
                raise ValidationError(
                    f"This case is {case.status}; only submitted or rejected cases can be edited.", code="not_editable"
                )
            if cleaned.get("expected_revision") != case.revision:
                raise ValidationError(
                    "Someone changed this case after you opened it, so your edit was not saved. "
                    "Open the case again to see the current record.",
                    code="stale",
                )
        if self.dictionary_version is None:
            raise ValidationError(
                "This case's cohort has no published data dictionary, so its content cannot be edited here. "
                "Choose a cohort to edit it under (the link beside the cohort).",
                code="no_dictionary",
            )
        own_errors = set(self.errors)  # the inputs' own errors, before the record check adds any
        try:
            record = parse_record(self._record_data(cleaned))
        except RecordError as error:
            self._add_issue(error.field, error.message, own_errors=own_errors)
            return cleaned
        try:
            checked = check_record(record)
        except RecordRefused as refused:
            for issue in refused.issues:
                self._add_issue(issue.field, issue.message, code=issue.code, own_errors=own_errors)
            return cleaned
        if not self.errors:
            self.record, self.dictionary, self.quality = record, checked.dictionary, checked.result.quality
        return cleaned

    def _record_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """The interchange record of the form's values: the API's shape, so the API's parser reads it."""
        assert self.dictionary_version is not None
        case = self.instance
        adding = case.pk is None
        definition = definition_of(self.dictionary_version)
        # What the form does not edit stays as it is on file: the record's unknown keys and patient
        # keys outside the interchange format's nine.
        patient = {key: value for key, value in (case.patient or {}).items() if key not in PATIENT_KEYS}
        for key in PATIENT_KEYS:
            value = cleaned.get(f"{PATIENT_PREFIX}{key}")
            if isinstance(value, dt.date):
                value = value.isoformat()
            if value:
                patient[key] = value
        if f"{PATIENT_PREFIX}mrn" in self.errors:
            patient["mrn"] = _STAND_IN_TEXT
        findings = {}
        for finding in definition.findings:
            value = cleaned.get(f"{FINDING_PREFIX}{finding.key}")
            if value is not None:
                findings[finding.key] = value
        encounter = cleaned.get("encounter_date") or timezone.localdate()
        code = cleaned.get("diagnosis_code") or ""
        # The source's own wording is kept while the code stands; a code chosen here gets its name.
        kept = not adding and code == case.diagnosis_code
        label = case.diagnosis_label if kept else definition.diagnosis_name(code)
        source = case.source if not adding else (cleaned.get("source") or _STAND_IN_TEXT)
        external_id = case.external_id if not adding else (cleaned.get("external_id") or _STAND_IN_TEXT)
        return {
            **(case.extra or {}),
            "source": source,
            "external_id": external_id,
            "cohort": self.dictionary_version.cohort.slug,
            "patient": patient,
            "encounter_date": encounter.isoformat(),
            "findings": findings,
            "symptoms": list(cleaned.get("symptoms") or []),
            "note": cleaned.get("note") or "",
            "diagnosis": {"code": code, "label": label},
        }

    def _add_issue(self, path: str, message: str, *, own_errors: set[str], code: str = "") -> None:
        name = form_field_of(path, self.fields)
        if name is not None and name in own_errors:
            return  # the input's own error says it (and the record check saw a stand-in)
        if code == "birth_after_encounter" and "encounter_date" in own_errors:
            return  # checked against a stand-in encounter date
        self.add_error(name, message)


def form_field_of(path: str, fields: Any) -> str | None:
    """The form field of a record path (``findings.heart_rate`` -> ``finding_heart_rate``); None,
    a non-field error, for a path no input holds."""
    if path.startswith("findings."):
        name = FINDING_PREFIX + path.removeprefix("findings.")
    elif path.startswith("patient."):
        name = PATIENT_PREFIX + path.removeprefix("patient.")
    elif path == "patient":
        name = f"{PATIENT_PREFIX}mrn"
    elif path.startswith("symptoms"):
        name = "symptoms"
    elif path.startswith("diagnosis"):
        name = "diagnosis_code"
    elif path == "findings":
        name = "drop_unknown"  # an entry the dictionary does not define; the form has no input for it
    else:
        name = path.split(".", 1)[0].split("[", 1)[0]
    return name if name in fields else None


def case_form_class(dictionary: DataDictionary | None, *, case: Case | None) -> type[CaseAdminForm]:
    """The case form for ``dictionary`` (the cohort's current version), to add a case (``case``
    None) or edit ``case``. Without a dictionary: a form that only says why it cannot be saved."""
    adding = case is None
    attrs: dict[str, Any] = {"__module__": __name__, "dictionary_version": dictionary}
    meta_fields = ("source", "external_id") if adding else ()
    attrs["Meta"] = type("Meta", (CaseAdminForm.Meta,), {"fields": meta_fields})
    if dictionary is None:
        attrs["fieldsets"] = [("Edit the clinical content", {"fields": ("expected_revision",)})]
        return type("CaseAdminFormWithoutDictionary", (CaseAdminForm,), attrs)

    definition = definition_of(dictionary)
    cohort = dictionary.cohort
    attrs["cohort"] = CohortField(
        queryset=published_cohorts(),
        to_field_name="slug",
        empty_label=None,
        disabled=True,
        initial=cohort.slug,
        help_text=(
            f"The fields below follow the {cohort.slug} data dictionary, version {dictionary.version}. "
            '<a href="?choose_cohort=1">Choose another cohort</a>'
        ),
    )
    attrs["encounter_date"] = _date_field(label="Encounter date")
    for key in PATIENT_LABELS:
        attrs[f"{PATIENT_PREFIX}{key}"] = _patient_field(key)
    stored = (case.findings or {}) if case is not None else {}
    for finding in definition.findings:
        attrs[f"{FINDING_PREFIX}{finding.key}"] = _finding_field(finding, stored.get(finding.key))
    attrs["symptoms"] = forms.MultipleChoiceField(
        choices=[(symptom.key, symptom.display_name) for symptom in definition.symptoms],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        error_messages={"invalid_choice": "Not a symptom of this cohort's dictionary."},
    )
    diagnoses = [
        ("", "Not known yet"),
        *((item.code, f"{item.code} {item.display_name}") for item in definition.diagnoses),
    ]
    if case is not None and case.diagnosis_code and case.diagnosis_code not in definition.diagnosis_codes:
        diagnoses.append((case.diagnosis_code, f"{case.diagnosis_code} (not in this dictionary's code set)"))
    attrs["diagnosis_code"] = forms.ChoiceField(
        choices=diagnoses,
        required=False,
        label="Diagnosis",
        help_text="ICD-10-CM, from the cohort's code set. Leave empty while it is not known.",
        error_messages={"invalid_choice": "Not a diagnosis of this cohort's code set."},
    )
    attrs["note"] = forms.CharField(
        max_length=MAX_NOTE_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Free text (PHI). De-identified before it reaches a dataset.",
    )
    unknown_findings, unknown_symptoms = unknown_entries(case, definition)
    findings_box: list[Any] = []
    if unknown_findings or unknown_symptoms:
        attrs["drop_unknown"] = forms.BooleanField(
            required=True,
            label="Drop the entries this dictionary does not define",
            help_text=(
                f"This case holds {len(unknown_findings)} finding(s) and {len(unknown_symptoms)} symptom(s) "
                "that the dictionary does not define (see the findings table). They have no input here and "
                "saving removes them: tick to confirm."
            ),
            error_messages={"required": "Tick this to save: the case's entries outside the dictionary are removed."},
        )
        findings_box.append("drop_unknown")
    names = [f"{FINDING_PREFIX}{finding.key}" for finding in definition.findings]
    # Three findings a line: thirty measurements stay one screen or two, not ten.
    findings_box += [
        tuple(names[start : start + FINDINGS_PER_LINE]) for start in range(0, len(names), FINDINGS_PER_LINE)
    ]

    head = (("source", "external_id"), ("cohort", "encounter_date")) if adding else (("cohort", "encounter_date"),)
    edit_title = "Case" if adding else "Edit the clinical content"
    edit_help = "" if adding else "Saving re-checks and re-scores the case; a rejected case goes back to review."
    attrs["fieldsets"] = [
        (edit_title, {"fields": (*head, "expected_revision"), "description": edit_help, "classes": ("case-grid",)}),
        ("Patient (PHI)", {"fields": PATIENT_LINES, "classes": ("case-grid",)}),
        (
            "Findings",
            {
                "fields": tuple(findings_box),
                "classes": ("case-grid",),
                "description": "Leave a finding empty when it was not measured. A value outside its hard limits "
                "is refused; one outside the expected range is saved as a quality issue.",
            },
        ),
        ("Symptoms", {"fields": ("symptoms",)}),
        ("Diagnosis and note", {"fields": ("diagnosis_code", "note")}),
    ]
    return type(f"CaseAdminForm_{cohort.slug.replace('-', '_')}", (CaseAdminForm,), attrs)
