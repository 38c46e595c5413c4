"""The policy and locked-set admin pages through the HTTP client: who may see, write and never delete."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from learning.models import LearningPolicy
from learning_engine import roles
from tests.learning.factories import RECIPE, policy
from tests.training.factories import ModelTypeFactory
from training.models import LockedEvaluationSet

pytestmark = pytest.mark.django_db

POLICIES = reverse("admin:learning_learningpolicy_changelist")
ADD = reverse("admin:learning_learningpolicy_add")
LOCKED = reverse("admin:training_lockedevaluationset_changelist")


def form(model_type, **changes: Any) -> dict[str, Any]:
    import json

    values = {
        "model_type": model_type.pk,
        "enabled": "on",
        "reason": "First plan, agreed at the governance meeting.",
        "trigger_new_cases": "200",
        "trigger_on_degradation": "on",
        "trigger_drift_psi": "0.25",
        "trigger_every_days": "",
        "retry_after_hours": "24",
        "recipe": json.dumps(RECIPE),
        "min_evaluation_cases": "200",
        "non_inferiority_margin": "0.02",
        "significance_level": "0.05",
        "subgroups": "[]",
        "subgroup_margin": "0.05",
        "min_subgroup_cases": "30",
        "max_calibration_error": "0.1",
        "locked_fraction": "0.2",
        "locked_max_cases": "2000",
        "locked_renew_days": "",
        "locked_min_fresh_share": "0.5",
        "test_mode": "shadow",
        "test_traffic_split": "0.1",
        "test_duration_hours": "336",
        "test_min_labelled_per_arm": "100",
        "test_approval": "policy",
        "rollback_action": "propose",
    }
    values.update(changes)
    return values


def test_a_clinical_lead_writes_version_one_and_an_edit_is_version_two_beside_it(staff):
    client, lead = staff(roles.CLINICAL_LEAD)
    model_type = ModelTypeFactory.create()
    assert client.post(ADD, form(model_type)).status_code == 302
    first = LearningPolicy.objects.get()
    assert (first.version, first.created_by, first.trigger_new_cases) == (1, lead, 200)

    change = reverse("admin:learning_learningpolicy_change", args=[first.pk])
    response = client.post(
        change, form(model_type, non_inferiority_margin="0.01", reason="Tighter margin."), follow=True
    )
    assert response.status_code == 200
    assert "Saved as version 2" in response.content.decode()
    versions = list(LearningPolicy.objects.order_by("version").values_list("version", "non_inferiority_margin"))
    assert versions == [(1, 0.02), (2, 0.01)]


def test_a_bad_value_is_shown_beside_its_field_and_nothing_is_saved(staff):
    client, _lead = staff(roles.CLINICAL_LEAD)
    model_type = ModelTypeFactory.create()
    response = client.post(ADD, form(model_type, non_inferiority_margin="0.9", recipe='[{"algorithm": "svm"}]'))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"non_inferiority_margin", "recipe"}
    assert not LearningPolicy.objects.exists()


def test_an_ml_engineer_reads_policies_but_cannot_write_one(staff):
    model_type = ModelTypeFactory.create()
    made = policy(model_type)
    client, _engineer = staff(roles.ML_ENGINEER)
    change = reverse("admin:learning_learningpolicy_change", args=[made.pk])
    assert client.get(POLICIES).status_code == 200
    assert client.get(change).status_code == 200
    assert client.get(ADD).status_code == 403
    assert client.post(change, form(model_type)).status_code == 403
    assert LearningPolicy.objects.count() == 1


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.PRIVACY_OFFICER, roles.PREDICTION_CLIENT, None])
def test_other_roles_see_neither_policies_nor_locked_sets(staff, role):
    made = policy(ModelTypeFactory.create())
    client, _user = staff(role)
    for url in (POLICIES, ADD, reverse("admin:learning_learningpolicy_change", args=[made.pk]), LOCKED):
        assert client.get(url).status_code == 403, url


def test_nobody_deletes_a_policy_version_not_even_a_superuser(client, make_user):
    made = policy(ModelTypeFactory.create())
    client.force_login(make_user(None, is_staff=True, is_superuser=True))
    delete = reverse("admin:learning_learningpolicy_delete", args=[made.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert LearningPolicy.objects.filter(pk=made.pk).exists()


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_locked_sets_are_read_only_for_the_roles_that_see_them(staff, role):
    model_type = ModelTypeFactory.create()
    locked = LockedEvaluationSet.objects.create(model_type=model_type, cohort=model_type.cohort, case_ids=[1, 2])
    client, _user = staff(role)
    assert client.get(LOCKED).status_code == 200
    page = client.get(reverse("admin:training_lockedevaluationset_change", args=[locked.pk]))
    assert page.status_code == 200
    assert client.get(reverse("admin:training_lockedevaluationset_add")).status_code == 403
    delete = reverse("admin:training_lockedevaluationset_delete", args=[locked.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
