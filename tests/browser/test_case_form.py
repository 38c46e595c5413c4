"""A clinician enters a breast-mass case through the form generated from its data dictionary (issue
11): the cohort first, a value outside its hard limits refused beside its field, fixed, saved, and
the case page shows the findings as a table with units and flags."""

from __future__ import annotations

from cases.models import Case
from tests.browser.conftest import SCREENSHOTS


def _breast_mass_row() -> dict[str, float]:
    """The first case of the Breast Cancer Wisconsin data, keyed as the dictionary keys it."""
    from sklearn.datasets import load_breast_cancer

    from cases.demo import breast_feature_names

    return dict(zip(breast_feature_names(), (float(x) for x in load_breast_cancer().data[0]), strict=True))


def _findings_rows(page) -> list[list[str]]:
    return [
        [cell.strip() for cell in row.locator("th, td").all_inner_texts()]
        for row in page.locator("table.case-findings tbody tr").all()
    ]


def test_a_clinician_enters_a_breast_mass_case_through_the_generated_form(site):
    page = site.login("demo-clinician")

    page.goto("/admin/cases/case/add/")
    site.shoot(page, "choose-cohort")
    page.select_option("#id_cohort", "breast-mass")
    page.click("#cohort-choice-form input[type=submit]")
    page.wait_for_selector("#case_form")
    assert page.url.endswith("/admin/cases/case/add/?cohort=breast-mass")
    assert page.locator("#case_form input[type=number]").count() == 30
    assert page.locator("label[for=id_finding_mean_smoothness]").inner_text() == "Mean smoothness:"
    assert page.locator("#id_finding_mean_radius_helptext").inner_text() == "Expected 3.4..43; hard limits >= 0."
    site.shoot(page, "empty-form")

    page.fill("#id_source", "browser-test")
    page.fill("#id_external_id", "bm-0001")
    page.fill("#id_encounter_date", "2026-03-02")
    page.fill("#id_patient_mrn", "MRN-880011")
    page.fill("#id_patient_name", "Ada Example")
    page.fill("#id_patient_birth_date", "1961-07-15")
    page.select_option("#id_patient_sex", "female")
    row = _breast_mass_row()
    for key, value in row.items():
        page.fill(f"#id_finding_{key}", repr(value))
    page.fill("#id_finding_mean_radius", "-17.99")  # a sign typed by mistake: outside the hard limits
    page.check("#case_form input[name=symptoms][value=breast_mass]")
    page.select_option("#id_diagnosis_code", "C50.9")
    page.fill("#id_note", "Palpable mass, upper outer quadrant.")
    page.click("#case_form input[name=_continue]")

    page.wait_for_selector(".errornote")
    site.shoot(page, "hard-limit-error")
    error = page.locator(".field-finding_mean_radius .errorlist")
    assert error.inner_text() == "Mean radius is outside its hard limits (>= 0)."
    assert page.locator("#case_form .errorlist").count() == 1  # the only problem, beside its field
    assert page.locator("#id_finding_mean_texture").input_value() == repr(row["mean_texture"])  # kept
    assert not Case.objects.filter(external_id="bm-0001").exists()

    page.fill("#id_finding_mean_radius", "17.99")
    page.click("#case_form input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    site.shoot(page, "saved-case-page")

    case = Case.objects.get(source="browser-test", external_id="bm-0001")
    assert (case.cohort, case.diagnosis_code, case.symptoms) == ("breast-mass", "C50.9", ["breast_mass"])
    assert case.findings == row
    assert case.dictionary is not None
    rows = _findings_rows(page)
    assert len(rows) == 30
    assert rows[0] == ["Mean radius", "17.99", "", "3.4..43", ""]
    assert rows[4] == ["Mean smoothness", "0.1184", "", "0.026..0.25", ""]
    assert page.locator(".field-diagnosis_named .readonly").inner_text() == (
        "C50.9 Malignant neoplasm of breast of unspecified site"
    )
    assert page.locator(".field-symptoms_list .readonly").inner_text() == "Breast lump"
    assert (
        page.locator(".field-dictionary_check .readonly")
        .inner_text()
        .startswith("Checked against the breast-mass data dictionary, version")
    )
    record = page.locator("fieldset", has=page.locator(".field-findings_table"))
    record.screenshot(path=str(SCREENSHOTS / f"{site.test_name}--findings-table.png"))


def test_a_respiratory_case_page_shows_units_and_flags(site):
    case = Case.objects.filter(cohort="respiratory", status=Case.Status.SUBMITTED).order_by("pk").first()
    assert case is not None
    Case.objects.filter(pk=case.pk).update(findings=case.findings | {"spo2": 0.93, "temperature_c": 38.2})
    page = site.login("demo-clinician")

    page.goto(f"/admin/cases/case/{case.pk}/change/")
    site.shoot(page, "respiratory-case-page")
    record = page.locator("fieldset", has=page.locator(".field-findings_table"))
    record.screenshot(path=str(SCREENSHOTS / f"{site.test_name}--findings-table.png"))

    rows = {row[0]: row for row in _findings_rows(page)}
    assert rows["Body temperature"] == ["Body temperature", "38.2", "°C", "30..44 °C", ""]
    assert rows["Oxygen saturation (pulse oximetry)"][1:] == ["0.93", "%", "50..100 %", "below expected range"]
    assert page.locator("label[for=id_finding_temperature_c]").inner_text() == "Body temperature (°C):"
