"""Names and units from the data dictionary, as a reader sees them (issue 11): the case list with
its diagnosis filter, the statistics page, a version's evaluation and an A/B test's page."""

from __future__ import annotations

PNEUMONIA = "Pneumonia, unspecified organism"


def test_the_case_list_and_its_filter_name_each_diagnosis(site):
    page = site.login("demo-reviewer")
    page.goto("/admin/cases/case/")
    site.shoot(page, "case-list")

    column = page.locator("#result_list td.field-diagnosis").first.inner_text()
    code = column.split()[0]
    assert len(column) > len(code) + 3, column  # the code with its name beside it
    options = page.locator("#changelist-filter").inner_text()
    assert f"J18.9 {PNEUMONIA}" in options or "J06.9 Acute upper respiratory infection" in options


def test_the_statistics_page_names_diagnoses_and_gives_findings_with_units(site):
    page = site.login("demo-ml-engineer")
    page.goto("/admin/cases/case/statistics/")
    site.shoot(page, "case-statistics")

    text = page.locator("#content-main").inner_text()
    assert "findings of respiratory" in text.lower()  # a caption (upper case in the admin's style)
    assert "Body temperature" in text
    assert "°C" in text
    assert "/min" in text


def test_a_version_page_names_both_axes_of_its_confusion_matrix(site):
    from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
    from training.models import ModelType

    model_type = ModelType.objects.get(slug="diagnosis")
    version = ModelVersionFactory.create(
        trained=True,
        dataset=ready_snapshot(model_type, by=site.users["demo-ml-engineer"]),
        created_by=site.users["demo-ml-engineer"],
    )
    page = site.login("demo-ml-engineer")
    page.goto(f"/admin/models_registry/modelversion/{version.pk}/change/")
    confusion = page.locator("table.confusion")
    confusion.scroll_into_view_if_needed()
    site.shoot(page, "version-confusion-matrix")

    assert PNEUMONIA in confusion.locator("thead").inner_text()
    assert PNEUMONIA in confusion.locator("tbody").inner_text()
