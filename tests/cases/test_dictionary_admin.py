"""The admin of cohorts and dictionary versions: view, copy, edit a draft, publish; who may."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from cases.models import Cohort, DataDictionary, DictionaryTransition
from learning_engine import roles
from learning_engine.admin_helpers import CONFIRMED_VERSIONS_FIELD
from tests.cases.dictionary_factories import published_dictionary, small_definition

CHANGELIST = reverse("admin:cases_datadictionary_changelist")
ADD = reverse("admin:cases_datadictionary_add")
COHORTS = reverse("admin:cases_cohort_changelist")
READERS = (roles.CLINICIAN, roles.ML_ENGINEER, roles.CLINICAL_LEAD)
NOT_OWNERS = (roles.CLINICIAN, roles.ML_ENGINEER)

pytestmark = pytest.mark.django_db


def change_url(dictionary: DataDictionary) -> str:
    return reverse("admin:cases_datadictionary_change", args=[dictionary.pk])


@pytest.fixture
def published(lead) -> DataDictionary:
    return published_dictionary(by=lead)


@pytest.fixture
def draft(published, lead) -> DataDictionary:
    return published.copy(by=lead)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def edit_post(client, dictionary: DataDictionary, definition: Any, *, sha: str | None = None):
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return client.post(
        change_url(dictionary),
        {
            "definition": text,
            "expected_sha256": sha or dictionary.definition_sha256,
            "transitions-TOTAL_FORMS": "0",
            "transitions-INITIAL_FORMS": "0",
        },
    )


def action(client, name: str, dictionaries: list[DataDictionary], *, confirm: bool = True):
    data: dict[str, Any] = {"action": name, "index": "0", "_selected_action": [d.pk for d in dictionaries]}
    if confirm:
        data["post"] = "yes"
        data[CONFIRMED_VERSIONS_FIELD] = ",".join(f"{d.pk}:{d.definition_sha256}" for d in dictionaries)
    return client.post(CHANGELIST, data, follow=True)


# --- Viewing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", READERS)
def test_every_case_role_sees_the_versions_with_units_and_codes(staff, published, role):
    client, _ = staff(role)
    assert client.get(CHANGELIST).status_code == 200
    assert client.get(COHORTS).status_code == 200
    page = client.get(change_url(published)).content.decode()
    assert "Heart rate" in page
    assert "/min" in page
    assert "8867-4" in page
    assert "40..180" in page
    assert "J18.9</code> Pneumonia, unspecified organism" in page
    assert 'name="definition"' not in page  # published: read-only


def test_staff_without_a_role_are_refused(staff, published):
    client, _ = staff(None)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(published)).status_code == 403
    assert client.get(COHORTS).status_code == 403


def test_non_staff_are_sent_to_the_login(client, published, prediction_client):
    client.force_login(prediction_client)
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


# --- Copy, edit, publish (clinical lead) ---------------------------------------------------------


def test_copy_asks_first_then_makes_an_audited_draft(staff, published):
    client, lead = staff(roles.CLINICAL_LEAD)
    page = action(client, "copy_to_new_draft", [published], confirm=False)
    assert "Make a new draft" in page.content.decode()
    assert DataDictionary.objects.filter(cohort__slug="small").count() == 1
    action(client, "copy_to_new_draft", [published])
    copy = DataDictionary.objects.get(cohort__slug="small", version=2)
    assert copy.status == "draft"
    assert copy.based_on == published
    assert copy.transitions.get().actor == lead


def test_a_draft_is_edited_in_the_admin_with_an_audit_row(staff, draft):
    client, lead = staff(roles.CLINICAL_LEAD)
    assert 'name="definition"' in client.get(change_url(draft)).content.decode()
    changed = small_definition(demographics={"age": False, "sex": False})
    response = edit_post(client, draft, changed)
    assert response.status_code == 302, response.content.decode()[:2000]
    draft.refresh_from_db()
    assert draft.definition == changed
    assert [row.reason for row in draft.transitions.all()] == ["Copied from version 1.", "Edited."]
    assert draft.transitions.last().actor == lead


def test_a_bad_definition_is_a_form_error_beside_the_field(staff, draft):
    client, _ = staff(roles.CLINICAL_LEAD)
    bad = small_definition()
    bad["findings"][0]["loinc"] = "8867-5"
    response = edit_post(client, draft, bad)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["definition"] == ["At findings[0].loinc: '8867-5' fails the LOINC check digit."]
    page = response.content.decode()
    assert "fails the LOINC check digit" in page
    response = edit_post(client, draft, "{not json")
    assert "definition" in response.context["adminform"].form.errors
    draft.refresh_from_db()
    assert draft.definition == small_definition()


def test_an_edit_of_a_draft_changed_meanwhile_is_refused(staff, draft):
    client, _ = staff(roles.CLINICAL_LEAD)
    opened = draft.definition_sha256
    draft.edit(small_definition(demographics={"age": False, "sex": True}), by=None)
    response = edit_post(client, draft, small_definition(demographics={"age": False, "sex": False}), sha=opened)
    assert response.status_code == 200
    assert "Someone changed this draft" in response.content.decode()
    draft.refresh_from_db()
    assert draft.definition["demographics"] == {"age": False, "sex": True}


def test_publish_asks_first_then_freezes_the_version(staff, draft):
    client, lead = staff(roles.CLINICAL_LEAD)
    assert "Publish these versions?" in action(client, "publish_selected", [draft], confirm=False).content.decode()
    response = action(client, "publish_selected", [draft])
    assert "Published 1 data dictionary version." in messages_of(response)
    draft.refresh_from_db()
    assert draft.status == "published"
    assert draft.published_by == lead
    assert 'name="definition"' not in client.get(change_url(draft)).content.decode()
    assert edit_post(client, draft, small_definition(demographics={"age": False, "sex": False})).status_code == 403
    assert DictionaryTransition.objects.filter(dictionary=draft, to_state="published").count() == 1


def test_a_draft_edited_after_the_confirmation_page_is_not_published(staff, draft):
    client, _ = staff(roles.CLINICAL_LEAD)
    shown = DataDictionary.objects.get(pk=draft.pk)
    draft.edit(small_definition(demographics={"age": False, "sex": False}), by=None)
    response = action(client, "publish_selected", [shown])
    assert any("changed after the confirmation page" in text for text in messages_of(response))
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_a_clinical_lead_adds_a_cohort_and_a_draft(staff):
    client, lead = staff(roles.CLINICAL_LEAD)
    response = client.post(reverse("admin:cases_cohort_add"), {"slug": "new-cohort", "name": "New", "description": ""})
    assert response.status_code == 302
    cohort = Cohort.objects.get(slug="new-cohort")
    response = client.post(
        ADD,
        {
            "cohort": cohort.pk,
            "definition": json.dumps(small_definition()),
            "transitions-TOTAL_FORMS": "0",
            "transitions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    created = cohort.dictionaries.get()
    assert (created.version, created.status, created.created_by) == (1, "draft", lead)
    assert created.transitions.count() == 1


# --- Refusals for the other roles ----------------------------------------------------------------


@pytest.mark.parametrize("role", NOT_OWNERS)
def test_other_roles_can_neither_edit_copy_publish_nor_add(staff, draft, role):
    client, _ = staff(role)
    page = client.get(change_url(draft)).content.decode()
    assert 'name="definition"' not in page
    assert edit_post(client, draft, small_definition(demographics={"age": False, "sex": False})).status_code == 403
    assert client.get(ADD).status_code == 403
    assert client.get(reverse("admin:cases_cohort_add")).status_code == 403
    for name in ("publish_selected", "copy_to_new_draft"):
        action(client, name, [draft])
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert draft.definition == small_definition()
    assert DataDictionary.objects.filter(cohort__slug="small").count() == 2
    changelist = client.get(CHANGELIST).content.decode()
    assert "publish_selected" not in changelist
    assert "copy_to_new_draft" not in changelist


def test_nobody_deletes_versions_or_cohorts(staff, published):
    client, _ = staff(roles.CLINICAL_LEAD)
    delete = reverse("admin:cases_datadictionary_delete", args=[published.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert DataDictionary.objects.filter(pk=published.pk).exists()


# --- A version's page offers what applies (StateActionsMixin) ------------------------------------


def _change_form_actions(html: str) -> dict[str, str]:
    picker = re.search(r'<select name="CHANGE_FORM-action".*?</select>', html, re.S)
    return dict(re.findall(r'<option value="(\w+)"[^>]*>([^<]*)</option>', picker.group(0))) if picker else {}


def test_a_draft_page_offers_publish_in_the_singular_and_says_why_not_copy(staff, draft):
    client, _ = staff(roles.CLINICAL_LEAD)
    html = client.get(change_url(draft)).content.decode()
    assert _change_form_actions(html) == {"publish_selected": "Publish this version"}
    assert "Copy this version to a new draft: not offered, it is a draft: edit it here." in html


def test_a_published_page_offers_copy_only_and_says_why_not_publish(staff, published):
    client, _ = staff(roles.CLINICAL_LEAD)
    html = client.get(change_url(published)).content.decode()
    assert _change_form_actions(html) == {"copy_to_new_draft": "Copy this version to a new draft"}
    assert "Publish this version: not offered, it is already published." in html


def test_publish_posted_from_a_page_published_meanwhile_does_nothing_and_says_why(staff, draft):
    client, lead = staff(roles.CLINICAL_LEAD)
    draft.publish(by=lead)
    response = client.post(
        change_url(draft), {"CHANGE_FORM-action": "publish_selected", "_selected_action": [draft.pk]}, follow=True
    )
    assert "Nothing was done: Publish this version: it is already published." in messages_of(response)
    assert DictionaryTransition.objects.filter(dictionary=draft, to_state="published").count() == 1


def test_publishing_a_selection_with_a_published_version_skips_it_with_the_reason(staff, published, draft):
    client, _ = staff(roles.CLINICAL_LEAD)
    page = action(client, "publish_selected", [published, draft], confirm=False).content.decode()
    assert "will be skipped, it is already published" in page
    page = action(client, "publish_selected", [published], confirm=False).content.decode()
    assert 'value="Publish"' not in page  # nothing applies: no confirm button, the reason instead
