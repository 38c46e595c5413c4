"""A clinician reviews cases in the admin: an action, its confirmation page, then the messages."""

from __future__ import annotations

from cases.models import Case, CaseTransition


def _submitted_case() -> Case:
    case = Case.objects.filter(status=Case.Status.SUBMITTED, submitted_by__username="demo-clinician").first()
    assert case is not None, "the demo review leaves some cases submitted"
    return case


def test_a_second_clinician_approves_a_case_through_the_confirmation_page(site):
    case = _submitted_case()
    page = site.login("demo-reviewer")

    page.goto("/admin/cases/case/?status__exact=submitted")
    site.shoot(page, "submitted-cases")
    page.check(f'#result_list input.action-select[value="{case.pk}"]')
    page.select_option("#changelist-form select[name=action]", "approve_selected")
    page.click("#changelist-form .actions button[name=index]")

    page.wait_for_selector("body.action-confirmation")
    site.shoot(page, "confirmation")
    assert page.locator("h1").inner_text() == "Approve cases"
    assert page.locator(".confirm-action-objects li").all_inner_texts() == [str(case)]
    page.fill("#id_note", "Findings and diagnosis agree; approved in the browser test.")
    page.click("#content-main input[type=submit][value=Approve]")

    page.wait_for_selector(".messagelist .success")
    site.shoot(page, "approved")
    assert page.locator(".messagelist .success").inner_text() == "Approved 1 case."
    case.refresh_from_db()
    assert case.status == Case.Status.APPROVED
    assert case.reviewed_by is not None
    assert case.reviewed_by.username == "demo-reviewer"
    audit = CaseTransition.objects.filter(case=case).order_by("-created_at", "-id").first()
    assert audit is not None
    assert (audit.to_state, audit.reason) == ("approved", "Findings and diagnosis agree; approved in the browser test.")

    page.goto(f"/admin/cases/case/{case.pk}/change/")
    site.shoot(page, "approved-case")
    assert "Approved" in page.locator(".field-status .readonly").inner_text()


def test_the_submitter_is_not_offered_approve_on_their_own_case_and_is_told_why(site):
    case = _submitted_case()
    page = site.login("demo-clinician")

    page.goto(f"/admin/cases/case/{case.pk}/change/")
    site.shoot(page, "own-case")
    offered = page.eval_on_selector_all("#case_form .actions select option", "os => os.map(o => o.value)")
    assert "approve_selected" not in offered
    assert "reject_selected" not in offered
    assert (
        page.locator(".action-notes")
        .inner_text()
        .startswith("Approve this case: not offered, you submitted or last edited it; another clinician must review it")
    )
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED


def test_the_confirmation_page_offers_no_button_when_no_selected_case_can_be_approved(site):
    case = _submitted_case()
    page = site.login("demo-clinician")

    page.goto("/admin/cases/case/?status__exact=submitted")
    page.check(f'#result_list input.action-select[value="{case.pk}"]')
    page.select_option("#changelist-form select[name=action]", "approve_selected")
    page.click("#changelist-form .actions button[name=index]")

    page.wait_for_selector("body.action-confirmation")
    site.shoot(page, "nothing-applies")
    listed = page.locator(".confirm-action-objects li").inner_text()
    assert listed == (
        f"{case}: will be skipped, you submitted or last edited it; another clinician must review it (four-eyes rule)"
    )
    assert page.locator("#content-main input[type=submit]").count() == 0
