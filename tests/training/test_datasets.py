"""Dataset snapshots: the builder, its file, the residual-identifier scan and ``prepare_dataset``."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import scanning
from cases.deid.identifiers import fold
from cases.deid.records import deidentify, record_sha256
from cases.deid.residual import RESIDUAL_KEYS_FORMAT, ResidualIndex, residual_keys
from cases.deid.safe_harbor import POLICY_VERSION
from cases.deid.scrubbing import OwnIdentifiers
from cases.derived import approval_columns
from cases.models import Case
from cases.rows import STORED_ROW_FORMAT, row_from_record, stored_row
from learning_engine import roles
from learning_engine.exceptions import InvalidRequest, TransitionError
from tests.cases.dictionary_factories import published_dictionary
from tests.cases.factories import family_name, given_name
from tests.factories import UserFactory, user_with_role
from tests.training.factories import (
    DIAGNOSES,
    DatasetSnapshotFactory,
    ModelTypeFactory,
    approved_cohort,
)
from training import datasets, splitting
from training.dataset_format import SCHEMA
from training.datasets import DatasetBuildError, build_snapshot, canonical_json, create_snapshot, file_cases
from training.models import DatasetSnapshot, ImmutableSnapshot, ModelType

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def stored_files(media: Path) -> list[Path]:
    folder = media / "media" / "datasets"
    return sorted(folder.iterdir()) if folder.exists() else []


def leftover_temporary_files(media: Path) -> list[Path]:
    return sorted((media / "tmp").iterdir())


def build(model_type, **options) -> DatasetSnapshot:
    snapshot = create_snapshot(model_type, by=UserFactory.create(), **options)
    build_snapshot(snapshot.pk)
    snapshot.refresh_from_db()
    return snapshot


def build_error(model_type, **options) -> tuple[DatasetSnapshot, DatasetBuildError]:
    snapshot = create_snapshot(model_type, by=UserFactory.create(), **options)
    with pytest.raises(DatasetBuildError) as caught:
        build_snapshot(snapshot.pk)
    snapshot.refresh_from_db()
    return snapshot, caught.value


def name_of(snapshot: DatasetSnapshot) -> str:
    return str(snapshot.file.name)


def stored_bytes(snapshot: DatasetSnapshot) -> bytes:
    with default_storage.open(name_of(snapshot), "rb") as handle:
        return handle.read()


def record_of(case: Case) -> dict[str, Any]:
    assert case.deidentified is not None
    return dict(case.deidentified)


def store(case: Case, *, deidentified: dict[str, Any] | None = None, patient: dict[str, Any] | None = None) -> None:
    """Write an approved case's record or patient block directly, with the columns approval derives
    from them (as a re-approval would store them)."""
    case.refresh_from_db()
    record = record_of(case) if deidentified is None else deidentified
    block = case.patient if patient is None else patient
    Case.objects.filter(pk=case.pk).update(deidentified=record, patient=block, **approval_columns(block, record))


def read_file(snapshot: DatasetSnapshot):
    return pq.read_table(io.BytesIO(stored_bytes(snapshot)))


@pytest.fixture
def model_type():
    """Not the root conftest's "diagnosis" type: a type with a cohort of its own, whose cases a build counts."""
    return ModelTypeFactory.create()


# --- A good build --------------------------------------------------------------------------------


def test_build_makes_a_ready_snapshot_with_manifest_counts_hashes_and_file(model_type, media_root):
    cases = approved_cohort(model_type.cohort, patients=10, cases_per_patient=2, diagnoses=DIAGNOSES[:3])
    snapshot = build(model_type)

    assert snapshot.status == DatasetSnapshot.Status.READY
    assert snapshot.error == ""
    assert snapshot.case_count == 20
    assert snapshot.patient_count == 10
    assert sorted(itertools.chain(*snapshot.manifest.values())) == sorted(case.pk for case in cases)
    assert all(snapshot.manifest[split] for split in ("train", "validation", "test"))
    assert {split: sum(counts.values()) for split, counts in snapshot.label_counts.items()} == {
        split: len(ids) for split, ids in snapshot.manifest.items()
    }
    assert snapshot.policy_version == POLICY_VERSION
    assert snapshot.filters["cohort"] == model_type.cohort
    assert snapshot.filters["min_quality"] == model_type.min_quality
    assert snapshot.scan_report["clean"] is True
    assert snapshot.scan_report["cases_scanned"] == 20
    assert snapshot.finished_at is not None
    assert snapshot.transitions.get().to_state == DatasetSnapshot.Status.READY

    assert name_of(snapshot) == f"datasets/{snapshot.pk}-{snapshot.content_hash[:12]}.parquet"
    assert stored_files(media_root) == [media_root / "media" / name_of(snapshot)]
    data = (media_root / "media" / name_of(snapshot)).read_bytes()
    import hashlib

    assert snapshot.file_sha256 == hashlib.sha256(data).hexdigest()
    assert snapshot.file_size == len(data)
    assert leftover_temporary_files(media_root) == []


def test_no_patient_is_in_two_splits_of_a_built_snapshot(model_type):
    approved_cohort(model_type.cohort, patients=15, cases_per_patient=[1, 2, 3, 4, 5] * 3, diagnoses=DIAGNOSES)
    snapshot = build(model_type)
    pseudonyms = {
        split: set(Case.objects.filter(pk__in=ids).values_list("patient_pseudonym", flat=True))
        for split, ids in snapshot.manifest.items()
    }
    for first, second in itertools.combinations(pseudonyms, 2):
        assert not pseudonyms[first] & pseudonyms[second], (first, second)


def test_the_file_round_trips_with_deidentified_fields_only(model_type):
    cases = approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    snapshot = build(model_type)
    table = read_file(snapshot)

    assert table.schema.names == SCHEMA.names
    assert "note" not in table.schema.names
    assert table.schema.metadata[b"format_version"] == SCHEMA.metadata[b"format_version"]
    rows = table.to_pylist()
    for split, ids in snapshot.manifest.items():
        assert sorted(row["case_id"] for row in rows if row["split"] == split) == ids
    by_id = {case.pk: case for case in cases}
    for row in rows:
        case = by_id[row["case_id"]]
        case.refresh_from_db()
        expected = row_from_record(record_of(case), case_id=case.pk, split=row["split"])
        # Findings as a mapping: the file has them in key order, the record as the database keeps it.
        assert {**row, "findings": dict(row["findings"])} == {**expected, "findings": dict(expected["findings"])}
        assert row["patient_pseudonym"] == case.patient_pseudonym
    flat = json.dumps(rows, default=str)
    for case in cases:
        for identifier in (case.patient["name"], case.patient["mrn"], case.patient["ssn"], case.patient["email"]):
            assert identifier not in flat


