"""Signals other apps listen to, so that ``training`` never imports them.

``job_completed(sender=TrainingJob, job_id=int)`` is sent on commit after a job completes; the
model registry registers the version.

``job_queued(sender=TrainingJob, job_id=int, priority=int)`` is sent on commit when a job is queued
(created, retried or requeued); ``training.tasks`` puts it on the worker queue (connected in
``TrainingConfig.ready()``: the model never imports the tasks that import it).

``sweep(sender=TrainingJob, now=datetime)`` is sent by every reaper pass (not on a dry run). A
receiver repairs what a crash between a commit and its on-commit hook could leave behind (the
registry: a completed job whose worker died before its version was registered) and returns a
plain-JSON dict whose keys the reaper adds to its summary (never replacing its own).
"""

from __future__ import annotations

from django.dispatch import Signal

job_completed = Signal()
job_queued = Signal()
sweep = Signal()
