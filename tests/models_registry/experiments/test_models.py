"""A/B tests on the model: set-up checks, constraints, transitions with audit, promotion, expiry."""

from __future__ import annotations

import datetime as dt
import uuid
from io import StringIO
from typing import cast

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.tasks import default_task_backend as _default_backend
from django.tasks.backends.dummy import DummyBackend
from django.test import TestCase
from django.utils import timezone

from learning_engine.exceptions import DomainError, InvalidRequest, TransitionError
from models_registry.generation import current_generation
from models_registry.models import ABTest, ABTestTransition, ActivationHistory, ModelVersion
from tests.models_registry.experiments.factories import log_arm, start_test, version_pair
from tests.models_registry.registry.factories import ModelVersionFactory
from tests.training.factories import ModelTypeFactory

pytestmark = pytest.mark.django_db

default_task_backend = cast(DummyBackend, _default_backend)  # the test settings' backend


@pytest.fixture
def test(pair, engineer):
    a, b = pair
    return start_test(a, b, by=engineer, min_labelled_per_arm=100)


def fresh(obj):
    return type(obj).objects.get(pk=obj.pk)


def last_audit(test: ABTest) -> ABTestTransition:
    row = ABTestTransition.objects.filter(test=test).order_by("created_at", "id").last()
    assert row is not None
    return row


def last_history() -> ActivationHistory:
    row = ActivationHistory.objects.order_by("created_at", "id").last()
    assert row is not None
    return row


def b_wins(test, by) -> None:
    """Figures that make the decision ship_b: 300 labelled per arm, A 60% right, B 90%."""
    log_arm(test, "a", predicted=300, labelled=300, correct=180, by=by)
    log_arm(test, "b", predicted=300, labelled=300, correct=270, by=by)


def b_loses(test, by) -> None:
    log_arm(test, "a", predicted=300, labelled=300, correct=270, by=by)
    log_arm(test, "b", predicted=300, labelled=300, correct=180, by=by)


# --- Start -------------------------------------------------------------------------------------------


def test_start_creates_a_running_test_with_its_audit_row(pair, engineer):
    a, b = pair
    before = timezone.now()

    test = start_test(a, b, by=engineer, traffic_split=0.3, duration_hours=24, mode="split")

    assert test.status == ABTest.Status.RUNNING
    assert (test.version_a, test.version_b, test.traffic_split) == (a, b, 0.3)
    assert test.ends_at - test.started_at == dt.timedelta(hours=24)
    assert test.started_at >= before
    assert test.created_by == engineer
    audit = ABTestTransition.objects.get(test=test)
    assert (audit.from_state, audit.to_state, audit.actor) == ("", "running", engineer)
    assert "30% to B" in audit.reason


def test_starting_a_test_bumps_the_serving_generation_on_commit(pair, engineer):
    a, b = pair
    before = current_generation()
    with TestCase.captureOnCommitCallbacks(execute=False) as callbacks:
        ABTest.start(
            model_type=a.model_type, version_a=a, version_b=b, traffic_split=0.5, duration_hours=1, by=engineer
        )
    assert current_generation() == before  # nothing before the commit
    for callback in callbacks:
        callback()
    assert current_generation() > before


def test_a_second_running_test_of_the_model_type_is_refused(test, pair, engineer):
    a, b = pair
    with pytest.raises(DomainError) as raised:
        start_test(b, a, by=engineer)
    assert raised.value.code == "ab_test_running"
    assert raised.value.extra["ab_test"] == test.pk
    assert ABTest.objects.running().count() == 1


def test_the_database_holds_one_running_test_per_model_type(test, pair, engineer):
    a, b = pair
    with pytest.raises(IntegrityError), transaction.atomic():
        ABTest.objects.create(
            model_type=a.model_type,
            version_a=b,
            version_b=a,
            traffic_split=0.5,
            duration_hours=1,
            ends_at=timezone.now(),
            created_by=engineer,
        )


