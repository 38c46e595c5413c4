"""The loop's reading of monitoring (learning.health over monitoring.health.current)."""

from __future__ import annotations

from django.utils import timezone

from learning import health, triggers
from monitoring.models import MonitoringSnapshot


def snapshot(world, *, degraded: bool = False, inputs: int = 500, drift: dict | None = None) -> MonitoringSnapshot:
    now = timezone.now()
    return MonitoringSnapshot.objects.create(
        model_type=world.model_type,
        version=world.champion,
        since=now,
        window_start=now,
        predictions=inputs,
        predictions_total=inputs,
        labelled=0,
        correct=0,
        tolerance=0.05,
        alpha=0.05,
        degraded=degraded,
        inputs=inputs,
        drift=drift or {},
        psi_threshold=0.2,
    )


def test_no_snapshot_is_no_reading(world):
    assert health.current(world.champion) is None


def test_degradation_and_every_inputs_psi_are_read_from_the_latest_snapshot(world, settings):
    settings.MONITORING_MIN_INPUTS = 100
    snapshot(world, degraded=True, drift={"findings.spo2": {"psi": 0.12}, "age": {"psi": None}, "sex": {"psi": 0.03}})
    reading = health.current(world.champion)
    assert reading is not None
    assert reading.degraded is True
    # Below monitoring's own threshold too: the policy's threshold decides.
    assert reading.drift == {"findings.spo2": 0.12, "sex": 0.03}
    checks = {c.trigger: c for c in triggers.evaluate(world.model_type, world.policy(trigger_drift_psi=0.1))}
    assert checks["drift"].fired
    assert checks["degradation"].fired


def test_drift_of_too_few_inputs_is_not_read(world, settings):
    settings.MONITORING_MIN_INPUTS = 100
    snapshot(world, inputs=99, drift={"findings.spo2": {"psi": 0.9}})
    reading = health.current(world.champion)
    assert reading is not None
    assert reading.drift == {}
