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


def test_a_dataset_page_leads_to_its_file_and_to_a_job_on_it(site):
    from tests.models_registry.registry.factories import ready_snapshot
    from training.models import ModelType

    model_type = ModelType.objects.get(slug="diagnosis")
    snapshot = ready_snapshot(model_type, by=site.users["demo-ml-engineer"])
    page = site.login("demo-ml-engineer")
    page.goto(f"/admin/training/datasetsnapshot/{snapshot.pk}/change/")
    site.shoot(page, "dataset-page")
    link = page.locator("a.dataset-download")
    assert link.get_attribute("href") == f"/admin/training/datasetsnapshot/{snapshot.pk}/download/"
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename.startswith(f"dataset-{snapshot.pk}-")

    page.click("a.dataset-train")
    page.wait_for_selector("#trainingjob_form")
    site.shoot(page, "train-on-dataset-form")
    assert page.locator("#id_dataset").input_value() == str(snapshot.pk)
    assert page.locator("#id_model_type").input_value() == str(model_type.pk)


def test_a_version_page_shows_its_model_type_evaluation_and_compare_with(site):
    from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
    from training.models import ModelType

    model_type = ModelType.objects.get(slug="diagnosis")
    engineer = site.users["demo-ml-engineer"]
    snapshot = ready_snapshot(model_type, by=engineer)
    first = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    second = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5})
    page = site.login("demo-clinical-lead")
    page.goto(f"/admin/models_registry/modelversion/{second.pk}/change/")
    site.shoot(page, "version-page")
    assert page.locator("#content h2").first.inner_text().startswith(f"{model_type.name} (diagnosis) {second.version}")
    assert page.locator("table.confusion").is_visible()
    assert page.locator("table.per-class").is_visible()
    assert page.locator('svg[aria-label^="Reliability diagram"]').is_visible()
    offered = page.eval_on_selector_all(
        "#version-form-actions option, #modelversion_form select option", "os => os.map(o => o.textContent)"
    )
    assert "Approve this version" in offered
    assert "Approve selected versions" not in offered

    page.select_option("#compare-with", str(first.pk))
    page.click("form.version-compare-with button")
    page.wait_for_selector(".registry-verdict")
    site.shoot(page, "compare-from-version")
    assert f"a={second.pk}" in page.url
    assert f"b={first.pk}" in page.url


def test_the_case_list_fits_a_1400_pixel_window_without_hidden_columns(site):
    for username in ("demo-clinician", "demo-ml-engineer"):
        page = site.login(username)
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto("/admin/cases/case/")
        site.shoot(page, f"case-list-1400-{username}")
        overflow = page.evaluate(
            "() => ({page: document.documentElement.scrollWidth,"
            " table: document.querySelector('#result_list').getBoundingClientRect().right,"
            " box: document.querySelector('#changelist .results').clientWidth,"
            " inner: document.querySelector('#changelist .results').scrollWidth})"
        )
        assert overflow["page"] <= 1400, (username, overflow)
        assert overflow["inner"] <= overflow["box"], (username, overflow)  # no column scrolled out of sight
        assert overflow["table"] <= 1400, (username, overflow)


ROLES = ("demo-admin", "demo-clinician", "demo-ml-engineer", "demo-clinical-lead")


def test_every_page_the_admin_index_links_to_opens_for_its_role(site):
    """Each role's admin index: every list and add page it links to opens (no 403, no 500), with a
    screenshot per page for a reviewer to scroll through."""
    from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
    from training.models import ModelType

    # One of each ML object (a ready dataset, a completed job, its version and records) to open.
    snapshot = ready_snapshot(ModelType.objects.get(slug="diagnosis"), by=site.users["demo-ml-engineer"])
    ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=site.users["demo-ml-engineer"])
    for username in ROLES:
        page = site.login(username)
        links = page.eval_on_selector_all(
            "#content-main a[href^='/admin/']", "as => [...new Set(as.map(a => a.getAttribute('href')))]"
        )
        assert links, username
        site.shoot(page, f"{username}-index")
        for href in links:
            response = page.goto(href)
            assert response is not None
            assert response.status < 400, (username, href, response.status)
            site.shoot(page, f"{username}{href.replace('/', '-')}")
            # The first object of a list: its page opens too, and links no person to a refused page.
            first = page.locator("#result_list tbody tr th a, #result_list tbody tr td.field-id a").first
            if href.endswith("/") and "/add/" not in href and first.count():
                target = first.get_attribute("href")
                opened = page.goto(target)
                assert opened is not None
                assert opened.status < 400, (username, target, opened.status)
                site.shoot(page, f"{username}{target.replace('/', '-')}")
                if username != "demo-admin":
                    assert page.locator('#content-main a[href^="/admin/auth/user/"]').count() == 0, (username, target)


def test_a_building_dataset_page_shows_its_stage_live_and_its_final_state_without_a_reload(site, settings, tmp_path):
    from training.datasets import build_snapshot, create_snapshot
    from training.models import ModelType

    settings.MEDIA_ROOT = tmp_path / "media"
    ModelType.objects.filter(slug="diagnosis").update(min_cases_to_train=10)
    model_type = ModelType.objects.get(slug="diagnosis")
    snapshot = create_snapshot(model_type, by=site.users["demo-ml-engineer"], min_quality=0.0, seed=11)
    page = site.login("demo-ml-engineer")
    page.goto(f"/admin/training/datasetsnapshot/{snapshot.pk}/change/")
    page.evaluate("window.__notReloaded = true")
    assert page.locator("#dataset-live .dataset-status").inner_text() == "Building"

    snapshot.heartbeat("Writing", 1234, 5000)
    page.wait_for_function(
        "() => document.querySelector('#dataset-live .dataset-progress').textContent.includes('1,234 of 5,000')"
    )
    site.shoot(page, "dataset-building")
    assert page.locator("#dataset-live .dataset-stage").inner_text() == "Writing"

    build_snapshot(snapshot.pk)
    page.wait_for_function("() => document.querySelector('#dataset-live .dataset-status').textContent === 'Ready'")
    site.shoot(page, "dataset-built-live")
    assert page.evaluate("window.__notReloaded") is True  # the panel changed in place
    assert page.locator("h2.job-heading").inner_text() == "Dataset 1: diagnosis Ready".replace("1", str(snapshot.pk), 1)
    assert page.locator("#dataset-live .dataset-cases").inner_text() != "—"
    assert page.locator("#dataset-live table.composition").is_visible()
    assert page.locator("#dataset-live a.dataset-download").is_visible()
    page.wait_for_timeout(2500)  # polling has stopped: the final panel stays
    assert page.evaluate("window.__notReloaded") is True
