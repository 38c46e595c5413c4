"""Reference profiles, live tallies and snapshots through the real serving path."""

from __future__ import annotations

import logging

import pytest

from alerts.event_types import EventType
from alerts.models import AlertEvent
from models_registry.models import Prediction
from monitoring import health
from monitoring.compute import compute_snapshot, current_scopes, version_scope
from monitoring.models import InputTally, MonitoringSnapshot, ReferenceProfile
from monitoring.recording import FEATURES
from tests.models_registry.serving.factories import (
    COLD,
    COLD_FEATURES,
    PNEUMONIA,
    PNEUMONIA_FEATURES,
    served_version,
)
from tests.monitoring.factories import predict_batch, with_subjects

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.MONITORING_MIN_INPUTS = 10
    FEATURES.clear()
    yield
    FEATURES.clear()


def test_a_version_registered_from_a_snapshot_records_its_training_reference(version):
    reference = ReferenceProfile.objects.get(version=version)
    assert reference.train_size == 80
    assert reference.dataset_id == version.dataset_id
    features = reference.profile["features"]
    temperature = features["findings.temperature_c"]
    assert temperature["kind"] == "numeric"
    assert len(temperature["edges"]) == 9
    assert temperature["edges"] == sorted(temperature["edges"])
    assert sum(temperature["counts"]) == 80
    assert temperature["missing"] == 0
    assert temperature["expected_range"] == [30, 44]  # the respiratory dictionary's
    # The snapshot's rows carry no heart rate: all missing in training.
    assert features["findings.heart_rate"]["missing"] == 80
    assert features["sex"]["categories"] == ["female", "male"]
    assert features["symptoms.fever"]["categories"] == ["absent", "present"]
    assert features["symptoms.fever"]["counts"] == [40, 40, 0]


def test_a_version_without_a_snapshot_has_no_reference_and_its_snapshot_says_so(system):
    version = served_version()
    assert not ReferenceProfile.objects.filter(version=version).exists()
    predict_batch(system, [PNEUMONIA_FEATURES] * 12)
    snapshot = compute_snapshot(version_scope(version))
    assert not snapshot.has_reference
    assert snapshot.inputs == 12
    assert snapshot.max_psi is None
    assert snapshot.drifted == {}
    assert snapshot.drift["findings.temperature_c"]["psi"] is None
    assert snapshot.drift["findings.temperature_c"]["missing_rate"] == 0.0


def test_served_inputs_are_tallied_per_request_as_counts_only(version, system):
    predict_batch(system, [PNEUMONIA_FEATURES] * 3 + [COLD_FEATURES])
    tally = InputTally.objects.get(version=version)
    assert tally.count == 4
    assert tally.arm == ""
    assert tally.ab_test is None
    assert sum(tally.tally["bins"]["findings.temperature_c"]) == 4
    # No value of a record is stored: only counts (integers) per bin.
    stored = tally.tally["bins"]
    assert all(isinstance(count, int) for counts in stored.values() for count in counts)
    assert "39.4" not in str(tally.tally)
    assert "118" not in str(tally.tally)


def test_a_tally_row_is_written_with_its_time_and_its_arm(version, system):
    from django.utils import timezone

    before = timezone.now()
    predict_batch(system, [PNEUMONIA_FEATURES])
    tally = InputTally.objects.get(version=version)
    assert before <= tally.created_at <= timezone.now()
    assert (tally.count, tally.arm, tally.ab_test_id) == (1, "", None)
    assert tally.tally["count"] == 1


def test_a_value_is_binned_as_numpys_searchsorted_on_the_left():
    import numpy as np

    from monitoring.profiles import NUMERIC, Feature, bin_index

    feature = Feature("findings.temperature_c", NUMERIC, edges=(36.5, 37.0, 37.0, 38.2))
    for value in (30.0, 36.5, 36.6, 37.0, 37.1, 38.2, 38.3, 45):
        assert bin_index(feature, value) == int(np.searchsorted(feature.edges, value, side="left")), value


