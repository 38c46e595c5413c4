"""Answering: predict a batch of checked inputs with a route's arms and log one ``Prediction`` each.

The arm is chosen per record (``models_registry.serving.router``), each record is checked against its
arm's dictionary version (``models_registry.serving.inputs``), and in a shadow A/B test B predicts
the same inputs afterwards, logged and never returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from learning_engine.sqlite_writers import queued_write
from models_registry.serving.inputs import DictionaryCheck, PredictionInput, RecordRefused

if TYPE_CHECKING:
    from learning_engine.actors import Actor

logger = logging.getLogger(__name__)

# A layer above serving watches the inputs each version answers (monitoring tallies them per version
# and A/B arm): a callback this layer declares and the higher one fills in from AppConfig.ready(),
# so serving never imports it. Called with ``(arm, rows)`` per arm that predicted (its
# ``version_id``, ``name`` and ``ab_test_id``, and the de-identified rows), it works out what to
# record and returns a writer (or None), which ``serve`` runs inside the log rows' transaction.
# For the answering arms that work is done before the transaction, so that SQLite's write lock is
# not held while it runs; a shadow arm's inputs are known only inside it. A failure is logged and
# never reaches the answer or its log row.
InputWriter = Callable[[], None]
InputObserver = Callable[[list[tuple[Any, list[dict[str, Any]]]]], InputWriter | None]
_INPUT_OBSERVERS: list[InputObserver] = []


def register_input_observer(observer: InputObserver) -> None:
    """Add ``observer`` (once: ``ready()`` may run again in tests) to the watchers of served inputs."""
    if observer not in _INPUT_OBSERVERS:
        _INPUT_OBSERVERS.append(observer)


def _observe(groups: list[tuple[Any, list[PredictionInput]]]) -> list[InputWriter]:
    """The observers' writers for ``groups`` (a failure propagates to the caller)."""
    rows = [(arm, [item.row for item in inputs]) for arm, inputs in groups if inputs]
    if not rows:
        return []
    writers = [observer(rows) for observer in _INPUT_OBSERVERS]
    return [writer for writer in writers if writer is not None]


class _ObserverFailed(Exception):
    """An input observer raised; ``__cause__`` is what it raised."""


