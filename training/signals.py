"""Signals other apps listen to, so that ``training`` never imports them.

``job_completed(sender=TrainingJob, job_id=int)`` is sent on commit after a job completes; the
model registry registers the version.

``sweep(sender=TrainingJob, now=datetime)`` is sent by every reaper pass (not on a dry run). A
receiver repairs what a crash between a commit and its on-commit hook could leave behind (the
registry: a completed job whose worker died before its version was registered) and returns a
plain-JSON dict whose keys the reaper adds to its summary (never replacing its own).
"""

from __future__ import annotations

from django.dispatch import Signal

job_completed = Signal()
sweep = Signal()
