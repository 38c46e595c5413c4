"""The admin without dead ends or stale pages (issue 12): refusal pages keep the navigation, people
are named without links that would be refused, job pages tell their state."""

from __future__ import annotations

from cases.models import Case


def test_a_refused_page_keeps_the_admins_header_breadcrumbs_and_sidebar(site):
    page = site.login("demo-clinician")
    response = page.goto("/admin/training/trainingjob/")
    assert response is not None
    assert response.status == 403
    site.shoot(page, "refused-training-jobs")
    assert page.locator("#site-name").inner_text() == "Clinical diagnosis engine"
    assert page.locator(".breadcrumbs a", has_text="Home").count() == 1
    sidebar = page.locator("#nav-sidebar")
    assert sidebar.locator('a[href="/admin/cases/case/"]').count() >= 1
    assert "may not open this page" in page.locator("#content").inner_text()


def test_people_on_a_case_page_are_named_without_a_link_to_the_user_admin(site):
    case = Case.objects.filter(status=Case.Status.APPROVED).order_by("pk").first()
    assert case is not None
    page = site.login("demo-reviewer")
    page.goto(f"/admin/cases/case/{case.pk}/change/")
    site.shoot(page, "approved-case-people")
    assert page.locator('a[href^="/admin/auth/user/"]').count() == 0
    submitted_by = page.locator(".field-submitted_by_name .readonly").inner_text()
    assert submitted_by
    assert submitted_by != "—"
