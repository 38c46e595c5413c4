"""The project's own tables: the row behind each periodic chain (``learning_engine.periodic``)."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import models, transaction
from django.utils import timezone


class PeriodicSchedule(models.Model):
    """Which chain of a periodic task is the live one, and when it runs next.

    ``token`` names the live chain: a run whose token is no longer the row's stops without
    re-enqueueing, so a chain started twice (two web processes, a restart) collapses to one.
    """

    name = models.CharField(max_length=100, primary_key=True)
    token = models.UUIDField(default=uuid.uuid4)
    interval_seconds = models.PositiveIntegerField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField()

    class Meta:
        verbose_name = "periodic schedule"
        # The table keeps the name it had in training, where the model lived first: the move to
        # learning_engine changed Django's state only (learning_engine/migrations/0001), so
        # existing databases keep their rows and a web process of the release before still finds it.
        db_table = "training_periodicschedule"

    def __str__(self) -> str:
        return f"{self.name} every {self.interval_seconds}s"

    @classmethod
    def start_chain_if_idle(cls, name: str, *, interval_seconds: int) -> uuid.UUID | None:
        """A new chain token when none ran for two intervals, else None (the live chain goes on)."""
        now = timezone.now()
        grace = dt.timedelta(seconds=2 * interval_seconds)
        token = uuid.uuid4()
        with transaction.atomic():
            row, created = cls.objects.get_or_create(
                name=name, defaults={"token": token, "interval_seconds": interval_seconds, "next_run_at": now}
            )
            if created:
                return token
            if row.next_run_at + grace > now:
                return None
            # Conditional on the token we read: of two processes reviving the chain, one wins.
            won = cls.objects.filter(name=name, token=row.token).update(
                token=token, next_run_at=now, interval_seconds=interval_seconds
            )
        return token if won else None

    @classmethod
    def claim_run(cls, name: str, token: uuid.UUID | str) -> dt.datetime | None:
        """Record a run of chain ``token``; returns when the next run is due, or None if superseded."""
        now = timezone.now()
        row = cls.objects.filter(name=name, token=token).first()
        if row is None:
            return None
        next_run = now + dt.timedelta(seconds=row.interval_seconds)
        updated = cls.objects.filter(name=name, token=token).update(last_run_at=now, next_run_at=next_run)
        return next_run if updated else None
