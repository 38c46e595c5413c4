from __future__ import annotations

import pytest

from tests.cases.factories import CaseFactory


@pytest.mark.django_db
def test_factory_builds_each_state():
    assert CaseFactory.create().status == "submitted"
    approved = CaseFactory.create(approved=True)
    assert approved.status == "approved"
    assert approved.deidentified is not None
    assert approved.deidentified["patient_pseudonym"] == approved.patient_pseudonym
    assert CaseFactory.create(rejected=True).status == "rejected"
    assert CaseFactory.create(retracted=True).status == "retracted"