def test_another_model_type_may_run_a_test_at_the_same_time(test, engineer, lead):
    a, b = version_pair(
        engineer=engineer, lead=lead, model_type=ModelTypeFactory.create(slug="triage", cohort="respiratory")
    )
    other = start_test(a, b, by=engineer)
    assert ABTest.objects.running().count() == 2
    assert other.model_type.slug == "triage"


def test_after_a_test_ends_another_may_start(test, pair, engineer, lead):
    test.stop(by=lead, reason="Enough.")
    a, b = pair
    assert start_test(a, b, by=engineer).status == "running"


@pytest.mark.parametrize(
    ("field", "value"),
    [("traffic_split", 1.5), ("traffic_split", -0.1), ("duration_hours", 0), ("significance_level", 0.0)],
)
def test_the_database_checks_the_ranges(pair, engineer, field, value):
    a, b = pair
    values = {"traffic_split": 0.5, "duration_hours": 1, "significance_level": 0.05, field: value}
    with pytest.raises(IntegrityError), transaction.atomic():
        ABTest.objects.create(
            model_type=a.model_type, version_a=a, version_b=b, ends_at=timezone.now(), created_by=engineer, **values
        )


def test_the_database_refuses_a_version_against_itself(pair, engineer):
    a, _b = pair
    with pytest.raises(IntegrityError), transaction.atomic():
        ABTest.objects.create(
            model_type=a.model_type,
            version_a=a,
            version_b=a,
            traffic_split=0.5,
            duration_hours=1,
            ends_at=timezone.now(),
            created_by=engineer,
        )


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"traffic_split": 1.2}, "invalid_split"),
        ({"traffic_split": 0.0}, "invalid_split"),  # a split test with nobody on B
        ({"traffic_split": 1.0}, "invalid_split"),
        ({"duration_hours": 0}, "invalid_duration"),
        ({"significance_level": 0.5}, "invalid_significance"),
        ({"min_labelled_per_arm": 0}, "invalid_min_labelled"),
        ({"mode": "bandit"}, "invalid_mode"),
    ],
)
def test_a_bad_setup_is_invalid_and_creates_nothing(pair, engineer, overrides, code):
    a, b = pair
    with pytest.raises(InvalidRequest) as raised:
        start_test(a, b, by=engineer, **overrides)
    assert raised.value.code == code
    assert not ABTest.objects.exists()


def test_a_shadow_test_needs_no_split(pair, engineer):
    a, b = pair
    assert start_test(a, b, by=engineer, mode="shadow", traffic_split=0.0).mode == "shadow"


def test_the_same_version_twice_is_invalid(pair, engineer):
    a, _b = pair
    with pytest.raises(InvalidRequest) as raised:
        start_test(a, a, by=engineer)
    assert raised.value.code == "same_version"


def test_an_unapproved_version_is_invalid(pair, engineer):
    a, _b = pair
    pending = ModelVersionFactory.create(created_by=engineer)
    with pytest.raises(InvalidRequest) as raised:
        start_test(a, pending, by=engineer)
    assert raised.value.code == "not_approved"


def test_an_archived_version_is_invalid(pair, engineer, lead):
    a, _b = pair
    old = ModelVersionFactory.create(created_by=engineer)
    old.approve(by=lead)
    old.archive(by=lead)
    with pytest.raises(InvalidRequest) as raised:
        start_test(a, fresh(old), by=engineer)
    assert raised.value.code == "version_archived"


def test_a_version_of_another_model_type_is_invalid(pair, engineer, lead):
    a, _b = pair
    other, _ = version_pair(
        engineer=engineer, lead=lead, model_type=ModelTypeFactory.create(slug="triage", cohort="respiratory")
    )
    with pytest.raises(InvalidRequest) as raised:
        start_test(a, other, by=engineer)
    assert raised.value.code == "unknown_version"


# --- Stop ----------------------------------------------------------------------------------------------


