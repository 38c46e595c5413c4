"""What the live figures hand the sequential test: units of assignment from the prediction log."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from models_registry.experiments.figures import _observations
from models_registry.models import Feedback, Prediction
from tests.models_registry.experiments.factories import RIGHT, WRONG, log_arm, start_test

pytestmark = pytest.mark.django_db


def test_a_subject_seen_many_times_is_one_unit_with_its_share_right(running, engineer):
    # A: 4 subjects x 5 predictions, the first 12 rows right (index % 4 is the subject): 3 or 2 right each.
    log_arm(running, "a", predicted=20, labelled=20, correct=12, subjects=4, by=engineer)
    # B: 6 subjects of one prediction each, 4 right, and 2 requests without a subject key (1 right).
    log_arm(running, "b", predicted=6, labelled=6, correct=4, by=engineer)
    log_arm(running, "b", predicted=2, labelled=2, correct=1, unkeyed=True, by=engineer)

    observations = _observations(running)

    assert observations.a.tolist() == [3 / 5, 3 / 5, 3 / 5, 3 / 5]
    assert observations.b.tolist() == [1, 1, 1, 1, 0, 0, 1, 0]  # in order of first feedback
    figures = running.evaluate()
    assert (figures["statistics"]["units_a"], figures["statistics"]["units_b"]) == (4, 8)
    assert figures["arms"]["a"]["labelled"] == 20  # the per-arm counts stay per prediction


def test_the_order_is_that_of_each_units_first_feedback(running, engineer):
    made = log_arm(running, "a", predicted=3, by=engineer)
    # Feedback on the third prediction first, then the first, then the second.
    for prediction, code in ((made[2], WRONG), (made[0], RIGHT), (made[1], RIGHT)):
        Feedback.objects.create(prediction=prediction, diagnosis_code=code, correct=code == RIGHT, given_by=engineer)

    assert _observations(running).a.tolist() == [0.0, 1.0, 1.0]


def test_predictions_without_feedback_are_not_units(running, engineer):
    log_arm(running, "a", predicted=10, labelled=3, correct=3, by=engineer)
    assert len(_observations(running).a) == 3


def test_shadow_units_are_the_paired_differences_per_subject(pair, engineer):
    test = start_test(*pair, by=engineer, mode="shadow", traffic_split=0.0)
    # One subject with three requests: A right on all three, B on the first only; one unkeyed request
    # where only B is right; one request without feedback.
    subject = hashlib.sha256(b"s1").hexdigest()
    answered = log_arm(test, "a", predicted=3, labelled=3, correct=3, subjects=1, by=engineer)
    Prediction.objects.filter(pk__in=[p.pk for p in answered]).update(subject_pseudonym=subject)
    unkeyed = log_arm(test, "a", predicted=1, labelled=1, correct=0, unkeyed=True, by=engineer)
    silent = log_arm(test, "a", predicted=1, by=engineer)  # no feedback
    codes = [RIGHT, WRONG, WRONG, WRONG, RIGHT]  # the unkeyed truth is WRONG: B says so, A did not
    for answered_row, code in zip([*answered, *unkeyed, *silent], codes, strict=True):
        Prediction.objects.create(
            model_type_id=test.model_type_id,
            version=test.version_b,
            arm="b",
            ab_test=test,
            shadow_of=answered_row,
            input_sha256="0" * 64,
            predicted_code=code,
            probabilities={code: 1.0},
            latency_ms=1.0,
            requested_by=engineer,
        )

    observations = _observations(test)

    assert observations.paired.tolist() == pytest.approx([(1 - 3) / 3, 1.0])
    figures = test.evaluate()
    assert figures["statistics"]["blocks"] == 2
    assert figures["srm"]["p_value"] is None
    assert np.isclose(figures["shadow"]["only_b_correct"], 1)
