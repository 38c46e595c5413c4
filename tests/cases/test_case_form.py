"""The admin's case form, generated from the cohort's data dictionary, and the case page's findings
table (issue 11): the cohort first, one input per finding, every problem at once beside its field,
hostile numbers as form errors, never a 500."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.urls import reverse

from cases.models import Case, DataDictionary
from cases.recheck import recheck_cases
from learning_engine import roles
from tests.cases.dictionary_factories import published_dictionary
from tests.cases.factories import CaseFactory, record_dict
from tests.cases.test_admin import add_form_data, form_data, message_texts

pytestmark = pytest.mark.django_db
ADD = reverse("admin:cases_case_add")


def change_url(case: Case) -> str:
    return reverse("admin:cases_case_change", args=[case.pk])


def current(slug: str) -> DataDictionary:
    return DataDictionary.objects.filter(cohort__slug=slug, status="published").latest("version")


@pytest.fixture
def clinician_client(client, make_user):
    client.force_login(make_user(roles.CLINICIAN, is_staff=True))
    return client


class Page(HTMLParser):
    """The form's inputs (name -> tag and attributes), its select options, labels, help texts, and
    which errors each field row holds."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.inputs: dict[str, list[dict[str, str | None]]] = {}
        self.options: dict[str, list[tuple[str, str]]] = {}
        self.labels: dict[str, str] = {}
        self.help: dict[str, str] = {}
        self.row_errors: dict[str, list[str]] = {}
        self._select: str | None = None
        self._option: str | None = None
        self._label: str | None = None
        self._help: str | None = None
        self._row: str | None = None
        self._in_error = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        classes = (attr.get("class") or "").split()
        if tag == "div" and ("form-row" in classes or "fieldBox" in classes):
            # A line of one field is its form-row; a line of several holds a fieldBox per field.
            fields = [c.removeprefix("field-") for c in classes if c.startswith("field-")]
            self._row = fields[0] if fields else None
        if tag in ("input", "select", "textarea") and attr.get("name"):
            self.inputs.setdefault(str(attr["name"]), []).append({"tag": tag, **attr})
        if tag == "select":
            self._select = attr.get("name")
            self.options.setdefault(str(self._select), [])
        if tag == "option" and self._select:
            self._option = attr.get("value") or ""
            self.options[self._select].append((self._option, ""))
        if tag == "label" and attr.get("for"):
            self._label = str(attr["for"]).removeprefix("id_")
            self.labels[self._label] = ""
        if tag == "div" and "help" in classes and (attr.get("id") or "").endswith("_helptext"):
            self._help = str(attr["id"]).removeprefix("id_").removesuffix("_helptext")
            self.help[self._help] = ""
        if tag == "ul" and "errorlist" in classes:
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "option":
            self._option = None
        elif tag == "label":
            self._label = None
        elif tag == "ul":
            self._in_error = False
        elif tag == "div" and self._help:
            self._help = None

    def handle_data(self, data: str) -> None:
        if self._select and self._option is not None:
            value, text = self.options[self._select][-1]
            self.options[self._select][-1] = (value, text + data)
        if self._label:
            self.labels[self._label] += data
        if self._help:
            self.help[self._help] += data.strip()
        if self._in_error and self._row and data.strip():
            self.row_errors.setdefault(self._row, []).append(data.strip())


def valid_respiratory(**findings: Any) -> dict[str, Any]:
    record = record_dict(findings=findings or {"temperature_c": 38.4, "heart_rate": 104, "spo2": 93, "wbc": 12.8})
    return add_form_data(record) | {"_save": "Save"}


# --- The cohort first --------------------------------------------------------------------------------


def test_the_add_page_asks_for_the_cohort_first_from_the_cohort_rows(clinician_client):
    response = clinician_client.get(ADD)

    assert response.status_code == 200
    page = Page(response.content.decode())
    assert [value for value, _text in page.options["cohort"]] == ["breast-mass", "respiratory"]
    assert "patient_mrn" not in page.inputs
    assert "finding_heart_rate" not in page.inputs


