"""Signals other apps listen to, so that ``training`` never imports them.

``job_completed(sender=TrainingJob, job_id=int)`` is sent on commit after a job completes; the
model registry registers the version.
"""

from __future__ import annotations

from django.dispatch import Signal

job_completed = Signal()
