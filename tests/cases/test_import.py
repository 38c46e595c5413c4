"""The import service (cases.importing) and ``manage.py import_cases``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import OperationalError

from cases import importing
from cases.importing import import_lines, import_objects, read_lines
from cases.interchange import RecordError
from cases.management.commands.import_cases import SYSTEM_USERNAME
from cases.models import Case, CaseTransition
from tests.cases.collector_checks import assert_full_collections_spaced_and_restored
from tests.cases.factories import CaseFactory, record_dict
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def jsonl(*items: Any) -> bytes:
    """JSON Lines from dicts (encoded) and raw bytes/str lines (taken as they are)."""
    out = []
    for item in items:
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, str):
            out.append(item.encode())
        else:
            out.append(json.dumps(item).encode())
    return b"\n".join(out) + b"\n"


def write(tmp_path: Path, *items: Any, name: str = "cases.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(jsonl(*items))
    return path


class Run:
    def __init__(self, stdout: str, stderr: str, error: CommandError | None) -> None:
        self.stdout, self.stderr, self.error = stdout, stderr, error


def run(*args: Any, **options: Any) -> Run:
    """call_command import_cases, capturing output; a CommandError is returned, not raised."""
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command("import_cases", *[str(a) for a in args], stdout=stdout, stderr=stderr, **options)
    except CommandError as exc:
        return Run(stdout.getvalue(), stderr.getvalue(), exc)
    return Run(stdout.getvalue(), stderr.getvalue(), None)


@pytest.fixture
def submitter():
    return UserFactory(username="alice")


# --- Creating ------------------------------------------------------------------------------------


def test_import_creates_submitted_cases_each_with_an_audit_row(tmp_path, submitter):
    records = [record_dict() for _ in range(3)]
    result = run(write(tmp_path, *records), submitted_by="alice")

    assert result.error is None
    assert "3 read, 3 created, 0 updated, 0 unchanged, 0 failed" in result.stdout
    cases = Case.objects.order_by("id")
    assert [c.external_id for c in cases] == [r["external_id"] for r in records]
    for case in cases:
        assert case.status == Case.Status.SUBMITTED
        assert case.submitted_by == submitter
        assert case.quality_score > 0
        assert case.record_hash
        transition = CaseTransition.objects.get(case=case)
        assert (transition.actor, transition.from_state, transition.to_state) == (submitter, "", "submitted")


def test_reimporting_the_same_file_creates_no_duplicates(tmp_path, submitter):
    path = write(tmp_path, *[record_dict() for _ in range(5)])
    run(path, submitted_by="alice")

    again = run(path, submitted_by="alice")

    assert again.error is None
    assert "5 read, 0 created, 0 updated, 5 unchanged, 0 failed" in again.stdout
    assert Case.objects.count() == 5
    assert CaseTransition.objects.count() == 5


def test_reimport_updates_a_submitted_case_in_place(tmp_path, submitter):
    record = record_dict()
    case = CaseFactory.create(record=record, submitted_by=submitter)

    result = run(write(tmp_path, {**record, "note": "Corrected note."}), submitted_by="alice")

    assert "1 updated" in result.stdout
    case.refresh_from_db()
    assert case.note == "Corrected note."
    assert case.revision == 2
    assert case.status == Case.Status.SUBMITTED
    assert Case.objects.count() == 1


def test_reimport_of_a_changed_rejected_case_resubmits_it_with_an_audit_row(tmp_path, submitter):
    record = record_dict()
    case = CaseFactory.create(record=record, rejected=True)

    result = run(write(tmp_path, {**record, "symptoms": ["cough", "fever", "dyspnea"]}), submitted_by="alice")

    assert result.error is None
    assert "1 updated" in result.stdout
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED
    assert case.reviewed_by is None
    assert case.last_edited_by == submitter
    last = case.transitions.order_by("-id")[0]
    assert (last.from_state, last.to_state, last.actor) == ("rejected", "submitted", submitter)


def test_reimport_of_an_unchanged_rejected_case_leaves_it_rejected(tmp_path, submitter):
    record = record_dict()
    case = CaseFactory.create(record=record, rejected=True)

    result = run(write(tmp_path, record), submitted_by="alice")

    assert "1 unchanged" in result.stdout
    case.refresh_from_db()
    assert case.status == Case.Status.REJECTED


def test_reimport_never_changes_an_approved_case_and_reports_the_line(tmp_path, submitter):
    approved_record, other = record_dict(), record_dict()
    approved = CaseFactory.create(record=approved_record, approved=True)
    before = Case.objects.values().get(pk=approved.pk)

    result = run(write(tmp_path, other, {**approved_record, "note": "Changed after approval."}), submitted_by="alice")

    assert result.error is not None
    assert f"line 2: external_id: Case {approved.pk} is approved" in result.stderr
    assert Case.objects.values().get(pk=approved.pk) == before
    assert Case.objects.filter(external_id=other["external_id"]).exists()


def test_reimport_of_an_approved_case_with_the_same_content_is_unchanged_not_an_error(tmp_path, submitter):
    record = record_dict()
    CaseFactory.create(record=record, approved=True)

    result = run(write(tmp_path, record), submitted_by="alice")

    assert result.error is None
    assert "1 unchanged, 0 failed" in result.stdout


def test_a_case_repeated_in_one_file_is_created_then_updated_like_line_by_line(tmp_path, submitter):
    record = record_dict()
    result = run(write(tmp_path, record, record_dict(), {**record, "note": "Second version."}), submitted_by="alice")

    assert "3 read, 2 created, 1 updated, 0 unchanged, 0 failed" in result.stdout
    case = Case.objects.get(external_id=record["external_id"])
    assert case.note == "Second version."
    assert case.revision == 2


# --- Bad lines -----------------------------------------------------------------------------------


def test_bad_lines_are_reported_by_number_and_every_valid_line_is_imported(tmp_path, submitter):
    good = [record_dict() for _ in range(4)]
    path = write(
        tmp_path,
        good[0],
        "{not json",
        record_dict(findings={"heart_rate": "fast"}),  # wrong type
        good[1],
        "",  # blank: skipped, but it still counts for the numbers
        {**record_dict(), "patient": {"name": "No Mrn"}},
        b'{"external_id": "enc-\xff\xfe"}',  # not UTF-8
        "[1, 2]",
        good[2],
        record_dict(encounter_date=20240101),  # wrong type
        record_dict(symptoms="cough"),  # wrong type
        good[3],
    )

    result = run(path, submitted_by="alice")

    assert result.error is not None
    assert result.error.returncode == 1
    assert "7 of 11 lines failed" in str(result.error)
    errors = result.stderr.strip().splitlines()
    # The wording belongs to cases.interchange; the numbers and the field named are ours.
    expected = [
        ("line 2", "Not valid JSON"),
        ("line 3", "findings[0]"),
        ("line 6", "patient.mrn"),
        ("line 7", "UTF-8"),
        ("line 8", "JSON object"),
        ("line 10", "encounter_date"),
        ("line 11", "symptoms"),
    ]
    assert len(errors) == len(expected)
    for error, (number, what) in zip(errors, expected, strict=True):
        assert error.startswith(f"{number}: ")
        assert what in error
    assert "11 read, 4 created, 0 updated, 0 unchanged, 7 failed" in result.stdout
    assert sorted(Case.objects.values_list("external_id", flat=True)) == sorted(r["external_id"] for r in good)


def test_a_failed_line_is_reported_without_patient_values(tmp_path, submitter):
    record = record_dict()
    record["patient"]["sex"] = record["patient"]["name"]  # invalid, and identifying

    result = run(write(tmp_path, record), submitted_by="alice")

    assert "line 1: patient.sex" in result.stderr
    assert record["patient"]["name"] not in result.stderr + result.stdout + str(result.error)


def test_the_command_exits_zero_when_every_line_was_imported(tmp_path, submitter):
    result = run(write(tmp_path, record_dict()), submitted_by="alice")
    assert result.error is None
    assert result.stderr == ""


def test_a_utf8_byte_order_mark_at_the_start_is_accepted(tmp_path, submitter):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl(record_dict()))

    result = run(path, submitted_by="alice")

    assert result.error is None
    assert Case.objects.count() == 1


def test_an_overlong_line_is_skipped_without_being_read_whole():
    stream = io.BytesIO(b"short\n" + b"x" * 100 + b"\n" + b"y" * 25 + b"\nlast")

    lines = list(read_lines(stream, max_line_bytes=10))

    assert lines[0] == b"short\n"
    assert isinstance(lines[1], RecordError)
    assert isinstance(lines[2], RecordError)
    assert lines[3] == b"last"


def test_an_overlong_line_is_reported_by_number_and_the_rest_imported(submitter):
    good = record_dict()
    stream = io.BytesIO(jsonl(record_dict(note="x" * 5000), good))

    report = import_lines(read_lines(stream, max_line_bytes=2000), by=submitter)

    assert (report.read, report.created, report.failed) == (2, 1, 1)
    assert report.errors[0].line == 1
    assert "longer than 2000 bytes" in report.errors[0].message


# --- Streaming -----------------------------------------------------------------------------------


class CountingStream(io.BytesIO):
    """A binary stream that counts how many lines have been taken from it."""

    taken = 0

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        if line:
            self.taken += 1
        return line


def test_the_command_streams_writing_each_chunk_before_reading_the_next(submitter, monkeypatch):
    stream = CountingStream(jsonl(*[record_dict() for _ in range(25)]))
    taken_at_write: list[int] = []
    cases_at_write: list[int] = []
    real_write = importing._write_chunk

    def spy(chunk: Any, **kwargs: Any) -> Any:
        taken_at_write.append(stream.taken)
        cases_at_write.append(Case.objects.count())
        return real_write(chunk, **kwargs)

    monkeypatch.setattr(importing, "_write_chunk", spy)

    result = run("-", stdin=stream, submitted_by="alice", chunk_size=10)

    assert result.error is None
    # Each chunk was written when only its lines had been read, after the previous chunk's.
    assert taken_at_write == [10, 20, 25]
    assert cases_at_write == [0, 10, 20]
    assert Case.objects.count() == 25


def test_the_service_holds_at_most_one_chunk_of_lines(submitter, monkeypatch):
    consumed = 0

    def lines():
        nonlocal consumed
        for _ in range(7):
            consumed += 1
            yield json.dumps(record_dict())

    sizes: list[tuple[int, int]] = []
    real_write = importing._write_chunk

    def spy(chunk: Any, **kwargs: Any) -> Any:
        sizes.append((consumed, len(chunk)))
        return real_write(chunk, **kwargs)

    monkeypatch.setattr(importing, "_write_chunk", spy)

    report = import_lines(lines(), by=submitter, chunk_size=3)

    assert sizes == [(3, 3), (6, 3), (7, 1)]
    assert report.created == 7


def test_stdin_is_read_when_the_file_is_a_dash(submitter):
    result = run("-", stdin=io.BytesIO(jsonl(record_dict(), record_dict())), submitted_by="alice")

    assert result.error is None
    assert Case.objects.count() == 2


# --- Progress and summary ------------------------------------------------------------------------


def test_verbosity_0_prints_no_progress_and_no_summary(tmp_path, submitter):
    result = run(write(tmp_path, *[record_dict() for _ in range(4)]), submitted_by="alice", chunk_size=2, verbosity=0)
    assert result.stdout == ""
    assert Case.objects.count() == 4


def test_verbosity_2_prints_a_progress_line_per_chunk_then_the_summary(tmp_path, submitter):
    result = run(write(tmp_path, *[record_dict() for _ in range(5)]), submitted_by="alice", chunk_size=2, verbosity=2)

    lines = result.stdout.strip().splitlines()
    assert [line.split(" ")[0] for line in lines[:-1]] == ["2", "4", "5"]
    assert all("MB" in line for line in lines[:-1])
    assert lines[-1] == "5 read, 5 created, 0 updated, 0 unchanged, 0 failed."


# --- Dry run -------------------------------------------------------------------------------------


def test_dry_run_counts_everything_and_writes_nothing(tmp_path):
    record = record_dict()
    path = write(tmp_path, record, record_dict(), {**record, "note": "Again."}, "{bad")

    result = run(path, dry_run=True)

    assert "Dry run, nothing saved: 4 read, would create 2, would update 1, 0 unchanged, 1 failed" in result.stdout
    assert result.error is not None  # a bad line still fails the command
    assert "checked" in str(result.error)
    assert Case.objects.count() == 0
    assert CaseTransition.objects.count() == 0
    assert not get_user_model().objects.filter(username=SYSTEM_USERNAME).exists()


def test_dry_run_of_the_service_rolls_back(submitter):
    report = import_objects([record_dict(), record_dict()], by=submitter, dry_run=True)

    assert report.created == 2
    assert Case.objects.count() == 0


# --- The submitter -------------------------------------------------------------------------------


def test_without_submitted_by_the_cases_belong_to_a_system_account_that_cannot_log_in(tmp_path, make_user):
    run(write(tmp_path, record_dict()))

    system = get_user_model().objects.get(username=SYSTEM_USERNAME)
    assert not system.is_active
    assert not system.has_usable_password()
    assert not system.groups.exists()
    case = Case.objects.get()
    assert case.submitted_by == system
    assert case.can_review(make_user("clinician"))


def test_the_system_account_is_reused_on_the_next_import(tmp_path):
    run(write(tmp_path, record_dict()))
    run(write(tmp_path, record_dict(), name="more.jsonl"))

    assert get_user_model().objects.filter(username=SYSTEM_USERNAME).count() == 1
    assert Case.objects.filter(submitted_by__username=SYSTEM_USERNAME).count() == 2


def test_a_login_account_named_like_the_system_account_is_not_used(tmp_path):
    UserFactory(username=SYSTEM_USERNAME)

    result = run(write(tmp_path, record_dict()))

    assert result.error is not None
    assert "--submitted-by" in str(result.error)
    assert Case.objects.count() == 0


def test_an_unknown_submitter_is_a_clear_error(tmp_path):
    result = run(write(tmp_path, record_dict()), submitted_by="nobody")

    assert result.error is not None
    assert str(result.error) == "--submitted-by: no user named 'nobody'."
    assert Case.objects.count() == 0


def test_an_inactive_submitter_is_refused(tmp_path):
    UserFactory(username="gone", is_active=False)

    result = run(write(tmp_path, record_dict()), submitted_by="gone")

    assert result.error is not None
    assert "inactive" in str(result.error)


# --- Input errors --------------------------------------------------------------------------------


def test_a_missing_file_is_a_clear_error(tmp_path):
    result = run(tmp_path / "nope.jsonl", submitted_by="alice")

    assert result.error is not None
    assert str(result.error) == f"File not found: {tmp_path / 'nope.jsonl'}"


def test_a_directory_is_a_clear_error(tmp_path):
    result = run(tmp_path)

    assert result.error is not None
    assert "is a directory" in str(result.error)


def test_a_source_with_spaces_is_refused_before_reading(tmp_path, submitter):
    result = run(write(tmp_path, record_dict()), submitted_by="alice", source="st marys")

    assert result.error is not None
    assert "--source" in str(result.error)
    assert Case.objects.count() == 0


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1000000"])
def test_a_bad_chunk_size_is_refused(tmp_path, value):
    with pytest.raises(CommandError, match="chunk-size"):
        call_command("import_cases", str(write(tmp_path, record_dict())), "--chunk-size", value)


def test_source_fills_in_lines_without_one_and_a_lines_own_source_wins(tmp_path, submitter):
    without = record_dict()
    del without["source"]
    own = record_dict(source="st-marys")

    run(write(tmp_path, without, own), submitted_by="alice", source="general")

    assert Case.objects.get(external_id=without["external_id"]).source == "general"
    assert Case.objects.get(external_id=own["external_id"]).source == "st-marys"


def test_a_database_failure_is_a_command_error_and_earlier_chunks_stay(tmp_path, submitter, monkeypatch):
    path = write(tmp_path, *[record_dict() for _ in range(4)])
    real_write = importing._write_chunk
    calls = []

    def second_fails(chunk: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("database is locked")
        return real_write(chunk, **kwargs)

    monkeypatch.setattr(importing, "_write_chunk", second_fails)

    result = run(path, submitted_by="alice", chunk_size=2)

    assert result.error is not None
    assert "OperationalError" in str(result.error)
    assert "re-run" in str(result.error)
    assert Case.objects.count() == 2


# --- Races ---------------------------------------------------------------------------------------


def test_a_chunk_that_loses_a_race_to_another_import_is_retried(submitter, monkeypatch):
    record = record_dict()
    CaseFactory.create(record=record)  # "the other import", which our first look missed
    real_lookup = importing._existing_cases
    looks = []

    def stale_then_real(keys: Any) -> Any:
        looks.append(1)
        return {} if len(looks) == 1 else real_lookup(keys)

    monkeypatch.setattr(importing, "_existing_cases", stale_then_real)

    report = import_objects([record, record_dict()], by=submitter)

    assert len(looks) == 2
    assert (report.created, report.unchanged, report.failed) == (1, 1, 0)
    assert Case.objects.count() == 2


def test_a_case_approved_after_the_lookup_is_reported_not_overwritten(submitter, monkeypatch):
    record = record_dict()
    case = CaseFactory.create(record=record)
    stale = Case.objects.get(pk=case.pk)
    case.approve(by=UserFactory.create())
    monkeypatch.setattr(importing, "_existing_cases", lambda keys: {(stale.source, stale.external_id): stale})

    report = import_objects([{**record, "note": "Late change."}], by=submitter)

    assert (report.updated, report.failed) == (0, 1)
    assert report.errors[0].field == "external_id"
    case.refresh_from_db()
    assert case.status == Case.Status.APPROVED
    assert case.note != "Late change."


# --- The report ----------------------------------------------------------------------------------


def test_every_line_is_accounted_for(submitter):
    record = record_dict()
    CaseFactory.create(record=record, approved=True)
    items = [record_dict(), "{", {**record, "note": "x"}, record, json.dumps(record_dict())]

    report = import_lines([i if isinstance(i, str) else json.dumps(i) for i in items], by=submitter)

    assert report.read == report.created + report.updated + report.unchanged + report.failed == 5


def test_the_report_keeps_a_bounded_number_of_errors_but_counts_and_calls_back_for_all(submitter, monkeypatch):
    monkeypatch.setattr(importing, "MAX_REPORTED_ERRORS", 3)
    seen: list[int] = []

    report = import_lines(["{"] * 10, by=submitter, on_error=lambda error: seen.append(error.line))

    assert report.failed == 10
    assert len(report.errors) == 3
    assert report.to_json()["errors_truncated"] is True
    assert seen == list(range(1, 11))


# --- The garbage collector during the import ---------------------------------------------------------


@pytest.mark.parametrize("fails", [False, True], ids=["imported", "failed"])
def test_the_import_spaces_full_collections_and_puts_the_collector_back(
    tmp_path, submitter, monkeypatch, gc_defaults, fails
):
    path = write(tmp_path, record_dict())
    assert_full_collections_spaced_and_restored(
        monkeypatch,
        gc_defaults,
        fails=fails,
        module=importing,
        reader="import_lines",
        run_import=lambda: run(path, submitted_by="alice"),
    )
