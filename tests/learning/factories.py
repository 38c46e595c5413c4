"""Learning-loop test helpers: a policy version, written as a clinical lead would."""

from __future__ import annotations

from typing import Any

from learning.models import LearningPolicy
from learning_engine import roles
from tests.factories import user_with_role

RECIPE = [{"algorithm": "logistic_regression", "grid": {"C": [0.1, 1.0]}}]


def policy(model_type: Any, *, by: Any = None, **overrides: Any) -> LearningPolicy:
    """The next version of ``model_type``'s policy (checked by ``clean`` as the admin does)."""
    current = LearningPolicy.current(model_type)
    values: dict[str, Any] = {
        "model_type": model_type,
        "version": (current.version + 1) if current else 1,
        "reason": "Test policy.",
        "recipe": RECIPE,
        "created_by": by or user_with_role(roles.CLINICAL_LEAD),
    }
    values.update(overrides)
    made = LearningPolicy(**values)
    made.full_clean()
    made.save()
    return made


def pseudonyms(ids: Any) -> set[str]:
    """The patient pseudonyms of these case ids (locked sets and splits are drawn by patient)."""
    from cases.models import Case

    return set(Case.objects.filter(pk__in=list(ids)).values_list("patient_pseudonym", flat=True))
