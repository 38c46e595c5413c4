"""From a training job created in the admin to an active model version, in the browser.

An ML engineer creates a job through the admin form and watches its page: the progress bar and
the loss curves update while the job trains (the page polls its live fragment) and the finished
page shows 100% with the loss chart drawn. The version the job registered is then approved and
activated by a clinical lead (another person: the two-person rule), each action through its
confirmation page.

The job runs in this process, through the worker's own task (``run_training_job``), in the test
thread. While it trains, the page's requests are held by a Playwright route (route handlers run
only while the test thread waits on the browser), so the server threads never touch the database
at the same time as the training: with SQLite's in-memory test database they share one
connection. The page is let through at a checkpoint halfway and at the end.
"""

from __future__ import annotations

from typing import Any

import pytest

from models_registry.models import ModelVersion
from training.models import TrainingJob
from training.tasks import run_training_job

EPOCHS = 10
HALFWAY = EPOCHS // 2
LOSS_CHART = 'svg[aria-label="Loss per epoch (log loss)"]'
PROGRESS_BAR = "#job-live progress.job-progress"


@pytest.fixture
def demo_cases() -> int:
    return 300  # the diagnosis model type needs 200 approved cases to train


def _run_action(page: Any, pk: int, action: str) -> None:
    """Tick one row of a changelist, choose the action and run it (the confirmation page follows)."""
    page.check(f'#result_list input.action-select[value="{pk}"]')
    page.select_option("#changelist-form select[name=action]", action)
    page.click("#changelist-form .actions button[name=index]")
    page.wait_for_selector("body.action-confirmation")


def _action_names(page: Any) -> set[str]:
    return set(page.eval_on_selector_all("select[name=action] option", "os => os.map(o => o.value)"))