def test_stop_ends_the_test_with_an_audit_row_and_promotes_nothing(test, lead, engineer, pair):
    a, b = pair
    b_wins(test, engineer)

    test.stop(by=lead, reason="A data problem.")

    stored = fresh(test)
    assert stored.status == "stopped"
    assert (stored.concluded_by, stored.reason, stored.promoted) == (lead, "A data problem.", False)
    assert stored.ended_at is not None
    assert stored.decision == "ship_b"  # what the figures said, for the record
    assert stored.evaluation["arms"]["b"]["labelled"] == 300
    audit = last_audit(test)
    assert (audit.from_state, audit.to_state, audit.actor, audit.reason) == (
        "running",
        "stopped",
        lead,
        "A data problem.",
    )
    assert fresh(a).deployment_status == "active"
    assert fresh(b).deployment_status == "inactive"


def test_stopping_twice_is_a_transition_error(test, lead):
    test.stop(by=lead, reason="Once.")
    with pytest.raises(TransitionError):
        test.stop(by=lead, reason="Twice.")
    assert ABTestTransition.objects.filter(test=test, to_state="stopped").count() == 1


def test_a_stale_copy_cannot_end_a_test_another_copy_ended(test, lead, engineer):
    stale = ABTest.objects.get(pk=test.pk)
    b_wins(test, engineer)
    test.stop(by=engineer, reason="Stopped first.")

    with pytest.raises(TransitionError):
        stale.conclude(by=lead, reason="Concluded second.")

    stored = fresh(test)
    assert (stored.status, stored.promoted, stored.reason) == ("stopped", False, "Stopped first.")
    assert fresh(test.version_b).deployment_status == "inactive"
    assert list(ABTestTransition.objects.filter(test=test).values_list("to_state", flat=True)) == [
        "running",
        "stopped",
    ]


def test_ending_a_test_bumps_the_serving_generation_on_commit(test, lead):
    before = current_generation()
    with TestCase.captureOnCommitCallbacks(execute=True):
        test.stop(by=lead, reason="Done.")
    assert current_generation() > before


# --- Conclude --------------------------------------------------------------------------------------------


def test_concluding_with_ship_b_promotes_b_with_a_history_row_naming_the_test(test, lead, engineer, pair):
    a, b = pair
    b_wins(test, engineer)

    test.conclude(by=lead, reason="Reviewed the figures.")

    stored = fresh(test)
    assert (stored.status, stored.decision, stored.promoted, stored.concluded_by) == (
        "concluded",
        "ship_b",
        True,
        lead,
    )
    assert fresh(b).deployment_status == "active"
    assert fresh(a).deployment_status == "inactive"
    history = last_history()
    assert (history.from_version, history.to_version, history.actor) == (a, b, lead)
    assert f"A/B test {test.pk}" in history.reason
    assert "ship_b" in history.reason
    audit = last_audit(test)
    assert (audit.from_state, audit.to_state) == ("running", "concluded")
    assert "promoted" in audit.reason


def test_concluding_with_rollback_keeps_a(test, lead, engineer, pair):
    a, b = pair
    b_loses(test, engineer)
    history = ActivationHistory.objects.count()

    test.conclude(by=lead, reason="B is worse.")

    stored = fresh(test)
    assert (stored.decision, stored.promoted) == ("rollback", False)
    assert fresh(a).deployment_status == "active"
    assert fresh(b).deployment_status == "inactive"
    assert ActivationHistory.objects.count() == history


def test_concluding_before_the_minimum_labelled_is_hold_and_keeps_a(test, lead, engineer, pair):
    a, _b = pair
    log_arm(test, "a", predicted=50, labelled=50, correct=10, by=engineer)
    log_arm(test, "b", predicted=50, labelled=50, correct=50, by=engineer)

    test.conclude(by=lead, reason="Out of time.")

    assert (fresh(test).decision, fresh(test).promoted) == ("hold", False)
    assert fresh(a).deployment_status == "active"


def test_a_sample_ratio_mismatch_is_invalid_and_never_promotes(test, lead, engineer, pair):
    _a, b = pair
    log_arm(test, "a", predicted=1000, labelled=300, correct=180, by=engineer)
    log_arm(test, "b", predicted=300, labelled=300, correct=290, by=engineer)

    test.conclude(by=lead, reason="Check.")

    stored = fresh(test)
    assert stored.decision == "invalid"
    assert stored.evaluation["srm"]["failed"] is True
    assert fresh(b).deployment_status == "inactive"


