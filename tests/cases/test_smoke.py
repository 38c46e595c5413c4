from __future__ import annotations

import pytest

from tests.cases.factories import CaseFactory


@pytest.mark.django_db
def test_factory_builds_each_state():
    assert CaseFactory().status == "submitted"
    approved = CaseFactory(approved=True)
    assert approved.status == "approved"
    assert approved.deidentified["patient_pseudonym"] == approved.patient_pseudonym
    assert CaseFactory(rejected=True).status == "rejected"
    assert CaseFactory(retracted=True).status == "retracted"
