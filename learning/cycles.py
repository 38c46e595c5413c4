"""Opening and advancing learning cycles (``learning.models.LearningCycle``).

``open_cycle`` claims the model type's one open slot (the conditional unique constraint: of two
triggers at once, one opens a cycle and the other gets None). ``advance`` takes one step from the
cycle's state and returns; it never waits for training. The periodic task
(``learning.tasks.run_learning_cycles``) and ``manage.py learning_cycle`` call it.

Concurrency policy: no lock is held while anything slow runs (building, training, loading
artifacts and predicting the locked set). Each step does its slow reading first, then one short
transaction that claims the cycle on the status it read (``LearningCycle.move``: a conditional
UPDATE) together with the step's side effects (jobs submitted, versions approved or archived, the
A/B test started): when two processes advance the same cycle, the loser's claim fails and its
transaction, side effects included, rolls back. Locks taken inside (the model type row by the
registry and the A/B test) follow the registry's order.

What a candidate must get through before anyone meets it: chosen on the validation split, then the
envelope on the locked set; only then approved (in the policy author's name when the policy
pre-authorises it, else by a clinical lead) and tested. A candidate outside the envelope, and every
candidate not chosen, is archived at once: archived versions are never served, tested or activated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from alerts.events import EventType, emit, safe_label
from learning import triggers
from learning.evaluation import judge_versions
from learning.locked import apply_renewal, current_locked_set, prepare_renewal
from learning.models import CycleTransition, LearningCycle, LearningPolicy
from learning.system import loop_user
from learning_engine.exceptions import DomainError, TransitionError
from models_registry.experiments.models import ABTest
from models_registry.experiments.stats import Decision
from models_registry.models import ModelVersion
from training.models import DatasetSnapshot, LockedEvaluationSet, ModelType, TrainingJob

if TYPE_CHECKING:
    from learning_engine.actors import SystemActor

logger = logging.getLogger(__name__)
Status = LearningCycle.Status


class CycleRefused(DomainError):
    """A cycle cannot be opened (no policy, a paused one, no champion, one open already): 409."""

    code = "learning_cycle_refused"


def open_cycle(
    model_type: ModelType,
    *,
    trigger: str,
    detail: dict[str, Any] | None = None,
    by: SystemActor = None,
    kind: str = LearningCycle.Kind.CANDIDATE,
) -> LearningCycle | None:
    """A new cycle of ``model_type`` under its current policy, or None if one is open already.

    Raises ``CycleRefused`` when the policy is missing or paused, or there is no champion (an
    active version) to judge a candidate against; for a rollback, no previous version.
    """
    policy = LearningPolicy.current(model_type)
    if policy is None:
        raise CycleRefused(f"{model_type.slug} has no learning policy.", code="no_policy")
    if not policy.enabled:
        raise CycleRefused(f"{policy} is disabled.", code="policy_disabled")
    champion = triggers.champion_of(model_type)
    if champion is None:
        raise CycleRefused(f"{model_type.slug} has no active version to improve on.", code="no_champion")
    candidate = None
    status = Status.WAITING_FOR_DATASET
    if kind == LearningCycle.Kind.ROLLBACK:
        candidate = triggers.previous_version(model_type, champion)
        if candidate is None:
            raise CycleRefused(
                f"{model_type.slug} has no previous version to roll back to.", code="no_previous_version"
            )
        status = Status.EVALUATING
    try:
        with transaction.atomic():
            cycle = LearningCycle.objects.create(
                model_type=model_type,
                policy=policy,
                kind=kind,
                trigger=trigger,
                trigger_detail=detail or {},
                status=status,
                champion=champion,
                candidate=candidate,
                created_by=by,
            )
            cycle.transitions.create(actor=by, from_state="", to_state=status, reason=f"Trigger: {trigger}.")
    except IntegrityError:
        return None  # another cycle of the model type is open (or opened at this moment)
    return cycle


@dataclass(frozen=True, slots=True)
class Opening:
    """What the periodic task would open now: ``kind`` None for nothing, with ``waiting`` saying why
    when a trigger fired but the back-off holds it (``triggers.backoff``)."""

    kind: str | None
    check: triggers.Check | None = None
    waiting: str = ""


def plan_opening(model_type: ModelType, policy: LearningPolicy) -> Opening:
    """The periodic task's decision for an enabled policy with no open cycle; opens nothing.

    A degraded champion gets a rollback cycle first when the guard is on and a previous version
    can serve (never held by the back-off: it protects patients, it does not retrain); otherwise a
    fired trigger opens a candidate cycle unless the back-off holds it.
    """
    checks = [check for check in triggers.evaluate(model_type, policy) if check.fired]
    if not checks:
        return Opening(None)
    first = checks[0]
    degraded = next((check for check in checks if check.trigger == LearningCycle.Trigger.DEGRADATION), None)
    if degraded is not None and policy.rollback_action != LearningPolicy.RollbackAction.OFF:
        champion = triggers.champion_of(model_type)
        if triggers.previous_version(model_type, champion) is not None:
            return Opening(LearningCycle.Kind.ROLLBACK, degraded)
        if not policy.trigger_on_degradation:
            checks = [check for check in checks if check is not degraded]
            if not checks:
                return Opening(None)
            first = checks[0]
    held = triggers.backoff(model_type, policy)
    if held is not None:
        return Opening(None, first, held.text)
    return Opening(LearningCycle.Kind.CANDIDATE, first)


def open_cycle_if_triggered(model_type: ModelType) -> LearningCycle | None:
    """The periodic task's check: open the cycle ``plan_opening`` names, if any.

    Raises ``CycleRefused`` (code ``backing_off``) when a trigger fired but the back-off holds it,
    so the task can say why no cycle opened.
    """
    policy = LearningPolicy.current(model_type)
    if (
        policy is None
        or not policy.enabled
        or LearningCycle.objects.filter(model_type=model_type, status__in=LearningCycle.OPEN).exists()
    ):
        return None
    opening = plan_opening(model_type, policy)
    if opening.waiting:
        raise CycleRefused(f"{model_type.slug}: {opening.waiting}", code="backing_off")
    if opening.kind is None or opening.check is None:
        return None
    return open_cycle(model_type, trigger=opening.check.trigger, detail=opening.check.detail, kind=opening.kind)


# --- Advancing -----------------------------------------------------------------------------------


def advance(cycle: LearningCycle) -> str:
    """One step of ``cycle``; returns its status afterwards. A step another process took first, or
    a cycle no longer open, is left as it is."""
    cycle = LearningCycle.objects.select_related("model_type", "policy", "champion", "candidate", "dataset").get(
        pk=cycle.pk
    )
    if not cycle.is_open:
        return cycle.status
    step = _STEPS[cycle.status]
    try:
        step(cycle)
    except TransitionError:
        logger.info("Learning cycle %s moved meanwhile; step skipped.", cycle.pk)
    except DomainError as exc:
        # The step's transaction rolled back, but the claim had already set the new status on this
        # copy: read the row again so the failure is claimed on the status the row really has.
        cycle.refresh_from_db()
        _fail(cycle, f"{exc.code}: {exc.message}")
    cycle.refresh_from_db()
    return cycle.status


def _fail(cycle: LearningCycle, reason: str) -> None:
    logger.warning("Learning cycle %s failed: %s", cycle.pk, reason)
    with contextlib.suppress(TransitionError):
        cycle.fail(reason=reason)


def _waiting_for_dataset(cycle: LearningCycle) -> None:
    if cycle.dataset_id is None:
        _make_dataset(cycle)
        return
    dataset = cycle.dataset
    assert dataset is not None
    if dataset.status == DatasetSnapshot.Status.BUILDING:
        return  # the worker builds it; the reaper fails a build that died
    if dataset.status == DatasetSnapshot.Status.FAILED:
        cycle.move(
            Status.FAILED,
            reason=f"Dataset {dataset.pk} failed.",
            outcome=f"Dataset {dataset.pk} failed: {dataset.error[:300]}",
        )
        return
    minimum = cycle.model_type.min_cases_to_train
    if dataset.case_count < minimum:
        reason = f"Dataset {dataset.pk} has {dataset.case_count} cases; at least {minimum} are needed to train."
        cycle.move(Status.FAILED, reason=reason, outcome=reason)
        return
    user = loop_user()
    with transaction.atomic():
        jobs = [
            TrainingJob.submit(
                model_type=cycle.model_type, by=user, dataset=dataset, algorithm=algorithm, hyperparameters=params
            )
            for algorithm, params in cycle.policy.grid()
        ]
        cycle.move(Status.TRAINING, reason=f"{len(jobs)} training job(s) on dataset {dataset.pk}.")
        cycle.jobs.add(*jobs)


def _make_dataset(cycle: LearningCycle) -> None:
    from training.datasets import create_snapshot
    from training.tasks import enqueue_dataset_build

    # Slow (reads the cohort's cases and snapshot manifests), outside any transaction: whether the
    # policy renews the locked set (and the new set chosen), else the active set (locked if none).
    renewal = prepare_renewal(cycle)
    locked = (
        None
        if renewal is not None and renewal.chosen is not None
        else current_locked_set(cycle.model_type, cycle.policy)
    )
    with transaction.atomic():
        if renewal is not None:
            # Retired and locked in the claim's transaction: a lost claim renews nothing.
            locked = apply_renewal(renewal, cycle) or locked
        snapshot = create_snapshot(cycle.model_type, by=loop_user())
        claimed = LearningCycle.objects.filter(
            pk=cycle.pk, status=Status.WAITING_FOR_DATASET, dataset__isnull=True
        ).update(dataset=snapshot, locked_set=locked, locked_renewal=renewal.record if renewal is not None else {})
        if claimed != 1:
            raise TransitionError(f"Learning cycle {cycle.pk} has a dataset already.")
        if renewal is not None:
            CycleTransition.objects.create(
                cycle=cycle, actor=None, from_state=cycle.status, to_state=cycle.status, reason=renewal.summary
            )
        enqueue_dataset_build(snapshot.pk)


def _validation_accuracy(job: TrainingJob) -> float | None:
    value = (job.metrics or {}).get("val_accuracy")
    return float(value) if isinstance(value, int | float) else None


def _training(cycle: LearningCycle) -> None:
    jobs = list(cycle.jobs.order_by("pk"))
    if any(not job.is_finished for job in jobs):
        return
    versions = {version.job_id: version for version in ModelVersion.objects.filter(job__in=jobs)}
    completed = [job for job in jobs if job.status == TrainingJob.Status.COMPLETED]
    if any(job.pk not in versions for job in completed):
        return  # registered on the job's commit; the reaper's sweep registers a missed one
    candidates = [
        {
            "job": job.pk,
            "algorithm": job.algorithm,
            "hyperparameters": job.hyperparameters,
            "status": job.status,
            "val_accuracy": _validation_accuracy(job),
            "version": versions[job.pk].pk if job.pk in versions else None,
            "version_label": versions[job.pk].version if job.pk in versions else None,
        }
        for job in jobs
    ]
    ranked = [entry for entry in candidates if entry["version"] is not None and entry["val_accuracy"] is not None]
    if not ranked:
        reason = "No training job completed with a validation accuracy." if completed else "Every training job failed."
        cycle.move(Status.FAILED, reason=reason, outcome=reason, candidates=candidates)
        return
    # The validation split chooses (the test split never does); ties go to the earlier job.
    best = max(ranked, key=lambda entry: (entry["val_accuracy"], -entry["job"]))
    for entry in candidates:
        entry["chosen"] = entry is best
    chosen = versions[best["job"]]
    with transaction.atomic():
        cycle.move(
            Status.EVALUATING,
            reason=f"Candidate {chosen.version}: validation accuracy {best['val_accuracy']:.4f}.",
            candidates=candidates,
            candidate=chosen,
        )
        for version in versions.values():
            if version.pk != chosen.pk:
                _archive(version, f"Not chosen by learning cycle {cycle.pk} (validation accuracy).")


def _archive(version: ModelVersion, reason: str) -> None:
    if version.deployment_status == ModelVersion.Deployment.INACTIVE:
        version.archive(by=loop_user(), reason=reason)


def _evaluating(cycle: LearningCycle) -> None:
    champion, candidate, policy = cycle.champion, cycle.candidate, cycle.policy
    assert champion is not None
    assert candidate is not None
    locked = cycle.locked_set
    if locked is None:  # a rollback cycle opens straight into evaluation
        locked = _rollback_locked_set(cycle)
    # Slow: two artifacts loaded, the locked set predicted. No transaction, no lock.
    result = judge_versions(champion, candidate, locked, policy)
    envelope = result.as_dict()
    if cycle.kind == LearningCycle.Kind.ROLLBACK:
        _rollback_decision(cycle, passed=result.passed, envelope=envelope)
        return
    if not result.passed:
        failed = ", ".join(result.failed())
        with transaction.atomic():
            cycle.move(
                Status.REJECTED,
                reason=f"Outside the envelope: {failed}.",
                envelope=envelope,
                envelope_passed=False,
                outcome=f"{candidate.version} rejected by the envelope of {policy}: {failed}. Archived; never served.",
            )
            _archive(candidate, f"Outside the acceptance envelope of {policy} (learning cycle {cycle.pk}): {failed}.")
        return
    with transaction.atomic():
        if policy.test_approval == LearningPolicy.TestApproval.PERSON:
            cycle.move(
                Status.AWAITING_APPROVAL,
                reason="Within the envelope; the policy asks a clinical lead to approve the candidate.",
                envelope=envelope,
                envelope_passed=True,
            )
            return
        if not _author_may_still_approve(policy):
            # The pre-authorisation is the author's signature: it lapses with their account or role.
            cycle.move(
                Status.AWAITING_APPROVAL,
                reason=f"Within the envelope; the author of {policy} may no longer approve versions (account "
                "deactivated or role withdrawn), so a clinical lead must approve the candidate.",
                envelope=envelope,
                envelope_passed=True,
            )
            return
        cycle.move(Status.TESTING, reason="Within the envelope.", envelope=envelope, envelope_passed=True)
        candidate.approve(
            by=policy.created_by,
            note=f"Pre-authorised by {policy} (its author, {policy.created_by}): within its acceptance envelope "
            f"in learning cycle {cycle.pk}.",
        )
        _start_test(cycle, candidate)


def _rollback_locked_set(cycle: LearningCycle) -> LockedEvaluationSet:
    """A rollback cycle's locked set, renewed first (by age: drift renews for candidates only) when
    the policy says, recorded and audited as a candidate cycle's first step does."""
    renewal = prepare_renewal(cycle)  # slow: reads the cohort, outside any transaction
    if renewal is None or renewal.chosen is None:
        locked = current_locked_set(cycle.model_type, cycle.policy)
        LearningCycle.objects.filter(pk=cycle.pk, locked_set__isnull=True).update(locked_set=locked)
        return locked
    with transaction.atomic():
        renewed = apply_renewal(renewal, cycle)
        assert renewed is not None
        claimed = LearningCycle.objects.filter(pk=cycle.pk, locked_set__isnull=True).update(
            locked_set=renewed, locked_renewal=renewal.record
        )
        if claimed != 1:
            raise TransitionError(f"Learning cycle {cycle.pk} has a locked set already.")
        CycleTransition.objects.create(
            cycle=cycle, actor=None, from_state=cycle.status, to_state=cycle.status, reason=renewal.summary
        )
    return renewed