def test_no_finding_or_symptom_outside_the_snapshots_dictionary_reaches_the_file(model_type, caplog):
    # Cases approved before the cohort had a dictionary: keys the version does not define (one of
    # them could as well have been an identifier) and a symptom outside its vocabulary, beside ones
    # it defines.
    findings = {"temperature_c": 38.1, "bogus_feature": 120, "heart_rate": 90, "spo2": 93}
    cases = approved_cohort(
        model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3], findings=findings, symptoms=["cough", "wheeze"]
    )
    dictionary = published_dictionary(model_type.cohort)  # heart_rate, temperature_c, ...; cough, fever
    assert set(json.loads(Case.objects.get(pk=cases[0].pk).deid_dataset_row)["finding_keys"]) == set(findings)

    with caplog.at_level(logging.INFO, logger="training.datasets"):
        snapshot = build(model_type)

    assert (snapshot.status, snapshot.dictionary) == (DatasetSnapshot.Status.READY, dictionary)
    rows = read_file(snapshot).to_pylist()
    assert len(rows) == 12
    for row in rows:
        assert dict(row["findings"]) == {"heart_rate": 90.0, "temperature_c": 38.1}  # values kept with their keys
        assert row["symptoms"] == ["cough"]
    assert b"bogus_feature" not in stored_bytes(snapshot)
    assert b"wheeze" not in stored_bytes(snapshot)
    assert "36 findings or symptoms outside its data dictionary left out" in caplog.text
    assert "bogus" not in caplog.text


def test_a_case_its_dictionary_flagged_stays_out_of_datasets_until_corrected(model_type):
    cases = approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    flagged = cases[0]
    errors = [{"code": "outside_hard_limits", "field": "findings.spo2", "message": "SpO2 is outside its hard limits."}]
    Case.objects.filter(pk=flagged.pk).update(dictionary_errors=errors, dictionary=None)

    snapshot = build(model_type)

    assert snapshot.status == DatasetSnapshot.Status.READY
    assert flagged.pk not in snapshot.case_ids()
    assert sorted(snapshot.case_ids()) == sorted(case.pk for case in cases[1:])


def test_same_cases_and_seed_give_the_same_hash_and_manifest(model_type):
    approved_cohort(model_type.cohort, patients=12, cases_per_patient=2, diagnoses=DIAGNOSES[:3])
    first = build(model_type, seed=7)
    second = build(model_type, seed=7)
    other_seed = build(model_type, seed=8)

    assert second.content_hash == first.content_hash
    assert second.manifest == first.manifest
    assert second.label_counts == first.label_counts
    assert second.file.name != first.file.name  # one file per snapshot, never overwritten
    assert other_seed.content_hash != first.content_hash


def test_the_content_hash_covers_the_records_and_their_splits(model_type):
    cases = approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    first = build(model_type)
    # The same cases with one record changed (a finding corrected at the source, say).
    record = record_of(cases[0])
    record["findings"]["heart_rate"] = record["findings"].get("heart_rate", 0) + 1
    store(cases[0], deidentified=record)
    changed = build(model_type)
    assert changed.manifest == first.manifest
    assert changed.content_hash != first.content_hash


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == canonical_json(
        {"a": {"c": "é", "d": [1, 2]}, "b": 1}
    )
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()


_cohort_numbers = itertools.count()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cases_per_patient=st.lists(st.integers(min_value=1, max_value=3), min_size=6, max_size=12),
    labels=st.integers(min_value=2, max_value=4),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_generated_cohorts_build_patient_disjoint_reproducible_snapshots(cases_per_patient, labels, seed):
    model_type: ModelType = ModelTypeFactory.create(cohort=f"generated-{next(_cohort_numbers)}", min_cases_to_train=4)
    cases = approved_cohort(
        model_type.cohort,
        patients=len(cases_per_patient),
        cases_per_patient=cases_per_patient,
        diagnoses=DIAGNOSES[:labels],
    )
    first = build(model_type, seed=seed)
    second = build(model_type, seed=seed)

    assert first.status == second.status == DatasetSnapshot.Status.READY
    assert (second.content_hash, second.manifest) == (first.content_hash, first.manifest)
    patient_of = {case.pk: case.patient_pseudonym for case in cases}
    splits_of_patient: dict[str, set[str]] = {}
    for split, ids in first.manifest.items():
        for case_id in ids:
            splits_of_patient.setdefault(patient_of[case_id], set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of_patient.values())
    rows = read_file(first).to_pylist()
    assert {row["case_id"]: row["split"] for row in rows} == {
        case_id: split for split, ids in first.manifest.items() for case_id in ids
    }


def test_filters_select_by_quality_date_status_and_cohort(model_type):
    kept = approved_cohort(model_type.cohort, patients=10, diagnoses=DIAGNOSES[:2])
    approved_cohort("another-cohort", patients=3)
    low = approved_cohort(model_type.cohort, patients=2)
    Case.objects.filter(pk__in=[case.pk for case in low]).update(quality_score=0.1)
    approved_cohort(model_type.cohort, patients=2, encounter_date="2001-06-01")
    retracted = approved_cohort(model_type.cohort, patients=2)
    for case in retracted:
        case.retract(by=UserFactory.create(), reason="Wrong patient.")

    snapshot = build(model_type, encounter_after=dt.date(2010, 1, 1))
    chosen = set(itertools.chain(*snapshot.manifest.values()))
    assert chosen == {case.pk for case in kept}
    assert snapshot.filters["encounter_after"] == "2010-01-01"

    only_old, error = build_error(model_type, min_quality=0.0, encounter_before=dt.date(2001, 12, 31))
    assert error.code == "too_few_cases"  # the two old cases alone
    assert "has 2" in only_old.error  # whole years: the count may be told
    assert "encounters until 2001-12-31" in only_old.error


# --- Refusals ------------------------------------------------------------------------------------