def test_a_subject_asking_many_times_is_one_assignment(test, engineer):
    log_arm(test, "a", predicted=500, subjects=5, by=engineer)
    log_arm(test, "b", predicted=5, by=engineer)
    figures = test.evaluate()
    assert (figures["arms"]["a"]["assigned"], figures["arms"]["a"]["predicted"]) == (5, 500)
    assert figures["srm"]["failed"] is False


def test_requests_without_a_subject_key_are_counted(test, engineer):
    log_arm(test, "a", predicted=7, unkeyed=True, by=engineer)
    log_arm(test, "a", predicted=3, by=engineer)
    arm = test.evaluate()["arms"]["a"]
    assert (arm["unkeyed"], arm["assigned"], arm["predicted"]) == (7, 10, 10)


# --- Expiry ----------------------------------------------------------------------------------------------


def expire(test: ABTest) -> None:
    ABTest.objects.filter(pk=test.pk).update(ends_at=timezone.now() - dt.timedelta(minutes=1))


def test_expired_tests_are_concluded_without_promotion(test, engineer, pair, lead):
    _a, b = pair
    b_wins(test, engineer)
    expire(test)
    other_a, other_b = version_pair(
        engineer=engineer, lead=lead, model_type=ModelTypeFactory.create(slug="triage", cohort="respiratory")
    )
    running = start_test(other_a, other_b, by=engineer)

    summary = ABTest.conclude_expired()

    assert summary == {"concluded": [test.pk], "skipped": []}
    stored = fresh(test)
    assert (stored.status, stored.decision, stored.promoted, stored.concluded_by) == (
        "concluded",
        "ship_b",
        False,
        None,
    )
    assert "elapsed" in stored.reason
    assert fresh(b).deployment_status == "inactive"
    assert fresh(running).status == "running"
    audit = last_audit(test)
    assert (audit.to_state, audit.actor) == ("concluded", None)


def test_the_command_concludes_expired_tests_and_has_a_dry_run(test):
    expire(test)
    out = StringIO()
    call_command("conclude_expired_ab_tests", "--dry-run", stdout=out)
    assert "1 A/B test would be concluded" in out.getvalue()
    assert fresh(test).status == "running"

    call_command("conclude_expired_ab_tests", stdout=out)
    assert fresh(test).status == "concluded"
    assert fresh(test).promoted is False


def test_the_periodic_chain_collapses_to_one_and_concludes_expired_tests(pair, engineer):
    from models_registry.experiments import tasks

    default_task_backend.clear()
    test = start_test(*pair, by=engineer)  # starts the chain
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks.ensure_ab_test_checks_scheduled()  # another process: the live chain is kept
    chains = [r for r in default_task_backend.results if r.task.name == "conclude_expired_ab_tests_periodically"]
    assert len(chains) == 1
    expire(test)

    result = tasks.conclude_expired_ab_tests_periodically.call(chains[0].args[0])

    assert result["concluded"] == [test.pk]
    assert fresh(test).status == "concluded"
    assert tasks.conclude_expired_ab_tests_periodically.call(str(uuid.uuid4())) == {"outcome": "superseded"}


def test_a_chain_queued_under_the_former_task_path_still_resolves():
    # The database queue stores a task's dotted path: rows queued before the move to experiments/.
    from django.utils.module_loading import import_string

    from models_registry.experiments import tasks

    former = import_string("models_registry.tasks.conclude_expired_ab_tests_periodically")
    assert former is tasks.conclude_expired_ab_tests_periodically


def test_starting_a_test_schedules_the_periodic_check(pair, engineer):
    from learning_engine.models import PeriodicSchedule

    a, b = pair
    start_test(a, b, by=engineer)
    assert PeriodicSchedule.objects.filter(name="conclude_expired_ab_tests").exists()


