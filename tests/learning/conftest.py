"""The learning loop's world: a model type with an active champion trained on synthetic rows, a
policy, and a locked evaluation set of synthetic rows no model trained on."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import pytest

from learning import evaluation
from learning_engine import roles
from models_registry.models import ModelVersion
from tests.learning.factories import policy
from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot, rows_by_split
from tests.training.factories import ModelTypeFactory
from training.models import DatasetSnapshot, LockedEvaluationSet, ModelType


@dataclass
class World:
    model_type: ModelType
    engineer: Any
    lead: Any
    champion: ModelVersion
    dataset: DatasetSnapshot
    locked: LockedEvaluationSet
    locked_rows: list[dict[str, Any]]

    def policy(self, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "min_evaluation_cases": 100,
            "min_subgroup_cases": 20,
            "non_inferiority_margin": 0.05,
            "subgroup_margin": 0.10,
            "max_calibration_error": 0.25,
        }
        values.update(overrides)
        return policy(self.model_type, by=self.lead, **values)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    original = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    yield tmp_path
    tempfile.tempdir = original


@pytest.fixture
def world(db, media, make_user, monkeypatch) -> World:
    engineer = make_user(roles.ML_ENGINEER)
    lead = make_user(roles.CLINICAL_LEAD)
    model_type = ModelTypeFactory.create(min_cases_to_train=8)
    # Synthetic case ids far above any real case of a test, so its manifest names none of them.
    first = ready_snapshot(model_type, by=engineer, seed=1, first_id=100_000)
    champion = ModelVersionFactory.create(
        trained=True, approved=True, dataset=first, created_by=engineer, approved_by=lead
    )
    champion.activate(by=lead, reason="Production.")
    champion.refresh_from_db()
    # The locked cases: synthetic rows of patients neither model trains on (ids far from the snapshots').
    splits = rows_by_split(seed=77, first_id=50_000)
    rows = [row for split in splits.values() for row in split]
    locked = LockedEvaluationSet.objects.create(
        model_type=model_type, cohort=model_type.cohort, case_ids=[], case_count=len(rows)
    )
    monkeypatch.setattr(evaluation, "locked_rows", lambda locked_set: [dict(row, split="locked") for row in rows])
    monkeypatch.setattr("learning.cycles.current_locked_set", lambda model_type, policy: locked)
    return World(model_type, engineer, lead, champion, first, locked, rows)
