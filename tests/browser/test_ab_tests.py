"""An A/B test in the admin: an ML engineer sets it up, a clinical lead reads it and concludes it.

The two versions come from the registry's factories (A active, B approved, both of the demo
diagnosis type); the predictions and clinicians' feedback are logged as the serving path writes
them (``log_arm``), B right far more often than A, so the live decision is ``ship_b``.
"""

from __future__ import annotations

from models_registry.models import ABTest
from training.models import ModelType


def test_an_ml_engineer_sets_up_an_ab_test_and_a_clinical_lead_reads_and_concludes_it(site):
    from tests.models_registry.experiments.factories import log_arm, version_pair

    engineer_user, lead_user = site.users["demo-ml-engineer"], site.users["demo-clinical-lead"]
    a, b = version_pair(engineer=engineer_user, lead=lead_user, model_type=ModelType.objects.get(slug="diagnosis"))

    # --- The ML engineer sets the test up through the start form ---------------------------------
    engineer = site.login("demo-ml-engineer")
    engineer.goto("/admin/models_registry/abtest/add/")
    engineer.select_option("#id_model_type", label="diagnosis")
    engineer.select_option("#id_version_a", str(a.pk))
    engineer.select_option("#id_version_b", str(b.pk))
    engineer.select_option("#id_mode", "split")
    engineer.fill("#id_traffic_split", "0.5")
    engineer.fill("#id_duration_hours", "24")
    engineer.fill("#id_min_labelled_per_arm", "100")
    site.shoot(engineer, "1-start-form")
    engineer.click("#content-main input[type=submit][value='Start the test']")

    engineer.wait_for_selector(".messagelist .success")
    test = ABTest.objects.get()
    assert test.status == ABTest.Status.RUNNING
    assert (test.version_a_id, test.version_b_id, test.traffic_split) == (a.pk, b.pk, 0.5)
    site.shoot(engineer, "2-started")
    assert engineer.locator(".messagelist .success").inner_text().startswith("Started")

    # Predictions are served and clinicians confirm or correct them: B is right 90% of the time, A 60%.
    log_arm(test, "a", predicted=300, labelled=300, correct=180, by=engineer_user)
    log_arm(test, "b", predicted=300, labelled=300, correct=270, by=engineer_user)

    # --- The clinical lead reads the test's figures ---------------------------------------------
    lead = site.login("demo-clinical-lead")
    lead.goto("/admin/models_registry/abtest/")
    site.shoot(lead, "3-tests-as-clinical-lead")
    assert lead.locator('a[href="/admin/models_registry/abtest/add/"]').count() == 0  # engineers set tests up
    lead.click(f'#result_list a[href="/admin/models_registry/abtest/{test.pk}/change/"]')

    lead.wait_for_selector(".ab-figures")
    site.shoot(lead, "4-test-page")
    assert lead.locator(".ab-decision strong").inner_text() == "Ship B: the candidate is more accurate"
    arms = lead.locator(".ab-figures table.registry-compare").first.locator("tbody tr")
    assert arms.count() == 2
    assert arms.nth(0).locator("td.num").all_inner_texts()[3:6] == ["300", "180", "60.0%"]
    assert arms.nth(1).locator("td.num").all_inner_texts()[3:6] == ["300", "270", "90.0%"]
    chart = lead.locator(".ab-figures svg.line-chart-svg")
    assert chart.is_visible()
    assert chart.locator("polyline, circle").count() > 0

    # --- ... and concludes it through the confirmation page: B is promoted ----------------------
    lead.select_option("#abtest_form .actions select", "conclude_selected")
    lead.click("#abtest_form .actions button[name=index]")
    lead.wait_for_selector("body.action-confirmation")
    site.shoot(lead, "5-conclude-confirmation")
    assert "current decision: Ship B" in lead.locator(".confirm-action-objects li").inner_text()
    lead.fill("#id_reason", "B is clearly better on confirmed diagnoses.")
    lead.click("#content-main form input[type=submit]")

    lead.wait_for_selector(".messagelist .success")
    site.shoot(lead, "6-concluded")
    assert lead.locator(".messagelist .success").inner_text() == "Concluded 1 A/B test."
    test.refresh_from_db()
    b.refresh_from_db()
    assert (test.status, test.decision, test.promoted) == ("concluded", "ship_b", True)
    assert test.concluded_by == lead_user
    assert b.deployment_status == "active"
    # Back on the test's page: its final state and conclusion, not live figures.
    assert lead.locator(".ab-figures h2").inner_text() == "Final figures (when the test ended)"
    assert "was promoted and became the active version" in lead.locator(".ab-decision").inner_text()
    assert "Current decision" not in lead.locator("#content").inner_text()
    assert lead.locator("#abtest_form .actions select").count() == 0  # nothing to stop or conclude

    lead.goto("/admin/")
    site.shoot(lead, "7-index-with-b-active")
    overview = lead.locator(".app-registry-overview tr.registry-overview-row", has_text="diagnosis")
    assert overview.locator("a").inner_text() == b.version