def test_the_active_version_is_untouched_while_a_test_runs(test, pair):
    a, b = pair
    assert ModelVersion.objects.active().get() == a
    assert fresh(b).deployment_status == "inactive"


# --- The arms of a running test stay deployable until it ends -------------------------------------


def test_an_arm_of_a_running_test_cannot_be_deactivated_or_archived(test, pair, lead):
    a, b = pair
    a = fresh(a)
    assert a.deployment_status == ModelVersion.Deployment.ACTIVE

    with pytest.raises(TransitionError) as deactivating:
        a.deactivate(by=lead, reason="switch off")
    with pytest.raises(TransitionError) as archiving:
        fresh(b).archive(by=lead, reason="tidy up")

    assert deactivating.value.code == archiving.value.code == "version_in_ab_test"
    assert fresh(a).deployment_status == ModelVersion.Deployment.ACTIVE
    assert fresh(b).deployment_status == ModelVersion.Deployment.INACTIVE


def test_once_the_test_is_stopped_its_arms_can_be_archived_again(test, pair, lead):
    _a, b = pair
    test.stop(by=lead, reason="enough")

    fresh(b).archive(by=lead, reason="tidy up")

    assert fresh(b).deployment_status == ModelVersion.Deployment.ARCHIVED


def test_a_test_cannot_start_on_a_version_archived_since_it_was_read(pair, engineer, lead):
    a, b = pair
    stale_b = fresh(b)
    fresh(b).archive(by=lead, reason="retired")

    with pytest.raises(InvalidRequest) as refused:
        start_test(a, stale_b, by=engineer)

    assert refused.value.code == "version_archived"
    assert not ABTest.objects.exists()


def test_no_version_can_be_activated_while_a_test_runs(test, engineer, lead, pair):
    a, b = pair
    third = ModelVersionFactory.create(created_by=engineer, model_type=a.model_type)
    third.approve(by=lead)

    for version in (fresh(b), fresh(third)):
        with pytest.raises(TransitionError) as refused:
            version.activate(by=lead, reason="Meanwhile.")
        assert refused.value.code == "ab_test_running"
    with pytest.raises(TransitionError):
        ModelVersion.rollback(a.model_type, by=lead, reason="Meanwhile.")

    assert list(ModelVersion.objects.active().values_list("pk", flat=True)) == [a.pk]
    # A conclusion that keeps A leaves A serving.
    test.conclude(by=lead, reason="Not enough evidence.")
    assert list(ModelVersion.objects.active().values_list("pk", flat=True)) == [a.pk]


def test_a_conclusion_on_a_decision_that_changed_since_it_was_read_does_nothing(test, engineer, lead, pair):
    _a, b = pair
    seen = test.evaluate()["decision"]
    assert seen == "hold"
    b_wins(test, engineer)  # feedback arrives while the lead reads

    with pytest.raises(DomainError) as refused:
        test.conclude(by=lead, reason="Keep A.", expected_decision=seen)

    assert refused.value.code == "decision_changed"
    assert fresh(test).status == "running"
    assert fresh(b).deployment_status == "inactive"
    test.conclude(by=lead, reason="Clear win.", expected_decision="ship_b")
    assert fresh(b).deployment_status == "active"


def test_one_failing_expired_test_does_not_stop_the_others(test, engineer, lead, monkeypatch):
    other_a, other_b = version_pair(
        engineer=engineer, lead=lead, model_type=ModelTypeFactory.create(slug="triage", cohort="respiratory")
    )
    other = start_test(other_a, other_b, by=engineer)
    expire(test)
    expire(other)
    real_conclude = ABTest.conclude

    def flaky(self, **kwargs):
        if self.pk == test.pk:
            raise RuntimeError("connection lost")
        return real_conclude(self, **kwargs)

    monkeypatch.setattr(ABTest, "conclude", flaky)
    summary = ABTest.conclude_expired()

    assert summary == {"concluded": [other.pk], "skipped": [test.pk]}
    assert fresh(other).status == "concluded"
    assert fresh(test).status == "running"