def test_an_empty_cohort_fails_with_a_clear_message(model_type):
    snapshot, error = build_error(model_type)
    assert error.code == "empty_cohort"
    assert snapshot.status == DatasetSnapshot.Status.FAILED
    assert snapshot.error == error.message
    assert model_type.cohort in snapshot.error
    assert "empty" in snapshot.error
    assert not snapshot.file


def test_too_few_cases_fail_with_the_numbers(model_type):
    approved_cohort(model_type.cohort, patients=5)
    snapshot, error = build_error(model_type)
    assert error.code == "too_few_cases"
    assert "has 5" in snapshot.error
    assert "at least 8" in snapshot.error


def test_a_label_with_a_single_case_is_named(model_type):
    approved_cohort(model_type.cohort, patients=10, diagnoses=DIAGNOSES[:2])
    approved_cohort(model_type.cohort, patients=1, diagnoses=[("C34.9", "Lung cancer, unspecified")])
    snapshot, error = build_error(model_type)
    assert error.code == "single_case_label"
    assert "C34.9" in snapshot.error


def test_a_single_label_is_not_enough(model_type):
    approved_cohort(model_type.cohort, patients=10, diagnoses=DIAGNOSES[:1])
    snapshot, error = build_error(model_type)
    assert error.code == "too_few_labels"
    assert DIAGNOSES[0][0] in snapshot.error


def test_cases_of_an_older_policy_are_deidentified_again_before_the_build(model_type):
    """A record made under an older policy may hold what the current one removes: the build makes it
    again from the raw record instead of refusing the mix or passing it on."""
    cases = approved_cohort(model_type.cohort, patients=10)
    old = cases[0]
    name = old.patient["name"]
    plant(old, symptoms=["cough", f"daughter {given_name(name)} worried"])
    Case.objects.filter(pk=old.pk).update(deid_policy_version="safe-harbor-1999.1", residual_keys="rk0 n:x")

    snapshot = build(model_type)

    old.refresh_from_db()
    assert snapshot.status == DatasetSnapshot.Status.READY
    assert snapshot.policy_version == POLICY_VERSION
    assert old.deid_policy_version == POLICY_VERSION
    assert old.deidentified == deidentify(old.to_record(), key=django_settings.PSEUDONYM_KEY)
    assert old.residual_keys == residual_keys(old.patient)
    assert old.deid_dataset_row == stored_row(old.deidentified)


