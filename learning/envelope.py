"""The acceptance envelope: a candidate judged against the champion on the locked evaluation set.

Pure functions over paired predictions (the same cases, in the same order, for both models); the
learning cycle (``learning.evaluation``) gathers them. Every criterion reports its figure, its
bound and whether it holds; the envelope holds only when every criterion does. The criteria:

- ``evaluation_cases``: the locked set holds at least ``min_evaluation_cases`` cases.
- ``unseen``: no locked case's patient is in either model's training data (train or validation
  split); the dataset builder's exclusion makes this 0, the check proves it for the two models.
- ``non_inferiority``: the one-sided ``1 - alpha`` lower bound of accuracy(candidate) minus
  accuracy(champion) lies above ``-margin``. The bound is the registry's exact paired interval
  (``models_registry.registry.compare.paired_accuracy_interval``: Clopper-Pearson on the discordant
  pairs, projected), taken two-sided at ``1 - 2 alpha``; it agrees with McNemar's exact test, whose
  p-value is reported beside it. Conservative: its coverage is at least the nominal level.
- ``subgroup:<field>=<value>``: for every value of each judged subgroup field (sex, age band, a
  symptom the dictionary names) with at least ``min_subgroup_cases`` cases, the candidate's
  accuracy is at most ``subgroup_margin`` below the champion's. Smaller subgroups are listed as not
  judged (``passed`` None): too few cases to tell anything.
- ``calibration``: the candidate's expected calibration error (10 equal-width bins of the top
  label's probability, ``training.evaluation.calibration``) is at most ``max_calibration_error``.

Boundaries: a figure exactly on its bound passes for the subgroup and calibration criteria (at
most the margin, at most the bound) and for the case count (at least the minimum); the
non-inferiority bound must lie strictly above ``-margin`` (a bound on the margin has not excluded
the inferiority the margin names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models_registry.registry.compare import McNemar, mcnemar, paired_accuracy_interval
from training.evaluation import calibration

# Figures are compared after rounding away float noise (an accuracy of 0.9 - 0.85 is 0.04999...).
_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Terms:
    """The envelope's terms, copied from a policy version (``LearningPolicy.terms``)."""

    min_evaluation_cases: int
    non_inferiority_margin: float
    significance_level: float
    subgroup_margin: float
    min_subgroup_cases: int
    max_calibration_error: float
    subgroups: tuple[str, ...] = ("sex", "age_band")


@dataclass(frozen=True, slots=True)
class Paired:
    """Both models' answers on the locked cases: labels as text, the candidate's probabilities
    (columns in ``classes`` order) and each case's subgroup values (``{field: [value per case]}``)."""

    truth: Sequence[str]
    champion: Sequence[str]
    candidate: Sequence[str]
    candidate_probabilities: np.ndarray
    candidate_classes: Sequence[str]
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    seen_in_training: int = 0


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    figure: float | None
    bound: float | None
    passed: bool | None  # None: reported, not judged
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figure": self.figure,
            "bound": self.bound,
            "passed": self.passed,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Result:
    criteria: tuple[Criterion, ...]
    test: McNemar | None

    @property
    def passed(self) -> bool:
        return all(criterion.passed is not False for criterion in self.criteria)

    def failed(self) -> list[str]:
        return [criterion.name for criterion in self.criteria if criterion.passed is False]

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed(),
            "criteria": [criterion.as_dict() for criterion in self.criteria],
            "mcnemar": self.test.as_dict() if self.test is not None else None,
        }