def _author_may_still_approve(policy: LearningPolicy) -> bool:
    """Whether the policy's author, whose name a pre-authorised approval carries, may approve today."""
    author = type(policy.created_by).objects.get(pk=policy.created_by_id)  # fresh: roles change
    return bool(author.is_active and author.has_perm("models_registry.approve_modelversion"))


def _start_test(cycle: LearningCycle, candidate: ModelVersion) -> None:
    policy = cycle.policy
    champion = cycle.champion
    test = ABTest.start(
        model_type=cycle.model_type,
        version_a=champion,
        version_b=candidate,
        traffic_split=policy.test_traffic_split if policy.test_mode == LearningPolicy.TestMode.SPLIT else 0.0,
        duration_hours=policy.test_duration_hours,
        mode=policy.test_mode,
        min_labelled_per_arm=policy.test_min_labelled_per_arm,
        by=loop_user(),
    )
    LearningCycle.objects.filter(pk=cycle.pk).update(ab_test=test)
    cycle.ab_test = test


def _awaiting_approval(cycle: LearningCycle) -> None:
    candidate = cycle.candidate
    assert candidate is not None
    candidate.refresh_from_db()
    if candidate.approval_status == ModelVersion.Approval.APPROVED:
        with transaction.atomic():
            cycle.move(Status.TESTING, reason=f"{candidate.version} approved by {candidate.approved_by}.")
            _start_test(cycle, candidate)
    elif candidate.approval_status == ModelVersion.Approval.REJECTED or (
        candidate.deployment_status == ModelVersion.Deployment.ARCHIVED
    ):
        cycle.move(
            Status.NOT_PROMOTED,
            reason="The clinical lead did not approve the candidate.",
            outcome=f"{candidate.version} was not approved for testing.",
        )


