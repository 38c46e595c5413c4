"""The Content-Security-Policy in a real browser (issue 10 part 8): the admin's pages, a running
job's live page and Swagger UI work under it, and Chromium reports no violation."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from cases.models import Case
from tests.training.factories import ModelTypeFactory
from training.models import TrainingJob


def watch(page: Any, problems: list[str]) -> list[str]:
    """Collect the page's console errors and page errors, CSP violations among them, in ``problems``."""
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def test_admin_pages_run_under_the_policy_without_violations(site):
    page = site.login("demo-clinician")
    problems = watch(page, [])
    case = Case.objects.filter(status=Case.Status.SUBMITTED).first()
    assert case is not None
    engineer_user = site.users["demo-ml-engineer"]
    job = TrainingJob.submit(
        model_type=ModelTypeFactory.create(diagnosis=True), by=engineer_user, algorithm="logistic_regression"
    )
    job.start(worker_id="browser-test")

    for url in (
        reverse("admin:index"),
        reverse("admin:cases_case_changelist"),
        reverse("admin:cases_case_change", args=[case.pk]),
        reverse("admin:cases_case_statistics"),
    ):
        response = page.goto(url)
        assert response is not None
        assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
    site.shoot(page, "case-page-under-csp")

    # The admin's own scripts ran: the sidebar toggle and the action bar's select-all work.
    page.goto(reverse("admin:cases_case_changelist"))
    page.click("#action-toggle")
    assert page.locator("input.action-select:checked").count() >= 1

    engineer = site.login("demo-ml-engineer")
    watch(engineer, problems)
    engineer.goto(reverse("admin:index"))  # the registry's block and its styles
    live_requests: list[str] = []
    engineer.on("request", lambda request: live_requests.append(request.url) if "/live/" in request.url else None)
    engineer.goto(reverse("admin:training_trainingjob_change", args=[job.pk]))
    # live_refresh.js (loaded with the nonce) fetches the live block every two seconds.
    engineer.wait_for_timeout(4500)
    assert live_requests
    assert engineer.locator("[data-live-state]").count() == 1
    site.shoot(engineer, "running-job-under-csp")

    assert problems == []


def test_swagger_ui_renders_under_the_policy(site):
    page = site.page()
    problems = watch(page, [])

    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=30_000)
    site.shoot(page, "swagger-under-csp")

    assert problems == []