def test_too_few_patients_for_three_splits_are_refused(model_type):
    approved_cohort(model_type.cohort, patients=2, cases_per_patient=5)
    snapshot, error = build_error(model_type)
    assert error.code == "too_few_patients"
    assert "validation" in snapshot.error or "test" in snapshot.error


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "invalid_fractions"),
        ({"test_fraction": 0.0}, "invalid_fractions"),
        ({"validation_fraction": -0.1}, "invalid_fractions"),
        ({"min_quality": 1.5}, "invalid_quality"),
        ({"encounter_after": dt.date(2026, 1, 1), "encounter_before": dt.date(2025, 1, 1)}, "invalid_date_range"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_created(model_type, options, code):
    with pytest.raises(InvalidRequest) as caught:
        create_snapshot(model_type, by=None, **options)
    assert caught.value.code == code
    assert not DatasetSnapshot.objects.exists()


# --- The encounter date range: whole years without the PHI permission --------------------------


@pytest.mark.parametrize("author", [None, roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_a_date_range_finer_than_whole_years_is_refused_without_the_phi_permission(model_type, author):
    by = user_with_role(author) if author else None
    with pytest.raises(InvalidRequest) as caught:
        create_snapshot(model_type, by=by, encounter_after=dt.date(2024, 5, 11), encounter_before=dt.date(2024, 5, 11))

    assert caught.value.code == "date_range_too_fine"
    assert set(caught.value.extra["errors"]) == {"encounter_after", "encounter_before"}
    assert not DatasetSnapshot.objects.exists()


def test_whole_years_are_allowed_to_anyone_and_a_finer_range_to_a_phi_user(model_type):
    years = create_snapshot(
        model_type, by=None, encounter_after=dt.date(2024, 1, 1), encounter_before=dt.date(2025, 12, 31)
    )
    day = create_snapshot(
        model_type,
        by=user_with_role(roles.CLINICIAN),
        encounter_after=dt.date(2024, 5, 11),
        encounter_before=dt.date(2024, 5, 11),
    )

    assert years.filters["encounter_before"] == "2025-12-31"
    assert day.filters["encounter_after"] == "2024-05-11"


def test_a_failed_build_over_a_fine_range_tells_no_count_and_no_label(model_type):
    approved_cohort(model_type.cohort, patients=1, encounter_date="2024-05-11")
    approved_cohort(model_type.cohort, patients=12, encounter_date="2023-03-01")
    clinician = user_with_role(roles.CLINICIAN)
    day = create_snapshot(
        model_type, by=clinician, encounter_after=dt.date(2024, 5, 11), encounter_before=dt.date(2024, 5, 11)
    )
    empty = create_snapshot(
        model_type, by=clinician, encounter_after=dt.date(2024, 5, 12), encounter_before=dt.date(2024, 5, 12)
    )

    errors = []
    for snapshot in (day, empty):
        with pytest.raises(DatasetBuildError) as caught:
            build_snapshot(snapshot.pk)
        snapshot.refresh_from_db()
        errors.append((caught.value.code, snapshot.error))

    # One case or none: the same code and the same words, so differencing two builds tells nothing.
    assert errors[0] == errors[1]
    assert errors[0][0] == "selection_too_small"
    assert not any(character.isdigit() for character in errors[0][1])
    assert all(code not in errors[0][1] for code, _ in DIAGNOSES)


def test_prepare_dataset_refuses_a_fine_range_without_a_phi_author(model_type):
    approved_cohort(model_type.cohort, patients=12, encounter_date="2024-05-11")
    user_with_role(roles.ML_ENGINEER, username="eng")
    user_with_role(roles.CLINICIAN, username="doc")
    day = ["--model-type", model_type.slug, "--encounter-after", "2024-05-11", "--encounter-before", "2024-05-11"]

    for author in ([], ["--created-by", "eng"]):
        with pytest.raises(CommandError, match=r"covers whole years.*--created-by"):
            run(*day, *author)
    assert not DatasetSnapshot.objects.exists()

    assert "ready" in run(*day, "--created-by", "doc", verbosity=0)


# --- Failing closed ------------------------------------------------------------------------------


def plant(case: Case, **changes) -> None:
    """Simulate a de-identification bug: a de-identified record (and what approval derives from it)
    that still holds an identifier."""
    record = record_of(case)
    record.update(changes)
    store(case, deidentified=record)


def assert_no_identifier_in(snapshot: DatasetSnapshot, *identifiers: str) -> None:
    stored = json.dumps({"error": snapshot.error, "scan_report": snapshot.scan_report})
    for identifier in identifiers:
        assert identifier not in stored


def test_a_planted_name_and_mrn_fail_the_snapshot_with_case_field_and_kind_only(model_type, media_root):
    cases = approved_cohort(model_type.cohort, patients=10)
    leaky = cases[3]
    name, mrn = leaky.patient["name"], leaky.patient["mrn"]
    plant(
        leaky,
        symptoms=["cough", f"seen by {name}"],
        diagnosis={"code": record_of(leaky)["diagnosis"]["code"], "label": f"Pneumonia ({mrn})"},
    )
    snapshot, error = build_error(model_type)

    assert error.code == "residual_identifiers"
    assert snapshot.status == DatasetSnapshot.Status.FAILED
    findings = snapshot.scan_report["findings"]
    assert {"case_id": leaky.pk, "field": "symptoms[1]", "kind": "NAME"} in findings
    assert {"case_id": leaky.pk, "field": "label_text", "kind": "MRN"} in findings
    assert {finding["case_id"] for finding in findings} == {leaky.pk}
    assert snapshot.scan_report["clean"] is False
    assert_no_identifier_in(snapshot, name, mrn, *name.split())
    assert not snapshot.file
    assert stored_files(media_root) == []
    assert leftover_temporary_files(media_root) == []


def test_an_identifier_in_a_findings_key_is_reported_by_position(model_type):
    cases = approved_cohort(model_type.cohort, patients=10)
    leaky = cases[0]
    ssn = leaky.patient["ssn"]
    plant(leaky, findings={"heart_rate": 90.0, f"note {ssn}": 1.0})
    snapshot, error = build_error(model_type)
    assert error.code == "residual_identifiers"
    assert {"case_id": leaky.pk, "field": "findings[1].key", "kind": "SSN"} in snapshot.scan_report["findings"]
    assert_no_identifier_in(snapshot, ssn)


def test_a_findings_key_that_joins_the_patients_surname_to_a_word_fails_the_snapshot(model_type):
    """``\\w`` joins "doe_score" into one word that no name matches: keys are scanned as words."""
    cases = approved_cohort(model_type.cohort, patients=10)
    leaky = cases[1]
    surname = family_name(leaky.patient["name"])
    plant(leaky, findings={"heart_rate": 90.0, f"{surname.lower()}_score": 1.0, f"x{surname}Level": 2.0})
    snapshot, error = build_error(model_type)
    assert error.code == "residual_identifiers"
    findings = snapshot.scan_report["findings"]
    keys = {f["field"] for f in findings if f["case_id"] == leaky.pk and f["field"].endswith(".key")}
    assert len(keys) == 2
    assert all(f["kind"] == "NAME" for f in findings if f["field"] in keys)
    assert_no_identifier_in(snapshot, surname, surname.lower())


def test_a_raw_mrn_in_the_pseudonym_column_fails_the_snapshot(model_type):
    cases = approved_cohort(model_type.cohort, patients=10)
    leaky = cases[2]
    mrn = leaky.patient["mrn"]
    plant(leaky, patient_pseudonym=mrn)
    Case.objects.filter(pk=leaky.pk).update(patient_pseudonym=mrn)
    snapshot, error = build_error(model_type)
    assert error.code == "residual_identifiers"
    assert {"case_id": leaky.pk, "field": "patient_pseudonym", "kind": "PSEUDONYM_FORMAT"} in snapshot.scan_report[
        "findings"
    ]
    assert_no_identifier_in(snapshot, mrn)


def test_a_phone_number_shape_is_found_even_when_it_is_not_the_patients(model_type):
    cases = approved_cohort(model_type.cohort, patients=10)
    plant(cases[1], symptoms=["call 617-555-0199 for results"])
    snapshot, _ = build_error(model_type)
    assert {"case_id": cases[1].pk, "field": "symptoms[0]", "kind": "PHONE"} in snapshot.scan_report["findings"]


def test_an_unexpected_error_fails_the_snapshot_without_quoting_data(model_type, media_root, monkeypatch):
    approved_cohort(model_type.cohort, patients=10)

    def broken_scan(batches):
        list(batches)
        raise RuntimeError("could not read 'Jane Doe'")

    monkeypatch.setattr(datasets, "scan_batches", broken_scan)
    snapshot, error = build_error(model_type)
    assert error.code == "build_error"
    assert snapshot.status == DatasetSnapshot.Status.FAILED
    assert "RuntimeError" in snapshot.error
    assert "Jane Doe" not in snapshot.error
    assert "Jane Doe" not in error.message
    assert stored_files(media_root) == []
    assert leftover_temporary_files(media_root) == []


def test_a_failure_after_storing_removes_the_stored_file(model_type, media_root, monkeypatch):
    approved_cohort(model_type.cohort, patients=10)

    def refuse(self, **results):
        raise RuntimeError("database went away")

    monkeypatch.setattr(DatasetSnapshot, "complete", refuse)
    snapshot, error = build_error(model_type)
    assert error.code == "build_error"
    assert snapshot.status == DatasetSnapshot.Status.FAILED
    assert stored_files(media_root) == []
    assert leftover_temporary_files(media_root) == []


def test_a_case_that_changes_during_the_build_fails_it(model_type, monkeypatch):
    cases = approved_cohort(model_type.cohort, patients=10)
    real_split = splitting.split_cases

    def split_then_relabel(*args, **kwargs):
        assigned = real_split(*args, **kwargs)
        plant(cases[0], diagnosis={"code": "Z00.0", "label": "Changed"})
        return assigned

    monkeypatch.setattr(datasets, "split_cases", split_then_relabel)
    snapshot, error = build_error(model_type)
    assert error.code == "cases_changed"
    assert str(cases[0].pk) in snapshot.error


# --- Immutability --------------------------------------------------------------------------------


def test_a_ready_snapshot_cannot_change_its_manifest_hash_or_file(model_type):
    approved_cohort(model_type.cohort, patients=10)
    snapshot = build(model_type)

    for field, value in (
        ("manifest", {"train": [1], "validation": [], "test": []}),
        ("content_hash", "0" * 64),
        ("file", "datasets/other.parquet"),
        ("label_counts", {}),
    ):
        fresh = DatasetSnapshot.objects.get(pk=snapshot.pk)
        setattr(fresh, field, value)
        with pytest.raises(ImmutableSnapshot):
            fresh.save()
    fresh = DatasetSnapshot.objects.get(pk=snapshot.pk)
    assert (fresh.manifest, fresh.content_hash, fresh.file.name) == (
        snapshot.manifest,
        snapshot.content_hash,
        snapshot.file.name,
    )


def test_a_snapshot_is_built_once(model_type):
    approved_cohort(model_type.cohort, patients=10)
    snapshot = build(model_type)
    with pytest.raises(TransitionError):
        build_snapshot(snapshot.pk)
    failed, _ = build_error(ModelTypeFactory.create())
    with pytest.raises(TransitionError):
        build_snapshot(failed.pk)


def test_the_factory_builds_a_ready_snapshot():
    snapshot: DatasetSnapshot = DatasetSnapshotFactory(built=True)  # type: ignore[assignment]
    assert snapshot.status == DatasetSnapshot.Status.READY
    assert snapshot.case_count >= snapshot.model_type.min_cases_to_train
    building: DatasetSnapshot = DatasetSnapshotFactory()  # type: ignore[assignment]
    assert building.status == DatasetSnapshot.Status.BUILDING


# --- The scan's prefilter agrees with the exact matcher ------------------------------------------


def renderings(patient: dict, born: dt.date) -> list[str]:
    """The patient's identifiers in the forms people write them, and harmless clinical strings."""
    name = patient["name"]
    month = dt.date(2000, born.month, 1).strftime("%B")
    digits = "".join(ch for ch in patient["phone"] if ch.isdigit())
    return [
        name,
        name.upper(),
        name.split()[-1],
        f"seen by {name.split()[0]} today",
        fold(name),
        patient["mrn"],
        patient["mrn"].replace("-", " "),
        patient["ssn"].replace("-", ""),
        patient["phone"],
        digits,
        digits[-7:],
        patient["email"],
        patient["email"].split("@")[0],
        patient["address"],
        patient["address"].split(",")[0],
        patient["zip"],
        born.isoformat(),
        f"{born.month}/{born.day}/{born.year % 100:02d}",
        f"{month} {born.day}",
        f"{born.day}th of {month[:3]}",
        f"{born.year}{born.month:02d}{born.day:02d}",
        "cough",
        "40-49",
        "J18.9",
        "Pneumonia, unspecified organism",
        "temperature_c",
        "90+",
        "female",
        "train",
    ]


EXOTIC_PATIENTS = [
    {
        "mrn": "A12-B34-567",
        "name": "Seán O'Brien-Smith",
        "birth_date": "1931-09-09",
        "sex": "male",
        "zip": "02139-1234",
        "phone": "(617) 555-0100 x12",
        "email": "sean.ob@example.ie",
        "address": "12½ Elm St., Apt 4, Cambridge, MA 02139",
        "ssn": "123-45-6789",
    },
    {
        "mrn": "12",
        "name": "Łukasz Müller 3",
        "birth_date": "1990-12-01",
        "sex": "male",
        "zip": "10115",
        "phone": "+49 30 1234567",
        "email": "lm@example.de",
        "address": "Straße 7, 1-2, Berlin",
        "ssn": "99",
    },
]


@pytest.mark.parametrize("index", range(len(EXOTIC_PATIENTS) + 4))
def test_the_scan_prefilter_never_hides_what_the_exact_matcher_finds(index):
    from tests.cases.factories import record_dict

    patient = EXOTIC_PATIENTS[index] if index < len(EXOTIC_PATIENTS) else record_dict()["patient"]
    encounter = dt.date(2026, 5, 2)
    born = dt.date.fromisoformat(patient["birth_date"])
    exact = OwnIdentifiers(patient, encounter)
    texts = renderings(patient, born)
    texts += [f"{first} {second}" for first, second in itertools.pairwise(texts)]
    for text in texts:
        expected = set(exact.kinds_in(text))
        # A fresh index holds this string alone: the prefilter decides on exactly what it sees.
        residual = ResidualIndex()
        assert {kind for _, kind in residual.case_findings([("f", text)], patient, encounter)} == expected, text
    clinical = [("label_text", "Pneumonia, unspecified organism"), ("symptoms[0]", "cough"), ("age_band", "40-49")]
    assert ResidualIndex().case_findings(clinical, patient, encounter) == []


def test_the_scan_rules_out_an_ordinary_patient_without_the_exact_matcher(monkeypatch):
    patient = {
        "mrn": "MRN-448812",
        "name": "Jane Q. Doe",
        "birth_date": "1957-03-14",
        "sex": "female",
        "zip": "02139",
        "phone": "+1 617 555 0100",
        "email": "jane@example.org",
        "address": "12 Elm St, Cambridge, MA",
        "ssn": "123-45-6789",
    }
    residual = ResidualIndex()
    vocabulary = ["Pneumonia, unspecified organism", "J18.9", "cough", "40-49", "female", "temperature_c"]
    residual.add_all(vocabulary)
    assert not residual.might_hold_own(patient)

    def exact(*args, **kwargs):
        raise AssertionError("the exact matcher ran")

    monkeypatch.setattr("cases.deid.residual.exact_findings", exact)
    assert residual.case_findings([("f", text) for text in vocabulary], patient, dt.date(2026, 5, 2)) == []
    # Her own name among the strings: no set lookup can rule her out.
    residual.add_all(["seen by Doe"])
    assert residual.might_hold_own(patient)


def test_the_flat_row_interface_groups_rows_by_case(model_type):
    cases = approved_cohort(model_type.cohort, patients=2)
    first, second = cases
    rows = [
        (first.pk, "symptoms[0]", "cough"),
        (first.pk, "label_text", f"by {first.patient['name']}"),
        (second.pk, "symptoms[0]", "fever"),
        (999_999, "symptoms[0]", "cough"),
    ]
    report = scanning.scan_dataset_rows(rows)
    assert report.cases == 3
    assert {"case_id": first.pk, "field": "label_text", "kind": "NAME"} in report.findings
    assert {"case_id": 999_999, "field": "case_id", "kind": "UNKNOWN_CASE"} in report.findings
    assert not any(finding["case_id"] == second.pk for finding in report.findings)


def test_file_cases_reads_every_string_back(model_type):
    cases = approved_cohort(model_type.cohort, patients=10)
    snapshot = build(model_type)
    with tempfile.NamedTemporaryFile(suffix=".parquet") as copy:
        copy.write(stored_bytes(snapshot))
        copy.flush()
        read = dict(file_cases(copy.name))
    case = cases[0]
    fields = dict(read[case.pk])
    record = record_of(case)
    assert fields["patient_pseudonym"] == record["patient_pseudonym"]
    assert fields["label_text"] == record["diagnosis"]["label"]
    assert [fields[f"symptoms[{i}]"] for i in range(len(record["symptoms"]))] == record["symptoms"]
    # The same keys: PostgreSQL's jsonb keeps object keys in an order of its own.
    keys = [fields[f"findings[{i}].key"] for i in range(len(record["findings"]))]
    assert sorted(keys) == sorted(record["findings"])
    assert f"findings[{len(record['findings'])}].key" not in fields
    assert len(read) == len(cases)


# --- The command ---------------------------------------------------------------------------------


def run(*args: str, verbosity: int = 1) -> str:
    out = io.StringIO()
    call_command("prepare_dataset", *args, stdout=out, verbosity=verbosity)
    return out.getvalue()


def test_prepare_dataset_builds_and_prints_a_summary(model_type, tmp_path):
    approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    author = UserFactory(username="dana")
    output = run("--model-type", model_type.slug, "--seed", "3", "--created-by", "dana", "--output", str(tmp_path))

    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.status == DatasetSnapshot.Status.READY
    assert snapshot.seed == 3
    assert snapshot.created_by == author
    assert "Selecting cases ..." in output
    assert "Scanning for residual identifiers ..." in output
    assert f"Dataset {snapshot.pk} is ready: 12 cases of 12 patients." in output
    for code, _ in DIAGNOSES[:3]:
        line = next(line for line in output.splitlines() if line.strip().startswith(code))
        counts = [int(number) for number in line.split()[1:]]
        assert counts == [snapshot.label_counts[split].get(code, 0) for split in ("train", "validation", "test")]
    assert snapshot.content_hash in output
    assert name_of(snapshot) in output
    copy = tmp_path / Path(name_of(snapshot)).name
    assert copy.read_bytes() == stored_bytes(snapshot)


def test_prepare_dataset_quiet_prints_one_line_and_verbose_shows_progress(model_type):
    approved_cohort(model_type.cohort, patients=10)
    quiet = run("--model-type", model_type.slug, verbosity=0)
    assert len(quiet.strip().splitlines()) == 1
    assert "ready" in quiet
    verbose = run("--model-type", model_type.slug, "--val-fraction", "0.2", "--test-fraction", "0.3", verbosity=2)
    assert "10/10" in verbose
    assert DatasetSnapshot.objects.latest("pk").validation_fraction == 0.2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-type", "no-such-type"], "Unknown model type 'no-such-type'"),
        (["--test-fraction", "0.5", "--val-fraction", "0.5"], "add up to 1"),
        (["--test-fraction", "-0.2"], "must be at least 0"),
        (["--test-fraction", "0"], "test fraction must be greater than 0"),
        (["--min-quality", "2"], "must be between 0 and 1"),
        (["--seed", "x"], "must be a whole number"),
        (["--created-by", "nobody"], "Unknown user 'nobody'"),
        (["--output", "/no/such/folder/file.parquet"], "does not exist"),
    ],
)
def test_prepare_dataset_refuses_bad_arguments_clearly(model_type, args, message):
    if args[0] != "--model-type":
        args = ["--model-type", model_type.slug, *args]
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not DatasetSnapshot.objects.exists()


def test_prepare_dataset_reports_a_failed_build(model_type):
    approved_cohort(model_type.cohort, patients=3)
    with pytest.raises(CommandError, match=r"failed \(too_few_cases\): Too few cases"):
        run("--model-type", model_type.slug)
    assert DatasetSnapshot.objects.get().status == DatasetSnapshot.Status.FAILED


def test_prepare_dataset_twice_with_the_same_content_points_to_the_first(model_type, tmp_path):
    approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    run("--model-type", model_type.slug, "--seed", "4")
    first = DatasetSnapshot.objects.get()

    again = run("--model-type", model_type.slug, "--seed", "4", "--output", str(tmp_path))

    assert DatasetSnapshot.objects.count() == 1
    assert f"Dataset {first.pk} (ready since" in again
    assert "already has this content" in again
    assert first.content_hash in again
    assert "--force" in again
    assert (tmp_path / Path(name_of(first)).name).read_bytes() == stored_bytes(first)
    # Another seed is another content: built.
    run("--model-type", model_type.slug, "--seed", "5")
    assert DatasetSnapshot.objects.count() == 2


def test_prepare_dataset_force_builds_a_second_copy(model_type):
    approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    run("--model-type", model_type.slug)
    output = run("--model-type", model_type.slug, "--force")
    first, second = DatasetSnapshot.objects.order_by("pk")
    assert second.status == DatasetSnapshot.Status.READY
    assert second.content_hash == first.content_hash
    assert f"Dataset {second.pk} is ready" in output


def test_prepare_dataset_dry_run_says_what_it_would_include_and_builds_nothing(model_type):
    approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    output = run("--model-type", model_type.slug, "--dry-run")
    assert not DatasetSnapshot.objects.exists()
    assert "Dry run, nothing built: the dataset would include 12 cases of 12 patients" in output
    assert "created" not in output
    assert "No ready dataset has this content yet." in output

    run("--model-type", model_type.slug)
    built = DatasetSnapshot.objects.get()
    again = run("--model-type", model_type.slug, "--dry-run")
    assert built.content_hash in again  # the dry run's hash is the build's
    assert f"Dataset {built.pk} already has this content." in again
    assert DatasetSnapshot.objects.count() == 1
    sizes = {name: len(built.manifest[name]) for name in ("train", "validation", "test")}
    assert f"(train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']})" in again


def test_prepare_dataset_dry_run_reports_a_selection_that_cannot_build(model_type):
    approved_cohort(model_type.cohort, patients=3)
    with pytest.raises(CommandError, match=r"Dry run: no dataset could be built \(too_few_cases\)"):
        run("--model-type", model_type.slug, "--dry-run")
    assert not DatasetSnapshot.objects.exists()


def test_prepare_dataset_flags_use_the_admin_forms_words(model_type):
    from training.admin.forms import DatasetCreateForm

    approved_cohort(model_type.cohort, patients=10)
    form = DatasetCreateForm()
    labels = {name: str(field.label) for name, field in form.fields.items()}
    assert labels["validation_fraction"] == "Validation fraction"
    assert labels["min_quality"] == "Minimum quality"
    run("--model-type", model_type.slug, "--validation-fraction", "0.25")
    run("--model-type", model_type.slug, "--val-fraction", "0.3")  # the old flag, kept as an alias
    assert sorted(DatasetSnapshot.objects.values_list("validation_fraction", flat=True)) == [0.25, 0.3]


def test_large_manifests_stay_compact_numpy_backed(model_type, tmp_path):
    # The read pass keeps arrays, not records: 8 + 8 + 4 + 8 bytes a case; the rows go to a file.
    approved_cohort(model_type.cohort, patients=10)
    snapshot = create_snapshot(model_type, by=None)
    selection = datasets._read(snapshot, str(tmp_path / "rows.arrow"), lambda *args: None)
    assert selection.ids.dtype == np.int64
    assert selection.groups.dtype == np.uint64
    assert selection.labels.dtype == np.int32
    assert selection.fingerprints.dtype == np.int64
    assert selection.ids.tolist() == sorted(selection.ids.tolist())
    assert len(selection.ids) == 10


def test_a_case_retracted_during_the_build_fails_it(model_type, monkeypatch):
    cases = approved_cohort(model_type.cohort, patients=10)
    real_split = splitting.split_cases

    def split_then_retract(*args, **kwargs):
        assigned = real_split(*args, **kwargs)
        cases[4].retract(by=UserFactory.create(), reason="Wrong patient.")
        return assigned

    monkeypatch.setattr(datasets, "split_cases", split_then_retract)
    snapshot, error = build_error(model_type)
    assert error.code == "cases_changed"
    assert str(cases[4].pk) in snapshot.error


def test_a_case_approved_during_the_build_is_left_for_the_next_one(model_type, monkeypatch):
    approved_cohort(model_type.cohort, patients=10)
    real_split = splitting.split_cases
    late: list[Case] = []

    def split_then_approve(*args, **kwargs):
        assigned = real_split(*args, **kwargs)
        late.extend(approved_cohort(model_type.cohort, patients=1))
        return assigned

    monkeypatch.setattr(datasets, "split_cases", split_then_approve)
    snapshot = build(model_type)
    assert snapshot.status == DatasetSnapshot.Status.READY
    assert snapshot.case_count == 10
    assert late[0].pk not in itertools.chain(*snapshot.manifest.values())


def test_the_build_leaves_the_garbage_collector_as_it_found_it(model_type):
    import gc

    approved_cohort(model_type.cohort, patients=10)
    assert gc.isenabled()
    build(model_type)
    assert gc.isenabled()
    build_error(ModelTypeFactory.create())  # a failing build too
    assert gc.isenabled()
    gc.disable()
    try:
        build(model_type)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_identifier_in_a_string_with_accents_is_found_by_the_exact_matcher(model_type):
    cases = approved_cohort(model_type.cohort, patients=10)
    leaky = cases[5]
    surname = family_name(leaky.patient["name"])
    plant(leaky, symptoms=["cough", f"Zoë saw {surname}"])
    snapshot, error = build_error(model_type)
    assert error.code == "residual_identifiers"
    assert {"case_id": leaky.pk, "field": "symptoms[1]", "kind": "NAME"} in snapshot.scan_report["findings"]
    assert_no_identifier_in(snapshot, surname)


def test_file_batches_read_every_string_shape_of_a_file(tmp_path):
    import pyarrow as pa

    table = pa.table(
        {
            "case_id": pa.array([1, 2, 3], pa.int64()),
            "label": pa.array(["a", None, "a"]),
            "split": pa.array(["train", "test", "train"]).dictionary_encode(),
            "symptoms": pa.array([["x", "y"], None, []], pa.list_(pa.string())),
            "notes": pa.array([[("k1", "v1")], [("k2", "v2"), ("k3", None)], None], pa.map_(pa.string(), pa.string())),
            "findings": pa.array([[("f", 1.0)], None, [("g", 2.0)]], pa.map_(pa.string(), pa.float64())),
            "extra": pa.array([{"who": "s"}, {"who": None}, None], pa.struct([("who", pa.string())])),
            "count": pa.array([1, 2, 3], pa.int64()),
        }
    )
    path = tmp_path / "shapes.parquet"
    pq.write_table(table, path)
    read = dict(file_cases(str(path)))
    assert read == {
        1: [
            ("label", "a"),
            ("split", "train"),
            ("symptoms[0]", "x"),
            ("symptoms[1]", "y"),
            ("notes[0].key", "k1"),
            ("notes[0].value", "v1"),
            ("findings[0].key", "f"),
            ("extra.who", "s"),
        ],
        2: [
            ("split", "test"),
            ("notes[0].key", "k2"),
            ("notes[1].key", "k3"),
            ("notes[0].value", "v2"),
        ],
        3: [("label", "a"), ("split", "train"), ("findings[0].key", "g")],
    }


def test_scan_batches_reports_pseudonyms_patterns_and_own_identifiers_by_field(model_type):
    cases = approved_cohort(model_type.cohort, patients=3)
    first, second, third = cases
    good = record_of(first)["patient_pseudonym"]
    columns = [
        scanning.StringColumn.of("patient_pseudonym", [0, 1, 2], [good, "MRN-1", good]),
        scanning.StringColumn.of(
            scanning.ItemFields("symptoms", [0, 0, 1]),
            [0, 1, 1],
            ["cough", "cough", f"seen by {second.patient['name']}"],
        ),
        scanning.StringColumn.of("label_text", [0, 1, 2], ["Pneumonia", None, "call 617-555-0199"]),
    ]
    batch = scanning.CaseBatch([first.pk, second.pk, third.pk], columns)
    report = scanning.scan_batches([batch])
    assert report.cases == 3
    assert report.strings == 8
    assert sorted((f["case_id"], f["field"], f["kind"]) for f in report.findings) == sorted(
        [
            (second.pk, "patient_pseudonym", "PSEUDONYM_FORMAT"),
            (second.pk, "symptoms[1]", "NAME"),
            (third.pk, "label_text", "PHONE"),
        ]
    )


def test_the_scan_reads_patient_identifiers_as_deidentification_reads_them(model_type):
    cases = approved_cohort(model_type.cohort, patients=3)
    numeric = {**cases[0].patient, "mrn": 44881, "zip": 2139.0, "vip": True}
    Case.objects.filter(pk=cases[0].pk).update(patient=numeric)
    Case.objects.filter(pk=cases[1].pk).update(patient={**cases[1].patient, "phone": None, "bed": 17})
    loaded = scanning._patients([case.pk for case in cases] + [999_999])
    assert set(loaded) == {case.pk for case in cases}
    for case in cases:
        case.refresh_from_db()
        block, encounter = loaded[case.pk]
        assert block == case.patient
        assert encounter == case.encounter_date.isoformat()


def test_a_numeric_mrn_in_a_string_fails_the_snapshot(model_type):
    cases = approved_cohort(model_type.cohort, patients=10)
    leaky = cases[7]
    store(leaky, patient={**leaky.patient, "mrn": 44881})
    plant(leaky, symptoms=["cough", "ref 44881"])
    snapshot, error = build_error(model_type)
    assert error.code == "residual_identifiers"
    assert {"case_id": leaky.pk, "field": "symptoms[1]", "kind": "MRN"} in snapshot.scan_report["findings"]


# --- What approval stores for the build ----------------------------------------------------------


def test_approval_stores_the_record_digest_dataset_row_and_residual_keys(model_type):
    cases = approved_cohort(model_type.cohort, patients=3)
    for case in cases:
        case.refresh_from_db()
        assert case.deid_sha256 == record_sha256(record_of(case))
        assert case.deid_dataset_row == stored_row(record_of(case))
        assert case.residual_keys == residual_keys(case.patient)
        assert case.residual_keys.startswith(RESIDUAL_KEYS_FORMAT + " ")


def test_cases_without_the_stored_columns_build_the_same_snapshot(model_type):
    cases = approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    first = build(model_type)
    Case.objects.filter(pk__in=[case.pk for case in cases[:5]]).update(
        deid_sha256="", deid_dataset_row="", residual_keys=""
    )
    second = build(model_type)
    assert (second.manifest, second.content_hash, second.file_sha256) == (
        first.manifest,
        first.content_hash,
        first.file_sha256,
    )


def test_stored_rows_of_an_older_format_are_computed_again_not_refused(model_type):
    cases = approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    first = build(model_type)
    for case in cases[:4]:
        case.refresh_from_db()
        older = case.deid_dataset_row.replace(f'"v":"{STORED_ROW_FORMAT}"', '"v":"dr0"', 1)
        Case.objects.filter(pk=case.pk).update(deid_dataset_row=older)
    second = build(model_type)
    assert (second.manifest, second.content_hash, second.file_sha256) == (
        first.manifest,
        first.content_hash,
        first.file_sha256,
    )


def test_a_case_without_stored_keys_is_still_scanned_against_its_patient(model_type):
    cases = approved_cohort(model_type.cohort, patients=10)
    leaky = cases[3]
    leaky.refresh_from_db()
    plant(leaky, symptoms=["cough", f"seen with {leaky.patient['name']}"])
    Case.objects.filter(pk=leaky.pk).update(residual_keys="")
    snapshot, error = build_error(model_type)
    assert error.code == "residual_identifiers"
    assert {(f["case_id"], f["kind"]) for f in snapshot.scan_report["findings"]} >= {(leaky.pk, "NAME")}


def test_residual_keys_of_an_unknown_format_are_never_ruled_out():
    index = ResidualIndex()
    index.add_all(["cough", "fever"])
    assert index.might_hold_keys("rk0 n:zzzz") is True
    assert index.might_hold_keys("") is True
    assert index.might_hold_keys(RESIDUAL_KEYS_FORMAT + " n:zzzz") is False
    assert index.might_hold_keys(RESIDUAL_KEYS_FORMAT + " n:cough") is True


def test_pseudonym_shapes_are_checked_all_at_once_and_one_by_one_alike():
    from cases.scanning import _not_pseudonyms

    good = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    assert _not_pseudonyms(good) == []
    for bad in ["A" * 64, "0" * 63, "0" * 65, "g" * 64, "\u0660" * 64, "MRN-1234", ""]:
        assert _not_pseudonyms([*good[:2], bad, *good[2:]]) == [2]
    assert _not_pseudonyms(["0" * 63 + "00", "0" * 63]) == [0, 1]  # the lengths add up to 128


def test_record_fingerprints_are_decoded_all_at_once_and_one_by_one_alike():
    from training.datasets import _fingerprint, _fingerprints

    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)] + ["f" * 64, "0" * 64]
    assert _fingerprints(digests).tolist() == [_fingerprint(digest) for digest in digests]
    with pytest.raises(ValueError):
        _fingerprints([digests[0], "z" * 64])
    assert _fingerprints([]).tolist() == []


def test_the_build_moves_the_snapshots_heartbeat(model_type):
    approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    snapshot = build(model_type)
    assert snapshot.heartbeat_at is not None


def test_the_build_records_each_stage_on_the_snapshot_as_it_goes(model_type):
    """What the admin's live page reads: every stage is written when it starts, with its counts."""
    approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:3])
    snapshot = create_snapshot(model_type, by=UserFactory.create())
    seen: list[tuple[str, int, int]] = []

    def watch(stage: str, done: int, total: int) -> None:
        row = DatasetSnapshot.objects.values_list("stage", "stage_done", "stage_total").get(pk=snapshot.pk)
        seen.append(row)

    build_snapshot(snapshot.pk, progress=watch)

    stages = [stage for stage, _done, _total in seen]
    for stage in ("Selecting cases", "Splitting", "Writing", "Scanning for residual identifiers", "Saving"):
        assert stage in stages
    assert any(stage == "Writing" and total == 12 for stage, _done, total in seen)  # one row per case