def _testing(cycle: LearningCycle) -> None:
    test = ABTest.objects.filter(pk=cycle.ab_test_id).first() if cycle.ab_test_id else None
    if test is None:
        _fail(cycle, "The cycle's A/B test is gone.")
        return
    candidate, policy = cycle.candidate, cycle.policy
    assert candidate is not None
    if not test.is_running():
        _test_ended(cycle, test)
        return
    decision = test.evaluate()["decision"]
    if decision == Decision.ROLLBACK:
        with transaction.atomic():
            cycle.move(
                Status.NOT_PROMOTED,
                reason="The A/B test decided rollback.",
                test_decision=decision,
                outcome=f"The A/B test kept {cycle.champion}: {candidate.version} did worse on live cases.",
            )
            test.stop(
                by=loop_user(), reason=f"Learning cycle {cycle.pk}: the test decided rollback; the champion stays."
            )
        return
    if decision != Decision.SHIP_B:
        return  # hold (or invalid): wait for more feedback, or the test's end
    if policy.auto_promote and cycle.envelope_passed:
        reason = f"Promoted without a person under {policy} (learning cycle {cycle.pk}): envelope and test both held."
        with transaction.atomic():
            cycle.move(
                Status.PROMOTED,
                reason=reason,
                test_decision=decision,
                outcome=f"{candidate.version} promoted automatically under {policy}.",
            )
            test.conclude(by=loop_user(), reason=reason, promote=True, expected_decision=Decision.SHIP_B)
        return
    with transaction.atomic():
        cycle.move(
            Status.PROPOSED,
            reason="The A/B test decided ship_b: promotion proposed to the clinical lead.",
            test_decision=decision,
        )
        emit(
            EventType.PROMOTION_PROPOSED,
            model_type=cycle.model_type,
            summary=f"Learning cycle {cycle.pk}: promotion of version {candidate.pk} proposed",
            data={
                "cycle": cycle.pk,
                "ab_test": test.pk,
                "candidate": candidate.pk,
                "candidate_label": safe_label(candidate.version),
                "policy_version": policy.version,
            },
        )