@pytest.mark.parametrize("slug", ["no-such-cohort", "", "bad\x00slug", "x" * 5000, "resp iratory", "../admin"])
def test_an_unknown_cohort_in_the_url_is_an_error_beside_the_select_never_a_500(clinician_client, slug):
    for response in (
        clinician_client.get(ADD, {"cohort": slug}),
        clinician_client.post(f"{ADD}?cohort={slug}", valid_respiratory()),
    ):
        assert response.status_code == 200
        page = Page(response.content.decode())
        assert page.row_errors == {}  # the chooser has no field-<name> row; its error is beside the select
        expected = "Choose the cohort of the case." if slug == "" else "No such cohort, or it has no published"
        assert expected in response.content.decode()
        assert "patient_mrn" not in page.inputs
    assert not Case.objects.exists()


def test_a_cohort_without_a_published_dictionary_cannot_be_chosen(clinician_client, lead):
    from cases.models import Cohort
    from tests.cases.dictionary_factories import small_definition

    DataDictionary.create_draft(Cohort.objects.create(slug="small", name="Small"), small_definition(), by=lead)

    response = clinician_client.get(ADD, {"cohort": "small"})

    assert "No such cohort" in response.content.decode()
    assert "small" not in [value for value, _ in Page(clinician_client.get(ADD).content.decode()).options["cohort"]]


# --- The generated form ------------------------------------------------------------------------------


def test_the_breast_mass_form_has_a_number_input_per_finding_with_its_ranges(clinician_client):
    page = Page(clinician_client.get(ADD, {"cohort": "breast-mass"}).content.decode())

    definition = current("breast-mass").parsed
    numbers = [name for name, tags in page.inputs.items() if tags[0].get("type") == "number"]
    assert numbers == [f"finding_{finding.key}" for finding in definition.findings]
    assert len(numbers) == 30
    assert page.labels["finding_mean_radius"] == "Mean radius:"  # no unit: image units, unstated
    assert page.help["finding_mean_radius"] == "Expected 3.4..43; hard limits >= 0."
    assert page.labels["finding_mean_smoothness"] == "Mean smoothness:"  # UCUM "1": dimensionless
    # The cohort is a select of Cohort rows (fixed here: the fields follow its dictionary).
    assert page.inputs["cohort"][0]["tag"] == "select"
    assert "disabled" in page.inputs["cohort"][0]
    assert [value for value, _ in page.options["cohort"]] == ["breast-mass", "respiratory"]
    # Patient fields are inputs of their own, not a JSON box; nothing is a textarea but the note.
    assert {"patient_mrn", "patient_name", "patient_birth_date", "patient_sex"} <= set(page.inputs)
    assert [name for name, tags in page.inputs.items() if tags[0]["tag"] == "textarea"] == ["note"]
    assert page.options["diagnosis_code"] == [
        ("", "Not known yet"),
        ("C50.9", "C50.9 Malignant neoplasm of breast of unspecified site"),
        ("D24.9", "D24.9 Benign neoplasm of unspecified breast"),
    ]
    symptoms = [tag["value"] for tag in page.inputs["symptoms"]]
    assert symptoms == [symptom.key for symptom in definition.symptoms]
    assert all(tag["type"] == "checkbox" for tag in page.inputs["symptoms"])
    assert page.labels["symptoms_0"].strip() == definition.symptoms[0].display_name


def test_the_respiratory_form_shows_units_ranges_and_loinc_codes(clinician_client):
    page = Page(clinician_client.get(ADD, {"cohort": "respiratory"}).content.decode())

    assert page.labels["finding_temperature_c"] == "Body temperature (°C):"
    assert page.help["finding_temperature_c"] == "Expected 30..44 °C; hard limits 20..47 °C; LOINC 8310-5."
    assert page.labels["finding_wbc"] == "Leukocytes (10³/µL):"
    assert page.help["finding_spo2"] == "Expected 50..100 %; hard limits 0..100 %; LOINC 59408-5."
    assert len(page.options["diagnosis_code"]) == 7
    assert ("J18.9", "J18.9 Pneumonia, unspecified organism") in page.options["diagnosis_code"]
    assert [tag["value"] for tag in page.inputs["symptoms"]][:3] == ["cough", "fever", "dyspnea"]


def test_integer_boolean_and_category_findings_get_their_own_widgets(clinician_client, lead):
    published_dictionary("small", by=lead)

    page = Page(clinician_client.get(ADD, {"cohort": "small"}).content.decode())

    assert page.inputs["finding_heart_rate"][0]["step"] == "1"
    assert page.help["finding_heart_rate"] == (
        "Expected 40..180 /min; hard limits 0..350 /min; a whole number; LOINC 8867-4."
    )
    assert page.inputs["finding_temperature_c"][0]["step"] == "any"
    assert page.options["finding_smoker"] == [("", "Not recorded"), ("0", "No"), ("1", "Yes")]
    assert page.options["finding_gcs_band"] == [("", "Not recorded"), ("0", "alert"), ("1", "not alert")]


