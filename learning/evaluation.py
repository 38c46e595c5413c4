"""The champion and a candidate answering the locked evaluation set, judged by the envelope.

Slow work (reading cases, loading two artifacts, predicting): callers run it outside any
transaction and lock nothing meanwhile. Only de-identified data is read: each locked case's
de-identified record (``Case.deidentified``) as a dataset row (``cases.rows.row_from_record``), the
same row a snapshot's file would hold. A case retracted since the set was locked is left out (the
count criterion then sees the smaller set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cases.models import Case
from cases.rows import row_from_record
from learning.envelope import Paired, Result, judge
from learning.locked import seen_in_training
from learning.models.policy import SYMPTOM_SUBGROUP, LearningPolicy
from models_registry.models import ModelVersion
from training.evaluation import predict_rows
from training.models import LockedEvaluationSet


def _label(record: Mapping[str, Any], label_field: str) -> Any:
    value: Any = record
    for part in label_field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def locked_rows(locked: LockedEvaluationSet) -> list[dict[str, Any]]:
    """The locked set's cases as dataset rows, in case id order (approved cases only)."""
    label_field = locked.model_type.label_field
    rows = []
    cases = Case.objects.filter(pk__in=locked.case_ids, status=Case.Status.APPROVED).order_by("pk")
    for pk, record in cases.values_list("pk", "deidentified").iterator(chunk_size=2000):
        if not record:
            continue
        row = row_from_record(record, case_id=pk, split="locked")
        row["label"] = _label(record, label_field)
        if row["label"] in (None, ""):
            continue
        row["label"] = str(row["label"])
        rows.append(row)
    return rows


def subgroup_values(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in fields:
        if name.startswith(SYMPTOM_SUBGROUP):
            key = name.removeprefix(SYMPTOM_SUBGROUP)
            groups[name] = ["present" if key in (row.get("symptoms") or []) else "absent" for row in rows]
        else:
            groups[name] = [str(row.get(name) if row.get(name) not in (None, "") else "unknown") for row in rows]
    return groups


def paired(
    champion: ModelVersion, candidate: ModelVersion, locked: LockedEvaluationSet, policy: LearningPolicy
) -> Paired:
    """Both versions' answers on the locked cases (artifacts checked and audited as the registry loads them)."""
    rows = locked_rows(locked)
    answers = []
    for version in (champion, candidate):
        artifact = version.load_artifact(purpose="learning")
        answers.append(predict_rows(artifact.pipeline, rows, numeric_features=artifact.numeric_features))
    champion_answers, candidate_answers = answers
    return Paired(
        truth=[str(row["label"]) for row in rows],
        champion=champion_answers.y_pred,
        candidate=candidate_answers.y_pred,
        candidate_probabilities=np.asarray(candidate_answers.probabilities, dtype=np.float64).reshape(
            len(rows), len(candidate_answers.classes)
        ),
        candidate_classes=candidate_answers.classes,
        groups=subgroup_values(rows, policy.judged_subgroups),
        seen_in_training=seen_in_training(locked, champion.dataset, candidate.dataset),
    )


def judge_versions(
    champion: ModelVersion, candidate: ModelVersion, locked: LockedEvaluationSet, policy: LearningPolicy
) -> Result:
    """The envelope of ``policy`` for ``candidate`` against ``champion`` on ``locked``."""
    return judge(paired(champion, candidate, locked, policy), policy.terms())