def test_an_ml_engineer_trains_a_model_and_a_clinical_lead_approves_and_activates_it(site, monkeypatch):
    # --- The ML engineer creates the job through the admin form ----------------------------------
    engineer = site.login("demo-ml-engineer")
    engineer.goto("/admin/training/trainingjob/add/")
    engineer.select_option("#id_model_type", label="diagnosis")
    engineer.select_option("#id_algorithm", "sgd")
    engineer.fill("#id_epochs", str(EPOCHS))
    engineer.fill("#id_batch_size", "32")
    site.shoot(engineer, "1-job-form")
    engineer.click("input[name=_save]")

    engineer.wait_for_selector(".messagelist .success")
    job = TrainingJob.objects.get()
    assert engineer.locator(".messagelist .success").inner_text() == f"Job {job.pk} is queued (sgd)."
    assert job.status == TrainingJob.Status.QUEUED
    assert engineer.locator(PROGRESS_BAR).get_attribute("value") == "0.0"
    site.shoot(engineer, "2-job-queued")

    # --- A worker runs it (in this thread); the page follows its progress ------------------------
    engineer.route("**/*", lambda route: route.continue_())  # held while the test thread trains
    report_progress = TrainingJob.report_progress
    seen_midway: list[float] = []
    seen_heading: list[str] = []
    seen_attempts: list[str] = []
    seen_started: list[str] = []
    seen_heartbeat: list[str] = []

    def report_and_show(self: TrainingJob, **kwargs: Any) -> None:
        report_progress(self, **kwargs)
        epoch = kwargs.get("epoch") or {}
        if epoch.get("epoch") == HALFWAY:
            engineer.wait_for_function(
                "([selector, at]) => { const bar = document.querySelector(selector);"
                " return bar !== null && bar.value >= at - 0.1 && document.querySelector('#job-live svg') !== null; }",
                arg=[PROGRESS_BAR, kwargs["progress"]],
            )
            seen_midway.append(float(engineer.locator(PROGRESS_BAR).get_attribute("value") or 0))
            # Everything on the page moved together, without a reload: the status beside the
            # heading, the attempt, the start time and the heartbeat.
            seen_heading.append(engineer.locator("h2.job-heading .job-status").inner_text())
            seen_attempts.append(engineer.locator("#job-live .job-attempts").inner_text())
            seen_started.append(engineer.locator("#job-live .job-started").inner_text())
            seen_heartbeat.append(engineer.locator("#job-live .job-heartbeat").inner_text())
            site.shoot(engineer, "3-job-running")

    monkeypatch.setattr(TrainingJob, "report_progress", report_and_show)
    outcome = run_training_job.call(job.pk)
    monkeypatch.setattr(TrainingJob, "report_progress", report_progress)
    # A failure in the page checks above ends up in the job's error log (the task catches it).
    assert outcome["outcome"] == "completed", TrainingJob.objects.get(pk=job.pk).error_log
    assert seen_midway
    assert 0 < seen_midway[0] < 100
    assert seen_heading == ["Running"]
    assert seen_attempts == ["1 of 3"]
    assert seen_started[0] != "not yet"
    assert seen_heartbeat[0] != "—"

    # The page saw the job end and reloaded itself: the finished page, with its evaluation.
    engineer.wait_for_selector(".job-evaluation")
    site.shoot(engineer, "4-job-completed")
    assert engineer.locator("#job-live .job-status").inner_text() == "Completed"
    heading = engineer.locator("h2.job-heading").inner_text()
    assert "Completed" in heading
    assert "queued" not in heading.lower()
    assert "queued" not in engineer.locator(".breadcrumbs").inner_text().lower()
    # A completed job offers no Start, Cancel or Retry, and says why.
    assert engineer.locator("#trainingjob_form .actions select").count() == 0
    assert "Start this job: not offered, it is completed." in engineer.locator(".action-notes").inner_text()
    assert engineer.locator(PROGRESS_BAR).get_attribute("value") == "100.0"
    assert engineer.locator("#job-live .job-progress-text").inner_text() == "100%"
    loss_chart = engineer.locator(f"#job-live {LOSS_CHART}")
    assert loss_chart.is_visible()
    assert loss_chart.locator("polyline").count() == 2  # train and validation loss, one line each
    assert engineer.locator("#job-live .job-latest-metrics").is_visible()

    version = ModelVersion.objects.get(job=job)
    assert (version.approval_status, version.deployment_status) == ("pending", "inactive")

    # The engineer may look at the version but not approve or activate it.
    engineer.goto("/admin/models_registry/modelversion/")
    site.shoot(engineer, "5-versions-as-ml-engineer")
    assert not _action_names(engineer) & {"approve_selected", "activate_selected"}

    # --- The clinical lead approves it, then activates it ------------------------------------------
    lead = site.login("demo-clinical-lead")
    lead.goto("/admin/models_registry/modelversion/")
    site.shoot(lead, "6-versions-as-clinical-lead")
    assert {"approve_selected", "activate_selected"} <= _action_names(lead)

    _run_action(lead, version.pk, "approve_selected")
    site.shoot(lead, "7-approve-confirmation")
    assert lead.locator("h1").inner_text() == "Approve model versions"
    lead.fill("#id_note", "Evaluation, subgroups and curves reviewed in the browser test.")
    lead.click("#content-main form input[type=submit]")
    lead.wait_for_selector(".messagelist .success")
    site.shoot(lead, "8-approved")
    assert lead.locator(".messagelist .success").inner_text() == "Approved 1 model version."

    _run_action(lead, version.pk, "activate_selected")
    site.shoot(lead, "9-activate-confirmation")
    assert lead.locator("h1").inner_text() == "Activate model versions"
    lead.fill("#id_reason", "First diagnosis model, approved today.")
    lead.click("#content-main form input[type=submit]")
    lead.wait_for_selector(".messagelist .success")
    site.shoot(lead, "10-activated")
    assert lead.locator(".messagelist .success").inner_text() == "Activated 1 model version."

    version.refresh_from_db()
    assert (version.approval_status, version.deployment_status) == ("approved", "active")
    assert version.approved_by is not None
    assert version.approved_by.username == "demo-clinical-lead"

    lead.goto(f"/admin/models_registry/modelversion/{version.pk}/change/")
    site.shoot(lead, "11-active-version")
    assert lead.locator(".field-deployment_badge .version-deployment-active").is_visible()

    lead.goto("/admin/")
    site.shoot(lead, "12-index-with-active-model")
    overview = lead.locator(".app-registry-overview tr.registry-overview-row", has_text="diagnosis")
    assert overview.locator("a").inner_text() == version.version