def test_a_dictionary_s_text_is_escaped_in_the_help_text(clinician_client, lead):
    from tests.cases.dictionary_factories import small_definition

    definition = small_definition()
    definition["findings"][1]["unit"] = "<b>x</b>"
    published_dictionary("small", by=lead, definition=definition)

    html = clinician_client.get(ADD, {"cohort": "small"}).content.decode()

    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


# --- Saving and every error at once ------------------------------------------------------------------


def test_a_valid_breast_mass_case_is_saved_under_the_current_dictionary(clinician_client):
    definition = current("breast-mass").parsed
    record = record_dict(cohort="breast-mass", symptoms=["breast_mass"], diagnosis={"code": "C50.9", "label": ""})
    record["findings"] = {finding.key: finding.expected_range.min or 0.5 for finding in definition.findings}
    data = add_form_data(record) | {"_save": "Save"}

    response = clinician_client.post(f"{ADD}?cohort=breast-mass", data)

    assert response.status_code == 302, Page(response.content.decode()).row_errors
    case = Case.objects.get()
    assert (case.cohort, case.dictionary) == ("breast-mass", current("breast-mass"))
    assert case.findings == {key: float(value) for key, value in record["findings"].items()}
    assert case.symptoms == ["breast_mass"]
    assert (case.diagnosis_code, case.diagnosis_label) == ("C50.9", "Malignant neoplasm of breast of unspecified site")
    assert case.patient == record["patient"]
    assert case.status == Case.Status.SUBMITTED


def test_every_error_is_shown_at_once_each_beside_its_field(clinician_client):
    data = valid_respiratory() | {
        "finding_temperature_c": "60",  # outside the hard limits 20..47
        "finding_heart_rate": "fast",  # not a number
        "finding_spo2": "1e309",  # infinite
        "finding_wbc": "NaN",
        "encounter_date": "2099-01-01",  # in the future
        "patient_birth_date": "2100-02-03",  # after the encounter
        "patient_mrn": "",
        "patient_sex": "robot",
        "diagnosis_code": "ZZZ",
        "symptoms": ["cough", "zz_doe_family"],
    }

    response = clinician_client.post(f"{ADD}?cohort=respiratory", data)

    assert response.status_code == 200
    assert not Case.objects.exists()
    errors = response.context["adminform"].form.errors
    assert set(errors) == {
        "finding_temperature_c",
        "finding_heart_rate",
        "finding_spo2",
        "finding_wbc",
        "encounter_date",
        "patient_birth_date",
        "patient_mrn",
        "patient_sex",
        "diagnosis_code",
        "symptoms",
    }
    rows = Page(response.content.decode()).row_errors
    assert rows == {name: errors[name] for name in errors}  # each in its own field's row
    assert rows["finding_temperature_c"] == ["Body temperature is outside its hard limits (20..47 °C)."]
    assert rows["finding_heart_rate"] == ["Enter a number."]
    assert rows["finding_spo2"] == ["Enter a number."]
    assert rows["encounter_date"] == ["The encounter date is in the future."]
    assert rows["patient_birth_date"] == ["The birth date is after the encounter date."]
    assert rows["patient_mrn"] == ["This field is required."]
    assert "zz_doe_family" not in " ".join(rows["symptoms"])


def test_dictionary_errors_show_together_with_an_input_s_own_error(clinician_client):
    # A required input missing does not hide what the dictionary check finds in the others.
    data = valid_respiratory() | {"patient_mrn": "", "finding_heart_rate": "-5", "patient_birth_date": "2100-01-01"}

    response = clinician_client.post(f"{ADD}?cohort=respiratory", data)

    errors = response.context["adminform"].form.errors
    assert set(errors) == {"patient_mrn", "finding_heart_rate", "patient_birth_date"}


def test_save_and_add_another_opens_the_form_of_the_same_cohort(clinician_client):
    response = clinician_client.post(f"{ADD}?cohort=respiratory", valid_respiratory() | {"_addanother": "1"})

    assert response.status_code == 302
    assert response.url == f"{ADD}?cohort=respiratory"