def test_snapshot_figures_of_real_predictions_and_feedback(
    version, system, clinician, django_capture_on_commit_callbacks
):
    # 30 pneumonia answers (all at 39.4 degrees: far into the reference's top bin), one at 44.5
    # (outside the dictionary's expected range of 30-44), and 9 colds.
    hot = {**PNEUMONIA_FEATURES, "findings": {**PNEUMONIA_FEATURES["findings"], "temperature_c": 44.5}}
    answered = predict_batch(system, with_subjects(PNEUMONIA_FEATURES, 30, "p") + [hot] + [COLD_FEATURES] * 9)
    for prediction in answered[:20]:
        prediction.give_feedback(diagnosis_code=prediction.predicted_code, by=clinician)
    with django_capture_on_commit_callbacks(execute=True):  # the alert is recorded on commit
        snapshot = compute_snapshot(version_scope(version))

    assert (snapshot.predictions, snapshot.predictions_total, snapshot.inputs) == (40, 40, 40)
    assert (snapshot.labelled, snapshot.correct, snapshot.units) == (20, 20, 20)
    assert snapshot.live_accuracy == 1.0
    assert snapshot.accuracy_low is not None
    assert snapshot.accuracy_high is not None
    assert snapshot.accuracy_low < 1.0 <= snapshot.accuracy_high
    assert not snapshot.degraded
    assert snapshot.offline_accuracy == version.metrics["accuracy"]
    assert snapshot.prediction_shares == {COLD: 9 / 40, PNEUMONIA: 31 / 40}
    assert snapshot.reference_prediction_shares
    assert snapshot.prediction_psi is not None
    assert snapshot.has_reference
    temperature = snapshot.drift["findings.temperature_c"]
    assert temperature["psi"] > 1.0
    assert temperature["missing_rate"] == 0.0
    assert temperature["reference_missing_rate"] == 0.0
    assert temperature["out_of_range_rate"] == pytest.approx(1 / 40)
    # Heart rate was never in training (all missing there) and is always sent now.
    assert snapshot.drift["findings.heart_rate"]["reference_missing_rate"] == 1.0
    assert snapshot.drift["findings.heart_rate"]["missing_rate"] == 0.0
    assert "findings.temperature_c" in snapshot.drifted
    drift_event = AlertEvent.objects.get(event_type=EventType.DRIFT_DETECTED)
    assert drift_event.data["psi"] == snapshot.drifted
    assert snapshot.max_psi == max(figure["psi"] for figure in snapshot.drift.values() if figure["psi"] is not None)
    assert snapshot.ece is not None
    assert sum(row["count"] for row in snapshot.calibration) == 20

    found = health.current(version)
    assert found.snapshot == snapshot
    assert not found.degraded
    assert found.drifted["findings.temperature_c"] == pytest.approx(temperature["psi"])


def test_few_inputs_never_mark_an_input_drifted(version, system, settings):
    settings.MONITORING_MIN_INPUTS = 100
    predict_batch(system, [PNEUMONIA_FEATURES] * 20)
    snapshot = compute_snapshot(version_scope(version))
    assert snapshot.max_psi is not None
    assert snapshot.max_psi > 1.0
    assert snapshot.drifted == {}


def test_a_version_whose_live_accuracy_falls_is_degraded_and_announced_once(
    version, system, clinician, django_capture_on_commit_callbacks
):
    answered = predict_batch(system, with_subjects(PNEUMONIA_FEATURES, 40, "s"))
    for prediction in answered:
        prediction.give_feedback(diagnosis_code=COLD, by=clinician)  # every answer wrong
    with django_capture_on_commit_callbacks(execute=True):  # the alert is recorded on commit
        first = compute_snapshot(version_scope(version))
        second = compute_snapshot(version_scope(version))
    assert first.degraded
    assert second.degraded
    assert first.accuracy_high is not None
    assert first.offline_accuracy is not None
    assert first.accuracy_high < first.offline_accuracy - first.tolerance
    announced = AlertEvent.objects.filter(event_type=EventType.VERSION_DEGRADED)
    assert announced.count() == 1
    event = announced.get()
    assert event.model_type == version.model_type.slug
    assert event.data["snapshot"] == first.pk
    assert event.data["interval"] == [first.accuracy_low, first.accuracy_high]
    assert "s-0" not in str(event.data)  # no subject key, no pseudonym
    assert health.current(version).degraded


def test_a_subject_seen_many_times_is_one_unit(version, system, clinician):
    answered = predict_batch(system, [{**PNEUMONIA_FEATURES, "subject_key": "same"}] * 10)
    for prediction in answered:
        prediction.give_feedback(diagnosis_code=COLD, by=clinician)
    snapshot = compute_snapshot(version_scope(version))
    assert (snapshot.labelled, snapshot.units) == (10, 1)
    assert not snapshot.degraded  # one patient is not evidence about the model


def test_a_version_never_monitored_is_healthy_without_a_snapshot(version):
    found = health.current(version)
    assert (found.degraded, found.drifted, found.snapshot) == (False, {}, None)


def test_a_failing_observer_never_costs_the_answer(version, system, monkeypatch, caplog):
    def broken(version_id):
        raise RuntimeError("tally store unavailable")

    monkeypatch.setattr(FEATURES, "get", broken)
    with caplog.at_level(logging.ERROR):
        answered = predict_batch(system, [PNEUMONIA_FEATURES])
    assert len(answered) == 1
    assert Prediction.objects.count() == 1
    assert not InputTally.objects.exists()
    assert "input observer failed" in caplog.text


