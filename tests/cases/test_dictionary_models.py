"""Cohorts and dictionary versions: drafts, edits, publishing, copies, the audit trail."""

from __future__ import annotations

import pytest

from cases.models import Cohort, DataDictionary, DictionaryTransition
from learning_engine.exceptions import InvalidRequest, TransitionError
from tests.cases.dictionary_factories import small_definition

pytestmark = pytest.mark.django_db


@pytest.fixture
def cohort():
    return Cohort.objects.create(slug="small", name="Small")


def test_drafts_get_consecutive_versions_and_an_audit_row(cohort, lead):
    first = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    second = first.copy(by=lead)
    assert (first.version, second.version) == (1, 2)
    assert second.based_on == first
    assert second.definition == first.definition
    assert second.status == DataDictionary.Status.DRAFT
    trail = list(DictionaryTransition.objects.filter(dictionary=second).values_list("to_state", "reason", "actor"))
    assert trail == [("draft", "Copied from version 1.", lead.pk)]


def test_a_bad_definition_makes_no_version(cohort, lead):
    with pytest.raises(InvalidRequest) as caught:
        DataDictionary.create_draft(cohort, small_definition(diagnoses=[]), by=lead)
    assert caught.value.code == "invalid_definition"
    assert caught.value.extra["path"] == "diagnoses"
    assert not DataDictionary.objects.filter(cohort=cohort).exists()


def test_a_draft_is_edited_with_an_audit_row_and_unchanged_edits_write_nothing(cohort, lead):
    draft = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    changed = small_definition(demographics={"age": False, "sex": False})
    assert draft.edit(changed, by=lead) is True
    draft.refresh_from_db()
    assert draft.definition == changed
    assert draft.edit(changed, by=lead) is False
    assert [row.reason for row in draft.transitions.all()] == ["Created.", "Edited."]


def test_publish_freezes_the_version(cohort, lead):
    draft = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    draft.publish(by=lead)
    draft.refresh_from_db()
    assert draft.status == "published"
    assert draft.published_by == lead
    assert draft.published_at
    assert cohort.current_dictionary() == draft
    with pytest.raises(TransitionError, match="copy it to a new draft"):
        draft.edit(small_definition(demographics={"age": False, "sex": False}), by=lead)
    with pytest.raises(TransitionError):
        draft.publish(by=lead)
    assert [(row.from_state, row.to_state) for row in draft.transitions.all()] == [
        ("", "draft"),
        ("draft", "published"),
    ]


def test_a_stale_copy_cannot_edit_a_version_published_meanwhile(cohort, lead):
    draft = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    stale = DataDictionary.objects.get(pk=draft.pk)
    draft.publish(by=lead)
    with pytest.raises(TransitionError, match="changed meanwhile"):
        stale.edit(small_definition(demographics={"age": False, "sex": False}), by=lead)
    draft.refresh_from_db()
    assert draft.definition == small_definition()
    assert draft.transitions.count() == 2  # no audit row for the refused edit


def test_a_stale_copy_cannot_publish_content_it_did_not_see(cohort, lead):
    draft = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    stale = DataDictionary.objects.get(pk=draft.pk)
    draft.edit(small_definition(demographics={"age": False, "sex": False}), by=lead)
    with pytest.raises(TransitionError):
        stale.publish(by=lead)
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_the_current_dictionary_is_the_newest_published_version(cohort, lead):
    first = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    first.publish(by=lead)
    first.copy(by=lead)  # a draft: not current
    assert cohort.current_dictionary() == first