def test_a_value_outside_the_expected_range_is_saved_with_a_warning(clinician_client):
    data = valid_respiratory(temperature_c=38.4, heart_rate=104, spo2=0.93, wbc=12.8)

    response = clinician_client.post(f"{ADD}?cohort=respiratory", data, follow=True)

    case = Case.objects.get()
    assert case.findings["spo2"] == 0.93
    assert [issue["code"] for issue in case.quality_issues] == ["implausible_value"]
    warnings = [text for text in message_texts(response) if text.startswith("Saved with quality issues")]
    assert warnings == [
        "Saved with quality issues: Oxygen saturation (pulse oximetry) is outside the expected range (50..100 %)."
    ]


@pytest.mark.parametrize(
    "value",
    ["1e309", "-1e309", "NaN", "inf", "-Infinity", "1" + "0" * 400, "9" * 5000, "abc", "1,5", "0x10", " ", "1e"],
)
def test_a_hostile_number_is_a_form_error_beside_its_field_never_a_500(clinician_client, value):
    data = valid_respiratory() | {"finding_crp": value}

    response = clinician_client.post(f"{ADD}?cohort=respiratory", data)

    assert response.status_code == 200
    assert Page(response.content.decode()).row_errors == {"finding_crp": ["Enter a number."]}
    assert not Case.objects.exists()


def test_a_huge_finite_value_is_checked_by_the_dictionary(clinician_client):
    over = valid_respiratory() | {"finding_nt_probnp": "1e308"}  # over the hard limit 1000000
    response = clinician_client.post(f"{ADD}?cohort=respiratory", over)
    assert Page(response.content.decode()).row_errors == {
        "finding_nt_probnp": ["NT-proBNP is outside its hard limits (0..1000000 pg/mL)."]
    }
    # Breast-mass measurements have no upper hard limit: taken, as a quality issue.
    record = record_dict(cohort="breast-mass", symptoms=[], diagnosis={"code": "", "label": ""})
    record["findings"] = {"mean_area": 1e308}
    response = clinician_client.post(f"{ADD}?cohort=breast-mass", add_form_data(record) | {"_save": "Save"})
    assert response.status_code == 302
    # PostgreSQL's jsonb gives 1e308 back as the integer 10**308: the same number once a float.
    assert {key: float(value) for key, value in Case.objects.get().findings.items()} == {"mean_area": 1e308}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("encounter_date", "2026-02-30", "Enter a valid date."),
        ("encounter_date", "99999-01-01", "Enter a valid date."),
        ("patient_name", "x" * 300, "Ensure this value has at most 255 characters (it has 300)."),
        ("patient_name", "a\x00b", "Null characters are not allowed."),
        ("note", "n" * 50_001, "Ensure this value has at most 50000 characters (it has 50001)."),
        ("source", "st marys", "must not contain spaces."),
        ("finding_smoker", "2", "Not one of the listed values."),
    ],
)
def test_other_bad_inputs_are_errors_beside_their_field(clinician_client, lead, field, value, error):
    published_dictionary("small", by=lead)
    record = record_dict(cohort="small", findings={"heart_rate": 80}, symptoms=["cough"])
    data = add_form_data(record) | {"_save": "Save", field: value}

    response = clinician_client.post(f"{ADD}?cohort=small", data)

    assert response.status_code == 200
    assert Page(response.content.decode()).row_errors == {field: [error]}


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD, roles.PRIVACY_OFFICER])
def test_a_user_without_the_clinician_role_cannot_add_a_case(client, make_user, role):
    client.force_login(make_user(role, is_staff=True))

    assert client.get(ADD).status_code == 403
    assert client.get(ADD, {"cohort": "respiratory"}).status_code == 403
    assert client.post(f"{ADD}?cohort=respiratory", valid_respiratory()).status_code == 403
    assert not Case.objects.exists()


# --- Editing -------------------------------------------------------------------------------------------