def test_an_observer_whose_statement_fails_never_costs_the_log_row(version, system, monkeypatch, caplog):
    # A failed statement spoils PostgreSQL's transaction: the log rows are written again without
    # the observers (no savepoint is paid for on every request).
    from django.db import connection

    from monitoring import recording

    def failing(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_for_tallies")
        raise AssertionError("unreachable")

    monkeypatch.setattr(recording, "insert_rows", failing)
    with caplog.at_level(logging.ERROR):
        answered = predict_batch(system, [PNEUMONIA_FEATURES, PNEUMONIA_FEATURES])
    assert [row.pk for row in answered] == list(Prediction.objects.order_by("pk").values_list("pk", flat=True))
    assert Prediction.objects.count() == 2
    assert not InputTally.objects.exists()
    assert "input observer failed on 2 inputs" in caplog.text


def test_the_log_rows_are_written_in_a_queued_write(version, system, monkeypatch):
    # On a SQLite file, writers queue on a lock that wakes them at once (learning_engine/sqlite_writers.py).
    import contextlib

    from models_registry.serving import serve

    entered = []

    @contextlib.contextmanager
    def recording(alias):
        entered.append(alias)
        yield

    monkeypatch.setattr(serve, "queued_write", recording)
    predict_batch(system, [PNEUMONIA_FEATURES])
    assert entered == ["default"]
    assert Prediction.objects.count() == 1


def test_tallies_are_worked_out_before_the_log_transaction_and_written_inside_it(version, system, monkeypatch):
    # SQLite's write lock is not held while the tally is counted; its INSERT commits with the log.
    from django.db import connection

    from monitoring import recording
    from monitoring.profiles import Tally

    seen = {}
    counting, inserting = Tally.add, recording.insert_rows

    def add(self, row):
        seen["counted"] = len(connection.savepoint_ids)  # the test's own transaction holds them all
        return counting(self, row)

    def insert(*args, **kwargs):
        seen["written"] = len(connection.savepoint_ids)
        return inserting(*args, **kwargs)

    monkeypatch.setattr(Tally, "add", add)
    monkeypatch.setattr(recording, "insert_rows", insert)
    predict_batch(system, [PNEUMONIA_FEATURES])
    assert seen["written"] == seen["counted"] + 1  # one level deeper: serve's transaction
    assert InputTally.objects.get().count == 1


def test_scopes_are_the_active_versions_and_each_running_arm(version, engineer, lead):
    from tests.models_registry.experiments.factories import start_test

    challenger = served_version(model_type=version.model_type, engineer=engineer, lead=lead, activate=False, seed=1)
    test = start_test(version, challenger, by=engineer)
    scopes = current_scopes()
    assert [(s.version, s.ab_test, s.arm) for s in scopes] == [
        (version, None, ""),
        (version, test, "a"),
        (challenger, test, "b"),
    ]
    snapshots = [compute_snapshot(scope) for scope in scopes]
    assert MonitoringSnapshot.objects.count() == 3
    assert health.current(version).snapshot == snapshots[0]
    assert health.current(challenger, ab_test=test, arm="b").snapshot == snapshots[2]


def test_a_shadow_arm_has_its_inputs_tallied_and_its_silent_answers_scored(version, engineer, lead, system, clinician):
    from tests.models_registry.experiments.factories import start_test

    challenger = served_version(model_type=version.model_type, engineer=engineer, lead=lead, activate=False, seed=1)
    test = start_test(version, challenger, by=engineer, mode="shadow")
    answered = predict_batch(system, with_subjects(PNEUMONIA_FEATURES, 6, "sh"))
    tallies = InputTally.objects.filter(ab_test=test).order_by("arm")
    assert [(t.version, t.arm, t.count) for t in tallies] == [(version, "a", 6), (challenger, "b", 6)]
    for prediction in answered:
        prediction.give_feedback(diagnosis_code=PNEUMONIA, by=clinician)
    silent = compute_snapshot(next(s for s in current_scopes() if s.arm == "b"))
    assert (silent.version, silent.predictions, silent.inputs, silent.labelled) == (challenger, 6, 6, 6)


def test_a_late_drop_is_degraded_by_the_recent_window_not_by_the_since_activation_reading(
    version, system, clinician, settings
):
    # 300 patients answered right, then 40 wrong. Since activation the accuracy is 88% against a
    # bar of offline - 0.2; the recent epoch (units 300-339, a fresh sequence) is all wrong.
    settings.MONITORING_TOLERANCE = 0.2
    answered = predict_batch(system, with_subjects(PNEUMONIA_FEATURES, 340, "late"))
    for prediction in answered[:300]:
        prediction.give_feedback(diagnosis_code=prediction.predicted_code, by=clinician)
    for prediction in answered[300:]:
        prediction.give_feedback(diagnosis_code=COLD if prediction.predicted_code != COLD else PNEUMONIA, by=clinician)

    settings.MONITORING_DEGRADATION_WINDOW = 0
    whole = compute_snapshot(version_scope(version))
    settings.MONITORING_DEGRADATION_WINDOW = 30
    recent = compute_snapshot(version_scope(version))

    assert not whole.degraded
    assert (whole.degradation_window, whole.recent_units) == (0, 340)
    assert recent.degraded
    assert (recent.degradation_window, recent.recent_start, recent.recent_units) == (30, 300, 40)
    assert recent.recent_accuracy == 0.0
    assert recent.recent_high is not None
    assert recent.offline_accuracy is not None
    assert recent.recent_high < recent.offline_accuracy - recent.tolerance
    assert recent.live_accuracy == pytest.approx(300 / 340)  # the since-activation figure, unchanged
    assert health.current(version).degraded
