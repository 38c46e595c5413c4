"""The periodic-chain helper (learning_engine.periodic) and the chains built on it.

Every chain behaves the same when a run raises: the failure is logged, the chain re-enqueues itself
for the next interval, and the run is recorded as failed. The move of ``PeriodicSchedule`` from
training to learning_engine keeps an existing database's rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any, cast

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.tasks import default_task_backend as _default_backend
from django.tasks import task
from django.tasks.backends.dummy import DummyBackend
from django.utils import timezone

from learning_engine import periodic
from learning_engine.models import PeriodicSchedule
from learning_engine.periodic import ensure_scheduled, periodic_task

default_task_backend = cast(DummyBackend, _default_backend)  # the test settings' backend

pytestmark = pytest.mark.django_db

calls: list[str] = []
FAILING = False


@periodic_task(schedule="test_periodic_count", interval_setting="TEST_PERIODIC_INTERVAL", default_interval_seconds=60)
def count_runs() -> dict[str, Any]:
    if FAILING:
        raise RuntimeError("database away")
    calls.append("ran")
    return {"runs": len(calls)}


@task()
def not_periodic() -> None:
    return None


@pytest.fixture(autouse=True)
def _fresh_queue():
    default_task_backend.clear()
    calls.clear()
    yield
    default_task_backend.clear()


def queued(name: str) -> list[Any]:
    return [result for result in default_task_backend.results if result.task.name == name]


def start(periodic_task_: Any, capture: Any) -> str:
    with capture(execute=True):
        assert ensure_scheduled(periodic_task_) is True
    (first,) = queued(periodic_task_.name)
    default_task_backend.clear()
    return str(first.args[0])


def test_a_chain_runs_its_work_and_reenqueues_itself_one_interval_later(django_capture_on_commit_callbacks):
    token = start(count_runs, django_capture_on_commit_callbacks)
    before = timezone.now()

    assert count_runs.call(token) == {"outcome": "ran", "runs": 1}

    (next_run,) = queued("count_runs")
    assert next_run.args == [token]
    assert next_run.task.run_after - before >= dt.timedelta(seconds=59)
    row = PeriodicSchedule.objects.get(name="test_periodic_count")
    assert row.last_run_at is not None
    assert row.interval_seconds == 60


def test_the_interval_is_read_from_the_setting_when_the_chain_starts(settings, django_capture_on_commit_callbacks):
    settings.TEST_PERIODIC_INTERVAL = 7
    start(count_runs, django_capture_on_commit_callbacks)
    assert PeriodicSchedule.objects.get(name="test_periodic_count").interval_seconds == 7


def test_a_live_chain_is_not_started_twice_and_a_superseded_one_stops(django_capture_on_commit_callbacks):
    token = start(count_runs, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert ensure_scheduled(count_runs) is False  # another process: the live chain goes on
    assert queued("count_runs") == []

    assert count_runs.call(str(uuid.uuid4())) == {"outcome": "superseded"}
    assert calls == []
    assert queued("count_runs") == []  # a superseded chain does not re-enqueue
    assert count_runs.call(token)["outcome"] == "ran"


def test_a_dead_chain_is_revived_after_two_intervals(django_capture_on_commit_callbacks):
    old = start(count_runs, django_capture_on_commit_callbacks)
    PeriodicSchedule.objects.filter(name="test_periodic_count").update(
        next_run_at=timezone.now() - dt.timedelta(seconds=121)
    )
    new = start(count_runs, django_capture_on_commit_callbacks)
    assert new != old
    assert count_runs.call(old) == {"outcome": "superseded"}


def test_the_first_run_is_enqueued_only_when_the_caller_commits(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        ensure_scheduled(count_runs)
    assert queued("count_runs") == []


def test_two_chains_cannot_share_a_schedule_row():
    def other() -> dict[str, Any]:
        return {}

    with pytest.raises(ImproperlyConfigured, match="test_periodic_count"):
        periodic_task(schedule="test_periodic_count", interval_setting="X")(other)


def test_only_a_periodic_task_can_be_scheduled():
    with pytest.raises(ImproperlyConfigured, match="not a @periodic_task"):
        ensure_scheduled(not_periodic)  # type: ignore[arg-type]


def test_the_chains_of_the_apps_are_registered_under_their_queued_paths():
    from models_registry.experiments.tasks import conclude_expired_ab_tests_periodically
    from training.tasks import reap_stale_jobs_periodically

    chains = periodic.registered_chains()
    # The dotted paths the database queue stores: unchanged by the move to the helper.
    assert chains["training.tasks.reap_stale_jobs_periodically"].schedule == "reap_stale_jobs"
    assert chains["models_registry.experiments.tasks.conclude_expired_ab_tests_periodically"].schedule == (
        "conclude_expired_ab_tests"
    )
    assert reap_stale_jobs_periodically.module_path == "training.tasks.reap_stale_jobs_periodically"
    assert conclude_expired_ab_tests_periodically.module_path == (
        "models_registry.experiments.tasks.conclude_expired_ab_tests_periodically"
    )


# --- One behaviour when a run raises, for every chain ----------------------------------------------


def _break_reaper(monkeypatch: pytest.MonkeyPatch) -> Any:
    from training import reaper, tasks

    def broken(**kwargs: object) -> dict[str, Any]:
        raise RuntimeError("database away")

    monkeypatch.setattr(reaper, "reap_stale_jobs", broken)
    return tasks.reap_stale_jobs_periodically


def _break_ab_checks(monkeypatch: pytest.MonkeyPatch) -> Any:
    from models_registry.experiments import tasks
    from models_registry.experiments.models import ABTest

    def broken(**kwargs: object) -> dict[str, Any]:
        raise RuntimeError("database away")

    monkeypatch.setattr(ABTest, "conclude_expired", broken)
    return tasks.conclude_expired_ab_tests_periodically


def _break_test_chain(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(__import__(__name__, fromlist=["FAILING"]), "FAILING", True)
    return count_runs


@pytest.mark.parametrize(
    ("broken_chain", "schedule"),
    [
        (_break_reaper, "reap_stale_jobs"),
        (_break_ab_checks, "conclude_expired_ab_tests"),
        (_break_test_chain, "test_periodic_count"),
    ],
    ids=["reaper", "ab-test-checks", "helper"],
)
def test_a_run_that_raises_is_logged_and_the_chain_goes_on(
    broken_chain, schedule, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    chain = broken_chain(monkeypatch)
    token = start(chain, django_capture_on_commit_callbacks)
    caplog.set_level(logging.ERROR, logger="learning_engine.periodic")

    with pytest.raises(RuntimeError, match="database away"):
        chain.call(token)  # the queue records the run as failed

    (record,) = [r for r in caplog.records if r.name == "learning_engine.periodic"]
    assert schedule in record.getMessage()
    assert "RuntimeError" in record.getMessage()
    assert record.exc_info is not None
    (next_run,) = queued(chain.name)  # re-enqueued with the same token for the next interval
    assert next_run.args == [token]
    assert next_run.task.run_after > timezone.now()
    assert PeriodicSchedule.objects.get(name=schedule).token == uuid.UUID(token)

    monkeypatch.undo()
    assert chain.call(token)["outcome"] == "ran"  # the chain is alive: its next run works


# --- The move of the schedule table from training to learning_engine -------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_move_to_learning_engine_keeps_the_schedules_and_their_content_type():
    before = [("training", "0006_dictionary_lineage"), ("learning_engine", None)]
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(before)
        old_apps = executor.loader.project_state(
            [("training", "0006_dictionary_lineage"), ("contenttypes", "0002_remove_content_type_name")]
        ).apps
        OldSchedule = old_apps.get_model("training", "PeriodicSchedule")
        OldSchedule.objects.create(
            name="reap_stale_jobs", interval_seconds=30, next_run_at=timezone.now(), token=uuid.UUID(int=7)
        )
        ContentType = old_apps.get_model("contenttypes", "ContentType")
        ContentType.objects.filter(app_label="learning_engine", model="periodicschedule").delete()
        moved = ContentType.objects.get_or_create(app_label="training", model="periodicschedule")[0]

        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    finally:
        MigrationExecutor(connection).migrate(leaves)

    row = PeriodicSchedule.objects.get(name="reap_stale_jobs")
    assert row.token == uuid.UUID(int=7)
    assert row.interval_seconds == 30
    from django.contrib.contenttypes.models import ContentType as CurrentContentType

    CurrentContentType.objects.clear_cache()
    assert CurrentContentType.objects.get_for_model(PeriodicSchedule).pk == moved.pk