def test_the_edit_form_is_filled_from_the_case_and_an_edit_is_saved(clinician_client):
    case = CaseFactory.create(record=record_dict(diagnosis={"code": "J18.9", "label": "CAP, right lower lobe"}))
    page = Page(clinician_client.get(change_url(case)).content.decode())
    assert page.inputs["finding_temperature_c"][0]["value"] == "38.4"
    assert page.inputs["finding_heart_rate"][0]["value"] == "104"
    assert page.inputs["patient_mrn"][0]["value"] == case.patient["mrn"]
    assert [tag["value"] for tag in page.inputs["symptoms"] if "checked" in tag] == ["cough", "fever"]
    assert "source" not in page.inputs  # the source and external id of a case cannot change

    data = form_data(clinician_client, change_url(case)) | {"finding_heart_rate": "88", "_save": "Save"}
    response = clinician_client.post(change_url(case), data)

    assert response.status_code == 302
    case.refresh_from_db()
    assert case.findings == {"temperature_c": 38.4, "heart_rate": 88.0, "spo2": 93.0, "wbc": 12.8}
    assert case.revision == 2
    assert case.diagnosis_label == "CAP, right lower lobe"  # the source's wording, while the code stands
    last = case.transitions.last()
    assert last is not None
    assert list(last.changed_fields) == ["findings"]

    data = form_data(clinician_client, change_url(case)) | {"diagnosis_code": "J06.9", "_save": "Save"}
    assert clinician_client.post(change_url(case), data).status_code == 302
    case.refresh_from_db()
    assert (case.diagnosis_code, case.diagnosis_label) == ("J06.9", "Acute upper respiratory infection, unspecified")


def test_the_admin_history_names_only_the_inputs_an_edit_changed(clinician_client):
    from django.contrib.admin.models import LogEntry

    case = CaseFactory.create(record=record_dict(findings={"temperature_c": 38.4, "heart_rate": 104, "spo2": 93}))
    data = form_data(clinician_client, change_url(case)) | {"finding_heart_rate": "88", "_save": "Save"}

    assert clinician_client.post(change_url(case), data).status_code == 302

    # A number shown as typed ("104", "38.4") and a birth date are unchanged when they come back
    # as they were shown; the history said "Changed Birth date, Body temperature, ..." of them.
    assert LogEntry.objects.get().get_change_message() == "Changed Heart rate (/min)."


def test_an_edit_that_leaves_the_record_as_it_was_changes_nothing(clinician_client):
    case = CaseFactory.create(record=record_dict(extra_field="kept", patient=record_dict()["patient"] | {"ward": "4B"}))

    response = clinician_client.post(change_url(case), form_data(clinician_client, change_url(case)) | {"_save": "1"})

    assert response.status_code == 302
    case.refresh_from_db()
    assert case.revision == 1  # same hash: extra keys and unknown patient keys kept as they were
    assert (case.extra, case.patient["ward"]) == ({"extra_field": "kept"}, "4B")


def test_a_flagged_case_s_unknown_entries_are_dropped_only_when_confirmed(clinician_client):
    case = CaseFactory.create(record=record_dict(findings={"heart_rate": 90, "zz_doe_private": 1}, symptoms=["cough"]))
    recheck_cases(Case.objects.filter(pk=case.pk))
    data = form_data(clinician_client, change_url(case)) | {"_save": "Save"}

    refused = clinician_client.post(change_url(case), data)

    assert Page(refused.content.decode()).row_errors == {
        "drop_unknown": ["Tick this to save: the case's entries outside the dictionary are removed."]
    }
    assert "zz_doe_private" not in Page(refused.content.decode()).help["drop_unknown"]
    assert clinician_client.post(change_url(case), data | {"drop_unknown": "on"}).status_code == 302
    case.refresh_from_db()
    assert case.findings == {"heart_rate": 90.0}
    assert (case.dictionary, case.dictionary_errors) == (current("respiratory"), [])


def test_a_stored_value_the_dictionary_does_not_list_stays_selectable(clinician_client, lead):
    published_dictionary("small", by=lead)
    case = CaseFactory.create(record=record_dict(cohort="small", findings={"smoker": 3}, symptoms=[]))

    page = Page(clinician_client.get(change_url(case)).content.decode())
    response = clinician_client.post(change_url(case), form_data(clinician_client, change_url(case)) | {"_save": "1"})

    assert ("3", "3 (not a value of this dictionary)") in page.options["finding_smoker"]
    assert Page(response.content.decode()).row_errors == {
        "finding_smoker": ["Current smoker must be 0 (no) or 1 (yes)."]
    }