def serve(
    route: Any,
    inputs: list[PredictionInput],
    *,
    by: Actor,
    started: float,
    fallback: Callable[[], DictionaryCheck | None] | None = None,
    extra_writes: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Predict ``inputs`` with ``route``'s arms, log one ``Prediction`` each, return the answers.

    Each input is first checked against its arm's dictionary check (the loaded model's, else
    ``fallback()``: the cohort's current version, ``dictionary_check``); the first refused one
    raises ``RecordRefused`` with its ``index``, before anything is predicted or logged.
    ``started`` is the request's ``time.perf_counter()`` at entry: the logged latency runs from
    there to the probabilities (for a batch, divided by its size). One INSERT for the whole batch
    (``PredictionQuerySet.log``). In a shadow test, B then predicts the same inputs and its rows
    are logged in a second INSERT, pointing at the answered ones; the answers are A's alone.
    ``extra_writes``, if given, runs first inside the log's transaction (a caller's own rows in the
    same commit); what it raises rolls the transaction back and propagates, nothing logged.
    """
    from models_registry.serving.model_cache import MODEL_CACHE
    from models_registry.serving.models import Prediction

    by_arm: dict[Any, list[int]] = {}
    arms = [route.choose(subject=item.subject_pseudonym) for item in inputs]
    for index, arm in enumerate(arms):
        by_arm.setdefault(arm, []).append(index)
    checks = {arm: _check_of(MODEL_CACHE.get(arm), fallback) for arm in by_arm}
    inputs = list(inputs)
    for index, arm in enumerate(arms):  # in record order: the first refused record is reported
        check = checks[arm]
        if check is not None:
            try:
                inputs[index] = inputs[index].check(check)
            except RecordRefused as refused:
                refused.index = index
                raise

    now = timezone.now()
    rows: list[tuple[Any, ...]] = [()] * len(inputs)
    answers: list[dict[str, Any]] = [{}] * len(inputs)
    for arm, indices in by_arm.items():
        model = MODEL_CACHE.get(arm)
        probabilities = model.probabilities([inputs[i].row for i in indices])
        latency_ms = (time.perf_counter() - started) * 1000 / len(indices)
        best = probabilities.argmax(axis=1).tolist()
        classes, arm_name = model.classes, arm.name or None
        check = _check_of(model, fallback)
        for index, row_best, row_probabilities in zip(indices, best, probabilities.tolist(), strict=True):
            code = classes[row_best]
            by_class = dict(zip(classes, row_probabilities, strict=True))
            item = inputs[index]
            rows[index] = _log_row(route, arm, item, code, by_class, latency_ms, by=by, now=now)
            diagnosis = {"code": code, "label": model.label(code)}
            if check is not None:
                diagnosis["display_name"] = check.diagnosis_name(code)
            answers[index] = {
                "model_type": route.slug,
                "model_version": arm.version,
                "arm": arm_name,
                "diagnosis": diagnosis,
                "probabilities": by_class,
                **item.checked,
            }

    # The observers' work for the answering arms, before the transaction (a failure costs only it).
    writers: list[InputWriter] = []
    observing = bool(_INPUT_OBSERVERS)
    if observing:
        try:
            writers = _observe([(arm, [inputs[i] for i in indices]) for arm, indices in by_arm.items()])
        except Exception:
            logger.exception("An input observer failed on %s inputs.", len(inputs))
            observing = False

    def write(observe: bool) -> list[int]:
        # One transaction for the log rows and the observers' tallies: one commit (one disk flush,
        # one turn of SQLite's write lock) per request instead of one per INSERT. It commits before
        # the answer is returned, so every answered prediction's log row is durable (README).
        with queued_write(Prediction.objects.db), transaction.atomic():
            if extra_writes is not None:
                extra_writes()
            ids = Prediction.objects.log(rows)
            shadow = route.shadow
            shadowed: list[PredictionInput] = []
            if shadow is not None:
                shadowed = _predict_in_shadow(route, shadow, inputs, ids, by=by, now=now, fallback=fallback)
            if observe:
                try:
                    for writer in [*writers, *(_observe([(shadow, shadowed)]) if shadowed else [])]:
                        writer()
                except Exception as failure:
                    raise _ObserverFailed from failure  # rolls back this transaction: written again below
        return ids

    # A failing observer never costs the answer or its log row. No savepoint around the observers
    # (two statements per request): the whole transaction is rolled back and the log rows written
    # again without them, which also holds on PostgreSQL, where a failed statement spoils the
    # transaction it ran in.
    try:
        ids = write(observe=observing)
    except _ObserverFailed as failed:
        logger.error("An input observer failed on %s inputs.", len(inputs), exc_info=failed.__cause__)
        ids = write(observe=False)
    return [{"id": pk, **answer} for pk, answer in zip(ids, answers, strict=True)]


def check_of(model: Any, fallback: Callable[[], DictionaryCheck | None] | None) -> DictionaryCheck | None:
    """The dictionary check a loaded model's records pass (for callers outside ``serve``: the CDS
    Hooks service reads the findings it asks the record system for from it)."""
    return _check_of(model, fallback)


def _check_of(model: Any, fallback: Callable[[], DictionaryCheck | None] | None) -> DictionaryCheck | None:
    """The dictionary check of a loaded model's version, else the fallback's (the cohort's current)."""
    check: DictionaryCheck | None = model.check
    if check is None and fallback is not None:
        from models_registry.serving.model_cache import finding_inputs

        check = fallback()
        if check is not None:
            check = check.reading(finding_inputs(model.numeric_features))
    return check


def _log_row(
    route: Any,
    arm: Any,
    item: PredictionInput,
    code: str,
    by_class: dict[str, float],
    latency_ms: float,
    *,
    by: Actor,
    now: Any,
    shadow_of: int | None = None,
) -> tuple[Any, ...]:
    """One row of the prediction log, in ``LOG_COLUMNS`` order."""
    return (
        route.model_type_id,
        arm.version_id,
        arm.name,
        arm.ab_test_id,
        shadow_of,
        item.subject_pseudonym,
        item.input_sha256,
        code,
        by_class,
        latency_ms,
        by.pk,
        now,
    )


def _predict_in_shadow(
    route: Any,
    arm: Any,
    inputs: list[PredictionInput],
    answered: list[int],
    *,
    by: Actor,
    now: Any,
    fallback: Callable[[], DictionaryCheck | None] | None = None,
) -> list[PredictionInput]:
    """B's silent predictions of the answered inputs: logged, compared later, never returned; the
    inputs B predicted (none when it failed).

    Only the inputs B's own dictionary version takes (its check, as for an answering arm): a record
    B's version refuses is not one it would have answered. Best effort: the answers are A's and
    are already logged, so a failure here (B's artifact refused, say) costs the comparison of
    these requests, never the answers.
    """
    from models_registry.serving.model_cache import MODEL_CACHE
    from models_registry.serving.models import Prediction

    try:
        started = time.perf_counter()
        model = MODEL_CACHE.get(arm)
        check = _check_of(model, fallback)
        if check is not None:
            taken = [position for position, item in enumerate(inputs) if _takes(check, item)]
            inputs, answered = [inputs[i] for i in taken], [answered[i] for i in taken]
            if not inputs:
                return []
        probabilities = model.probabilities([item.row for item in inputs])
        latency_ms = (time.perf_counter() - started) * 1000 / len(inputs)
        best = probabilities.argmax(axis=1).tolist()
        rows = [
            _log_row(
                route,
                arm,
                item,
                model.classes[row_best],
                dict(zip(model.classes, row_probabilities, strict=True)),
                latency_ms,
                by=by,
                now=now,
                shadow_of=answered_id,
            )
            for item, answered_id, row_best, row_probabilities in zip(
                inputs, answered, best, probabilities.tolist(), strict=True
            )
        ]
        Prediction.objects.log(rows)
    except Exception:
        logger.exception("Shadow predictions of %s %s failed; the answers were given.", route.slug, arm.version)
        return []
    return inputs


def _takes(check: DictionaryCheck, item: PredictionInput) -> bool:
    try:
        item.check(check)
    except RecordRefused:
        return False
    return True