def _test_ended(cycle: LearningCycle, test: ABTest) -> None:
    candidate = cycle.candidate
    assert candidate is not None
    if test.promoted:
        cycle.move(
            Status.PROMOTED,
            reason=f"A/B test {test.pk} concluded {test.decision}; {candidate.version} promoted.",
            test_decision=test.decision,
            outcome=f"{candidate.version} promoted by {test.concluded_by or 'the conclusion'} of A/B test {test.pk}.",
        )
    else:
        cycle.move(
            Status.NOT_PROMOTED,
            reason=f"A/B test {test.pk} ended ({test.status}, {test.decision or 'no decision'}) without promotion.",
            test_decision=test.decision,
            outcome=f"{candidate.version} not promoted: A/B test {test.pk} {test.status}.",
        )


def _proposed(cycle: LearningCycle) -> None:
    candidate = cycle.candidate
    assert candidate is not None
    if cycle.kind == LearningCycle.Kind.ROLLBACK:
        candidate.refresh_from_db()
        if candidate.deployment_status == ModelVersion.Deployment.ACTIVE:
            cycle.move(
                Status.ROLLED_BACK,
                reason="The clinical lead rolled back.",
                outcome=f"Rolled back to {candidate.version} by a person.",
            )
        return
    test = ABTest.objects.filter(pk=cycle.ab_test_id).first() if cycle.ab_test_id else None
    if test is not None and not test.is_running():
        _test_ended(cycle, test)