def test_a_case_of_a_cohort_without_a_dictionary_is_edited_under_a_chosen_cohort(clinician_client):
    case = CaseFactory.create(record=record_dict(cohort="respiratory-old"))
    page = clinician_client.get(change_url(case)).content.decode()
    assert "has no published data dictionary" in page
    assert "finding_heart_rate" not in Page(page).inputs
    data = form_data(clinician_client, change_url(case)) | {"_save": "Save"}
    assert "cannot be edited here" in clinician_client.post(change_url(case), data).content.decode()

    chooser = Page(clinician_client.get(change_url(case), {"choose_cohort": "1"}).content.decode())
    assert [value for value, _ in chooser.options["cohort"]] == ["breast-mass", "respiratory"]
    url = f"{change_url(case)}?cohort=respiratory"
    data = form_data(clinician_client, url) | {"_save": "Save"}
    assert clinician_client.post(url, data).status_code == 302

    case.refresh_from_db()
    assert (case.cohort, case.dictionary, case.revision) == ("respiratory", current("respiratory"), 2)


# --- The case page -------------------------------------------------------------------------------------


def findings_rows(html: str) -> list[list[str]]:
    table = re.search(r'<table class="case-findings">.*?</table>', html, re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)] for row in rows
    ]


def test_the_case_page_shows_the_findings_as_a_table_with_units_and_flags(clinician_client):
    record = record_dict(findings={"temperature_c": 38.4, "spo2": 0.93, "heart_rate": 260}, symptoms=["cough", "zz_x"])
    case = CaseFactory.create(record=record)
    recheck_cases(Case.objects.filter(pk=case.pk))  # flagged: an unknown symptom

    html = clinician_client.get(change_url(case)).content.decode()

    assert findings_rows(html) == [  # in the dictionary's order, not the record's
        ["Finding", "Value", "Unit", "Expected range", "Flag"],
        ["Body temperature", "38.4", "°C", "30..44 °C", ""],
        ["Heart rate", "260", "/min", "20..250 /min", "above expected range"],
        ["Oxygen saturation (pulse oximetry)", "0.93", "%", "50..100 %", "below expected range"],
    ]
    assert "Not recorded: Respiratory rate, Systolic blood pressure, Leukocytes, C reactive protein" in html
    assert re.search(r"<li>Cough</li>\s*<li>Entry 2 \(of 2\) — not in the dictionary</li>", html)
    assert "J18.9 Pneumonia, unspecified organism" in html
    assert "Flagged for review" in html


def test_a_legacy_value_outside_the_hard_limits_is_flagged_in_the_table(clinician_client):
    case = CaseFactory.create(record=record_dict(findings={"temperature_c": 101.3}))  # Fahrenheit, before dictionaries
    recheck_cases(Case.objects.filter(pk=case.pk))

    rows = findings_rows(clinician_client.get(change_url(case)).content.decode())

    assert rows[1] == ["Body temperature", "101.3", "°C", "30..44 °C", "outside hard limits"]


def test_a_checked_case_names_its_dictionary_version(clinician_client):
    CaseFactory.create()
    data = valid_respiratory()
    clinician_client.post(f"{ADD}?cohort=respiratory", data)
    case = Case.objects.get(external_id=data["external_id"])

    html = clinician_client.get(change_url(case)).content.decode()

    assert f"Checked against the respiratory data dictionary, version {current('respiratory').version}." in html


def test_without_phi_access_the_table_comes_from_the_deidentified_record(client, make_user):
    case = CaseFactory.create(approved=True, record=record_dict(findings={"crp": 12.5}))
    # Tell the two apart: the page must read the de-identified record, never the raw columns.
    assert case.deidentified is not None
    Case.objects.filter(pk=case.pk).update(deidentified=case.deidentified | {"findings": {"crp": 13.5}})
    client.force_login(make_user(roles.ML_ENGINEER, is_staff=True))

    html = client.get(change_url(case)).content.decode()

    assert findings_rows(html)[1] == ["C reactive protein", "13.5", "mg/L", "0..500 mg/L", ""]
    assert case.patient["mrn"] not in html
    submitted = CaseFactory.create()
    assert client.get(change_url(submitted)).status_code == 302  # not a case they may see today


def test_an_approved_case_page_shows_the_table_and_no_inputs(clinician_client):
    case = CaseFactory.create(approved=True)

    page = clinician_client.get(change_url(case)).content.decode()

    assert findings_rows(page)[1][0] == "Body temperature"
    assert not {"finding_temperature_c", "patient_mrn", "symptoms"} & set(Page(page).inputs)