def judge(paired: Paired, terms: Terms) -> Result:
    """Every criterion of ``terms`` on ``paired``; the envelope holds when none fails."""
    n = len(paired.truth)
    if not (len(paired.champion) == len(paired.candidate) == n == len(paired.candidate_probabilities)):
        raise ValueError("The paired predictions must cover the same cases.")
    criteria = [
        Criterion(
            "evaluation_cases",
            float(n),
            float(terms.min_evaluation_cases),
            n >= terms.min_evaluation_cases,
            f"{n} locked cases; at least {terms.min_evaluation_cases} needed.",
        ),
        Criterion(
            "unseen",
            float(paired.seen_in_training),
            0.0,
            paired.seen_in_training == 0,
            f"{paired.seen_in_training} locked case(s) of patients in either model's training data.",
        ),
    ]
    if n == 0:
        return Result(tuple(criteria), None)
    truth = np.asarray(paired.truth, dtype=object)
    champion_correct = np.asarray(paired.champion, dtype=object) == truth
    candidate_correct = np.asarray(paired.candidate, dtype=object) == truth
    criteria.append(_non_inferiority(champion_correct, candidate_correct, terms))
    test = mcnemar(champion_correct, candidate_correct)
    for name in terms.subgroups:
        criteria.extend(_subgroups(name, paired.groups.get(name), champion_correct, candidate_correct, terms))
    criteria.append(_calibration(paired, truth, terms))
    return Result(tuple(criteria), test)


def non_inferiority_bound(champion_correct: np.ndarray, candidate_correct: np.ndarray, *, alpha: float) -> float:
    """The one-sided ``1 - alpha`` lower bound of accuracy(candidate) - accuracy(champion)."""
    test = mcnemar(champion_correct, candidate_correct)
    return float(paired_accuracy_interval(test, confidence=1 - 2 * alpha)[0])


def _non_inferiority(champion_correct: np.ndarray, candidate_correct: np.ndarray, terms: Terms) -> Criterion:
    difference = float(candidate_correct.mean() - champion_correct.mean())
    low = non_inferiority_bound(champion_correct, candidate_correct, alpha=terms.significance_level)
    return Criterion(
        "non_inferiority",
        low,
        -terms.non_inferiority_margin,
        low > -terms.non_inferiority_margin + _TOLERANCE,
        f"Accuracy difference {difference:+.4f} (candidate - champion); one-sided "
        f"{1 - terms.significance_level:.0%} lower bound {low:+.4f} against -{terms.non_inferiority_margin:g}.",
    )


def _subgroups(
    name: str,
    values: Sequence[str] | None,
    champion_correct: np.ndarray,
    candidate_correct: np.ndarray,
    terms: Terms,
) -> list[Criterion]:
    if values is None:
        return [Criterion(f"subgroup:{name}", None, None, None, "No values on the locked set.")]
    column = np.asarray([str(value) for value in values], dtype=object)
    found = []
    for value in sorted(set(column.tolist())):
        member = column == value
        size = int(member.sum())
        label = f"subgroup:{name}={value}"
        difference = float(candidate_correct[member].mean() - champion_correct[member].mean())
        if size < terms.min_subgroup_cases:
            found.append(Criterion(label, difference, -terms.subgroup_margin, None, f"{size} cases: too few to judge."))
            continue
        found.append(
            Criterion(
                label,
                difference,
                -terms.subgroup_margin,
                difference >= -terms.subgroup_margin - _TOLERANCE,
                f"{size} cases: accuracy {candidate_correct[member].mean():.4f} against the champion's "
                f"{champion_correct[member].mean():.4f}.",
            )
        )
    return found


def _calibration(paired: Paired, truth: np.ndarray, terms: Terms) -> Criterion:
    classes = [str(label) for label in paired.candidate_classes]
    position = {label: index for index, label in enumerate(classes)}
    # A true label the candidate never learned is an error at whatever confidence it gave.
    true_index = np.asarray([position.get(str(label), -1) for label in truth], dtype=np.int64)
    scores = np.asarray(paired.candidate_probabilities, dtype=np.float64)
    ece = float(calibration(true_index, scores, resamples=1)["ece"])
    return Criterion(
        "calibration",
        ece,
        terms.max_calibration_error,
        ece <= terms.max_calibration_error + _TOLERANCE,
        f"Expected calibration error {ece:.4f} (10 bins); at most {terms.max_calibration_error:g}.",
    )