def _rollback_decision(cycle: LearningCycle, *, passed: bool, envelope: dict[str, Any]) -> None:
    policy, candidate, champion = cycle.policy, cycle.candidate, cycle.champion
    assert candidate is not None
    assert champion is not None
    if not passed:
        cycle.move(
            Status.REJECTED,
            reason="The previous version is outside the envelope: no rollback.",
            envelope=envelope,
            envelope_passed=False,
            outcome=f"{candidate.version} fails the envelope against the degraded {champion.version}; kept "
            f"{champion.version}.",
        )
        return
    if policy.rollback_action == LearningPolicy.RollbackAction.PERFORM:
        reason = f"Rollback guard of {policy} (learning cycle {cycle.pk}): {champion.version} degraded."
        with transaction.atomic():
            cycle.move(
                Status.ROLLED_BACK,
                reason=reason,
                envelope=envelope,
                envelope_passed=True,
                outcome=f"Rolled back from {champion.version} to {candidate.version} under {policy}.",
            )
            target = ModelVersion.rollback(cycle.model_type, by=loop_user(), reason=reason)
            if target.pk != candidate.pk:
                raise TransitionError(f"The rollback target moved to {target.version}; not rolled back.")
        return
    with transaction.atomic():
        cycle.move(
            Status.PROPOSED,
            reason="Rollback proposed to the clinical lead.",
            envelope=envelope,
            envelope_passed=True,
        )
        emit(
            EventType.ROLLBACK_PROPOSED,
            model_type=cycle.model_type,
            summary=f"Learning cycle {cycle.pk}: rollback from version {champion.pk} to {candidate.pk} proposed",
            data={
                "cycle": cycle.pk,
                "from_version": champion.pk,
                "from_label": safe_label(champion.version),
                "to_version": candidate.pk,
                "to_label": safe_label(candidate.version),
                "policy_version": policy.version,
            },
        )


_STEPS: dict[str, Callable[[LearningCycle], None]] = {
    Status.WAITING_FOR_DATASET: _waiting_for_dataset,
    Status.TRAINING: _training,
    Status.EVALUATING: _evaluating,
    Status.AWAITING_APPROVAL: _awaiting_approval,
    Status.TESTING: _testing,
    Status.PROPOSED: _proposed,
}
