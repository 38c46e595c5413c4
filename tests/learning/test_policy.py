"""The learning policy: every field checked with its message, versions never change."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from learning.models import LearningPolicy
from learning.models.policy import MAX_GRID_POINTS
from learning_engine.audit import AppendOnlyError
from tests.cases.dictionary_factories import published_dictionary
from tests.learning.factories import policy
from tests.training.factories import ModelTypeFactory

pytestmark = pytest.mark.django_db


def errors_of(model_type, **overrides) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        policy(model_type, **overrides)
    return caught.value.message_dict


def test_a_policy_version_is_append_only():
    made = policy(ModelTypeFactory.create())
    made.enabled = False
    with pytest.raises(AppendOnlyError):
        made.save()
    with pytest.raises(AppendOnlyError):
        made.delete()
    with pytest.raises(AppendOnlyError):
        LearningPolicy.objects.filter(pk=made.pk).update(enabled=False)


def test_the_current_policy_is_the_highest_version():
    model_type = ModelTypeFactory.create()
    policy(model_type)
    second = policy(model_type, non_inferiority_margin=0.01)
    assert LearningPolicy.current(model_type) == second
    assert second.version == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"non_inferiority_margin": -0.01}, "non_inferiority_margin"),
        ({"non_inferiority_margin": float("nan")}, "non_inferiority_margin"),
        ({"subgroup_margin": 0.6}, "subgroup_margin"),
        ({"max_calibration_error": 1.5}, "max_calibration_error"),
        ({"significance_level": 0.0}, "significance_level"),
        ({"significance_level": 0.3}, "significance_level"),
        ({"locked_fraction": 1.0}, "locked_fraction"),
        ({"trigger_drift_psi": -1.0}, "trigger_drift_psi"),
        ({"trigger_drift_psi": float("inf")}, "trigger_drift_psi"),
        ({"trigger_new_cases": 0}, "trigger_new_cases"),
        ({"trigger_every_days": 0}, "trigger_every_days"),
        ({"trigger_every_days": 10**10}, "trigger_every_days"),  # beyond timedelta's range
        ({"locked_renew_days": 10**10}, "locked_renew_days"),
        ({"locked_min_fresh_share": float("nan")}, "locked_min_fresh_share"),
        ({"locked_min_fresh_share": -0.1}, "locked_min_fresh_share"),
        ({"locked_min_fresh_share": 1.5}, "locked_min_fresh_share"),
        ({"test_mode": "split", "test_traffic_split": 1.0}, "test_traffic_split"),
        ({"test_duration_hours": 0}, "test_duration_hours"),
        ({"retry_after_hours": 0}, "retry_after_hours"),
        ({"recipe": []}, "recipe"),
        ({"recipe": [{"algorithm": "svm"}]}, "recipe"),
        # A benchmark's fault (training.faults) is no algorithm where nothing registered it.
        ({"recipe": [{"algorithm": "bench_shuffled_labels"}]}, "recipe"),
        ({"recipe": [{"algorithm": "logistic_regression", "grid": {"C": [-1.0]}}]}, "recipe"),
        ({"recipe": [{"algorithm": "logistic_regression", "grid": {"C": []}}]}, "recipe"),
        ({"recipe": [{"algorithm": "logistic_regression", "extra": 1}]}, "recipe"),
        ({"subgroups": ["postcode"]}, "subgroups"),
        ({"subgroups": "sex"}, "subgroups"),
    ],
)
def test_a_bad_field_is_refused_with_a_message_beside_it(overrides, field):
    errors = errors_of(ModelTypeFactory.create(), **overrides)
    assert list(errors) == [field]


def test_a_recipe_of_more_than_the_maximum_grid_points_is_refused():
    values = [0.1 * (i + 1) for i in range(MAX_GRID_POINTS + 1)]
    errors = errors_of(ModelTypeFactory.create(), recipe=[{"algorithm": "logistic_regression", "grid": {"C": values}}])
    assert "more than" in errors["recipe"][0]


def test_the_grid_is_every_combination_with_full_hyperparameters():
    made = policy(
        ModelTypeFactory.create(),
        recipe=[
            {"algorithm": "logistic_regression", "grid": {"C": [0.1, 1.0], "class_weight": ["none", "balanced"]}},
            {"algorithm": "gradient_boosting", "grid": {}},
        ],
    )
    grid = made.grid()
    assert len(grid) == 5
    assert grid[0] == ("logistic_regression", {"C": 0.1, "max_iter": 2000, "class_weight": "none", "seed": 0})
    assert grid[-1][0] == "gradient_boosting"
    assert grid[-1][1]["max_iter"] == 200


def test_a_symptom_subgroup_must_be_named_by_the_cohorts_dictionary_and_is_refused_by_position():
    dictionary = published_dictionary()
    model_type = ModelTypeFactory.create(cohort=dictionary.cohort.slug)
    symptom = sorted(dictionary.parsed.symptom_keys)[0]
    made = policy(model_type, subgroups=["sex", f"symptom:{symptom}"])
    assert made.judged_subgroups == ["sex", f"symptom:{symptom}"]
    errors = errors_of(model_type, subgroups=["sex", "symptom:<script>"])
    assert errors["subgroups"] == ["subgroups[1] names no symptom of the cohort's data dictionary."]


def test_no_subgroups_means_sex_and_age_band():
    assert policy(ModelTypeFactory.create()).judged_subgroups == ["sex", "age_band"]
