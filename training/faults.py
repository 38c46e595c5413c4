"""Faulty training for the learning-loop simulation only: the seam through which a bad candidate
enters a learning cycle's real candidate step.

``benchmarks.bench_learning_loop`` registers a few names (shuffled labels, a subgroup made worse, a
miscalibrated model) in its own process; a policy's recipe can then name one, and the cycle's
training job runs it on the worker path like any algorithm: the trainer fits ``base`` (a real
algorithm of ``training.algorithms.SPECS``, whose hyperparameters it takes) on the rows ``rows``
returns, then lets ``fitted`` change the fitted classifier in place. The model stays a plain
scikit-learn pipeline, so it is saved, hash-checked, loaded and judged as every other.

Nothing registers a fault outside the benchmark: in the web server, a worker or a test that did not
ask, the names are unknown algorithms, refused by the API, the admin and a policy's recipe
(``training.algorithms.validate_hyperparameters``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

type Rows = Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    base: str
    rows: Callable[[Rows, Mapping[str, Any]], Rows] | None = None  # (train rows, hyperparameters)
    fitted: Callable[[Any, Mapping[str, Any]], None] | None = None  # (classifier, hyperparameters)


_registered: dict[str, Fault] = {}


def register(fault: Fault) -> None:
    """Make ``fault.name`` an algorithm in this process (a base that is no algorithm is refused when
    a job names it, by ``validate_hyperparameters``)."""
    _registered[fault.name] = fault


def unregister(name: str) -> None:
    _registered.pop(name, None)


def registered(algorithm: str) -> Fault | None:
    return _registered.get(algorithm)
