"""Each demo user signs in to the admin and sees only what the role may see."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cases.models import Case

# The admin index's links that tell the roles apart.
LINKS = {
    "cases": "/admin/cases/case/",
    "add case": "/admin/cases/case/add/",
    "case statistics": "/admin/cases/case/statistics/",
    "datasets": "/admin/training/datasetsnapshot/",
    "training jobs": "/admin/training/trainingjob/",
    "add training job": "/admin/training/trainingjob/add/",
    "model versions": "/admin/models_registry/modelversion/",
    "A/B tests": "/admin/models_registry/abtest/",
    "start A/B test": "/admin/models_registry/abtest/add/",
    "users": "/admin/auth/user/",
}
CLINICAL = frozenset({"cases", "add case", "case statistics"})
ML = frozenset({"cases", "case statistics", "datasets", "training jobs", "model versions", "A/B tests"})


@dataclass(frozen=True, slots=True)
class Role:
    username: str
    links: frozenset[str]
    sees_phi: bool


ROLES = [
    Role("demo-admin", frozenset(LINKS), sees_phi=True),
    Role("demo-clinician", CLINICAL, sees_phi=True),
    Role("demo-reviewer", CLINICAL, sees_phi=True),
    Role("demo-ml-engineer", ML | {"add training job", "start A/B test"}, sees_phi=False),
    Role("demo-clinical-lead", ML, sees_phi=False),
]


def _phi_values(case: Case) -> list[str]:
    """Raw values of the case that only PHI holders may ever receive."""
    patient = case.patient
    return [
        case.external_id,
        patient["name"],
        patient["mrn"],
        patient["phone"],
        patient["email"],
        patient["ssn"],
        patient["birth_date"],
    ]


@pytest.mark.parametrize("role", ROLES, ids=[role.username for role in ROLES])
def test_each_role_sees_only_its_own_part_of_the_admin(site, role):
    case = Case.objects.filter(status=Case.Status.APPROVED).order_by("pk").first()
    assert case is not None

    page = site.login(role.username)
    site.shoot(page, "index")
    shown = {name for name, href in LINKS.items() if page.locator(f'#content-main a[href="{href}"]').count()}
    assert shown == role.links

    page.goto("/admin/cases/case/")
    site.shoot(page, "case-list")
    assert page.locator("#result_list tbody tr").count() > 0
    assert (case.external_id in page.content()) is role.sees_phi

    page.goto(f"/admin/cases/case/{case.pk}/change/")
    site.shoot(page, "case-page")
    html = page.content()
    assert case.patient_pseudonym in page.inner_text("#content")  # everyone sees the de-identified case
    assert page.locator("table.case-findings").is_visible()  # the record in the dictionary's words
    if role.sees_phi:
        # The record as JSON, raw beside de-identified, is one click away (a collapsed section).
        page.locator("summary", has_text="Record as JSON").click()
        assert page.get_by_role("heading", name="Raw record (PHI)").is_visible()
        assert case.patient["name"] in page.inner_text(".case-record-compare")
    else:
        assert "Raw record" not in html
        leaked = [value for value in _phi_values(case) if value in html]
        assert leaked == [], f"{role.username} received raw patient fields: {leaked}"
        assert page.locator("text=De-identified record").first.is_visible()


def test_a_clinician_is_refused_the_training_pages(site):
    page = site.login("demo-clinician")
    response = page.goto("/admin/training/trainingjob/")
    assert response is not None
    assert response.status == 403
    site.shoot(page, "training-jobs-forbidden")


def test_the_prediction_client_gets_no_admin_at_all(site):
    page = site.login("demo-prediction-client", expect_admin=False)
    site.shoot(page, "login-refused")
    assert "/admin/login/" in page.url
    assert page.locator(".errornote").inner_text().startswith("Please enter the correct username and password")

    page.goto("/admin/cases/case/")
    assert "/admin/login/" in page.url  # not signed in: every admin page sends it back to the login
    assert page.locator("#result_list").count() == 0


def test_the_case_statistics_page_draws_its_charts_for_ml_staff(site):
    page = site.login("demo-ml-engineer")
    page.click('#content-main a[href="/admin/cases/case/statistics/"] >> nth=0')
    page.wait_for_selector("svg.bar-chart-svg")
    site.shoot(page, "case-statistics")
    histogram = page.locator('svg.bar-chart-svg[aria-label="Quality score histogram"]')
    assert histogram.is_visible()
    assert histogram.locator("rect").count() > 0
    approved = Case.objects.filter(status=Case.Status.APPROVED).count()
    assert page.locator("table", has=page.locator("caption", has_text="By status")).locator(
        "tr", has_text="Approved"
    ).inner_text().split()[-1] == str(approved)


def test_the_landing_page_and_the_admins_view_site_link_lead_somewhere(site):
    page = site.page()
    page.goto("/")
    assert page.locator("h1").first.inner_text() == "Self-learning clinical diagnosis engine"
    for name in ("Administration", "API documentation", "API", "Health check"):
        assert page.get_by_role("link", name=name, exact=True).count() == 1
    site.shoot(page, "landing")
    signed_in = site.login("demo-clinician")
    signed_in.get_by_role("link", name="View site").click()
    signed_in.wait_for_load_state()
    assert signed_in.url.rstrip("/") == site.url.rstrip("/")
    assert "Page not found" not in signed_in.content()
    site.shoot(signed_in, "view-site")


def test_the_privacy_officer_sees_only_the_phi_access_log(site):
    page = site.login("demo-privacy-officer")
    site.shoot(page, "privacy-officer-index")
    shown = {name for name, href in LINKS.items() if page.locator(f'#content-main a[href="{href}"]').count()}
    assert shown == set()
    page.click('#content-main a[href="/admin/cases/accesslogentry/"] >> nth=0')
    site.shoot(page, "access-log")
    assert page.locator("#changelist-filter").is_visible()
    assert page.locator('#changelist-filter input[name="case"]').is_visible()

    response = page.goto("/admin/cases/case/")
    assert response is not None
    assert response.status == 403
