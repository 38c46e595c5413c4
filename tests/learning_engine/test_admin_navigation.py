"""No dead ends in the admin (issue 12.1): person links only for who may open users, and refusal
pages inside the admin's navigation."""

from __future__ import annotations

from django.urls import reverse

from learning_engine import roles
from tests.training.test_admin import ready_dataset, submit


def _user_links(html: str) -> int:
    return html.count('href="/admin/auth/user/')


def test_a_job_page_names_its_creator_without_a_link_for_who_cannot_open_users(client, make_user, model_type):
    owner = make_user(roles.ML_ENGINEER, username="mlowner", first_name="Grace", last_name="Hopper")
    job = submit(model_type, owner)
    engineer = make_user(roles.ML_ENGINEER, is_staff=True)
    client.force_login(engineer)
    response = client.get(reverse("admin:training_trainingjob_change", args=[job.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Grace Hopper" in html
    assert _user_links(html) == 0


def test_a_superuser_still_gets_the_link_to_the_person(admin_client, make_user, model_type):
    owner = make_user(roles.ML_ENGINEER, username="mlowner")
    job = submit(model_type, owner)
    html = admin_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    assert f'href="/admin/auth/user/{owner.pk}/change/"' in html


def test_the_audit_trail_names_its_actors_without_links(client, make_user, model_type):
    owner = make_user(roles.ML_ENGINEER, username="builder", first_name="Ada", last_name="Lovelace")
    dataset = ready_dataset(model_type, owner)
    lead = make_user(roles.CLINICAL_LEAD, is_staff=True)
    client.force_login(lead)
    html = client.get(reverse("admin:training_datasetsnapshot_change", args=[dataset.pk])).content.decode()
    assert "Ada Lovelace" in html
    assert _user_links(html) == 0


def test_a_refused_admin_page_keeps_the_header_breadcrumbs_and_sidebar(client, make_user):
    clinician = make_user(roles.CLINICIAN, is_staff=True)
    client.force_login(clinician)
    response = client.get(reverse("admin:auth_user_changelist"))
    html = response.content.decode()
    assert response.status_code == 403
    assert 'id="header"' in html
    assert "Clinical diagnosis engine" in html
    assert 'class="breadcrumbs"' in html
    assert 'id="nav-sidebar"' in html
    assert reverse("admin:cases_case_changelist") in html  # the sidebar lists what the clinician may open
    assert "may not open this page" in html


def test_a_refused_api_call_still_answers_json(client, make_user):
    client.force_login(make_user(roles.CLINICIAN, is_staff=True))
    response = client.get("/api/v1/training/jobs/")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_every_project_admin_names_people_and_targets_without_dead_links():
    """Each admin of the engine's own apps takes ``RelatedLinksMixin`` (person and target links only
    for readers who may open them; oversized id lookups refused): a new app's admin that forgets it
    fails here, not in a reader's browser (the monitoring, learning, alerts and CDS Hooks pages did)."""
    from django.conf import settings
    from django.contrib import admin

    from learning_engine.admin_links import RelatedLinksMixin

    project_apps = {name.split(".")[0] for name in settings.INSTALLED_APPS if not name.startswith("django")}
    project_apps &= {"cases", "training", "models_registry", "monitoring", "learning", "alerts", "cds_hooks"}
    missing = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if model.__module__.split(".")[0] in project_apps and not isinstance(model_admin, RelatedLinksMixin)
    ]
    assert len(project_apps) == 7
    assert missing == []
