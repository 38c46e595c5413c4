"""Celery as the alternative ``django.tasks`` backend (``TASKS_BACKEND=celery``).

Code never talks to Celery: it enqueues through ``django.tasks`` as it does with the database
queue. The backend is django-tasks-fennel's ``CeleryBackend`` (each ``@task`` function becomes a
Celery task named ``django_tasks:<module path>`` that the worker registers when it imports the
apps' tasks.py, ``run_after`` becomes the message's ETA, the queue name the Celery queue, results
are readable through ``Task.get_result``), with one correction, ``CeleryBackend.enqueue`` below:
priorities follow the broker. ``django.tasks`` priorities run from -100 to 100, higher first;
RabbitMQ agrees (higher first), but kombu's Redis transport serves priority 0 first and 9 last,
so fennel's mapping, made for RabbitMQ, would run the least urgent job first on Redis
(tests/celery shows the order on a real worker).

This module is also the Celery application that a worker loads::

    celery -A learning_engine worker -Q default,training --concurrency 2 --loglevel INFO

Its configuration is the ``CELERY_*`` settings (learning_engine/settings.py, "Background work").
The job row stays the source of truth for status, progress, heartbeat and cancellation; the
broker only carries "run job N".
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from celery import Celery
from django.core import checks
from django.tasks.base import TaskResult, TaskResultStatus
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.crypto import get_random_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learning_engine.settings")

app = Celery("learning_engine")
# Every Celery option is a CELERY_-prefixed Django setting (CELERY_BROKER_URL -> broker_url).
app.config_from_object("django.conf:settings", namespace="CELERY")
# Imports every installed app's tasks.py in the worker, so each @task is registered there.
app.autodiscover_tasks()
# The app of every thread, not only the one that imported this module (request threads,
# the worker's pool threads): fennel sends through celery.current_app.
app.set_default()

# Import after the app exists: fennel's module resolves celery.current_app lazily.
from django_tasks_fennel import backend as fennel  # noqa: E402

DJANGO_MIN, DJANGO_MAX = -100, 100
CELERY_MIN, CELERY_MAX = 0, 9
# Broker URL schemes whose transport serves the lowest priority number first (kombu's Redis).
LOW_NUMBER_FIRST_SCHEMES = ("redis", "rediss", "sentinel", "redis+socket")


def get_random_id() -> str:
    return get_random_string(32)


def broker_serves_low_numbers_first(broker_url: str) -> bool:
    scheme = (broker_url or "").split("://", 1)[0].lower()
    return scheme in LOW_NUMBER_FIRST_SCHEMES


def celery_priority(priority: int, *, low_number_first: bool) -> int:
    """A ``django.tasks`` priority (-100..100, higher first) as a Celery priority (0..9).

    Evenly spread: 100 is the most urgent level of the broker, -100 the least, 0 the middle.
    """
    share = (priority - DJANGO_MIN) / (DJANGO_MAX - DJANGO_MIN)  # 0.0 (least) .. 1.0 (most urgent)
    level = round(share * (CELERY_MAX - CELERY_MIN))
    return CELERY_MAX - level if low_number_first else CELERY_MIN + level


class CeleryBackend(fennel.CeleryBackend):
    """django-tasks-fennel's backend with broker-aware priorities (see the module docstring)."""

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """fennel's ``enqueue`` (0.1) with ``celery_priority`` in place of its RabbitMQ-only mapping."""
        self.validate_task(task)
        task_id = get_random_id()
        enqueued_at = timezone.now()
        # Lets get_result() rebuild the task before the worker has stored anything (fennel).
        fennel._store_enqueue_info(task_id, task.module_path, args, kwargs, enqueued_at)
        low_first = broker_serves_low_numbers_first(str(app.conf.broker_url or ""))
        app.send_task(
            fennel._to_celery_name(task.module_path),
            args=args,
            kwargs=kwargs,
            task_id=task_id,
            eta=task.run_after,
            priority=celery_priority(task.priority, low_number_first=low_first),
            # The worker rebuilds the task's own priority from this header (fennel).
            headers={fennel.DJANGO_TASKS_PRIORITY_HEADER: task.priority},
            queue=task.queue_name,
        )
        result: TaskResult[..., Any] = TaskResult(
            task=task,
            id=task_id,
            status=TaskResultStatus.READY,
            enqueued_at=enqueued_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        for message in super().check(**kwargs):
            text = str(message.msg)
            # fennel's app config only installs a default Celery app; this module is ours.
            if "django_tasks_fennel app not installed" in text:
                continue
            # Priorities are mapped per broker above, Redis included.
            if "priority support requires an AMQP-compatible broker" in text:
                continue
            yield message
        if not app.conf.broker_url:
            yield checks.Error(
                "TASKS_BACKEND is celery but no broker is configured.",
                hint="Set CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0.",
                id="learning_engine.E101",
            )
