"""The PHI access log: every route that hands raw case data to a person (or takes it in) writes one
entry with who, when, from where, what and which case ids; nothing else does; entries cannot be
changed or deleted.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases.access_log import AccessedCase, AccessLogEntry, record_access
from cases.models import Case, CaseTransition
from learning_engine import roles
from learning_engine.audit import AppendOnlyError
from tests.cases.factories import CaseFactory, record_dict
from tests.cases.test_admin import form_data
from tests.conftest import jwt_client

pytestmark = pytest.mark.django_db

A = AccessLogEntry.Action
CASES = "/api/v1/cases/"
CHANGELIST = reverse("admin:cases_case_changelist")


def entries(**filters: Any) -> list[AccessLogEntry]:
    return list(AccessLogEntry.objects.filter(**filters).order_by("id"))


def last_audit_row(case: Case) -> CaseTransition:
    row = CaseTransition.objects.filter(case=case).last()
    assert row is not None
    return row


def only_entry() -> AccessLogEntry:
    found = entries()
    assert len(found) == 1, [(e.action, e.case_count) for e in found]
    return found[0]


@pytest.fixture
def staff_client(client, make_user):
    def login(role: str) -> tuple[Any, Any]:
        user = make_user(role, is_staff=True)
        client.force_login(user)
        return client, user

    return login


# --- The API ---------------------------------------------------------------------------------------


def test_a_clinicians_case_list_writes_one_entry_with_the_ids_on_the_page(clinician):
    cases = [CaseFactory.create() for _ in range(3)]

    response = jwt_client(clinician).get(CASES, {"page_size": 2}, REMOTE_ADDR="198.51.100.7")

    assert response.status_code == 200
    shown = [row["id"] for row in response.json()["results"]]
    entry = only_entry()
    assert (entry.actor, entry.action, entry.channel) == (clinician, A.LIST, "api")
    assert (entry.address, entry.remote_addr, entry.path) == ("198.51.100.7", "198.51.100.7", CASES)
    assert entry.case_ids() == sorted(shown)
    assert entry.case_count == 2
    assert set(shown) < {case.pk for case in cases}
    assert entry.created_at is not None


def test_the_query_string_stays_out_of_the_log(clinician):
    case = CaseFactory.create()

    jwt_client(clinician).get(CASES, {"search": case.external_id})

    entry = only_entry()
    assert entry.path == CASES
    assert case.external_id not in json.dumps(
        {field.name: str(getattr(entry, field.name)) for field in AccessLogEntry._meta.concrete_fields}
    )


def test_a_clinicians_case_detail_is_logged_as_a_view(clinician):
    case = CaseFactory.create()

    response = jwt_client(clinician).get(f"{CASES}{case.pk}/")

    assert response.status_code == 200
    entry = only_entry()
    assert (entry.action, entry.case_ids(), entry.path) == (A.VIEW, [case.pk], f"{CASES}{case.pk}/")


def test_a_case_not_found_writes_nothing(clinician):
    assert jwt_client(clinician).get(f"{CASES}999999/").status_code == 404
    assert entries() == []


def test_de_identified_reads_are_not_logged(engineer, lead):
    case = CaseFactory.create(approved=True)

    for user in (engineer, lead):
        client = jwt_client(user)
        assert client.get(CASES).status_code == 200
        assert client.get(f"{CASES}{case.pk}/").status_code == 200
    assert entries() == []


def test_submit_edit_and_review_answers_are_logged_with_their_action(clinician, second_clinician, make_user):
    client = jwt_client(clinician)
    created = client.post(CASES, record_dict(), format="json")
    assert created.status_code == 201
    pk = created.json()["id"]
    edited = jwt_client(second_clinician).patch(
        f"{CASES}{pk}/", {"note": "Edited by a colleague.", "symptoms": ["cough"]}, format="json"
    )
    assert edited.status_code == 200, edited.json()
    no_role = jwt_client(CaseFactory.create().submitted_by)  # a user without roles: refused, not logged
    assert no_role.post(f"{CASES}{pk}/approve/", {}, format="json").status_code == 403
    # The submitter may not review (409): the refusal hands out no case, so it is not logged.
    assert client.post(f"{CASES}{pk}/approve/", {}, format="json").status_code == 409
    third = make_user(roles.CLINICIAN)
    assert jwt_client(third).post(f"{CASES}{pk}/approve/", {}, format="json").status_code == 200

    logged = [(e.actor_id, e.action, e.case_ids(), e.fields) for e in entries()]
    assert logged == [
        (clinician.pk, A.SUBMIT, [pk], []),
        (second_clinician.pk, A.EDIT, [pk], ["symptoms", "note"]),
        (third.pk, A.APPROVE, [pk], []),
    ]


def test_an_api_edit_of_a_submitted_case_by_another_clinician_writes_an_audit_row(clinician, second_clinician):
    case = CaseFactory.create(submitted_by=clinician)

    response = jwt_client(second_clinician).patch(f"{CASES}{case.pk}/", {"note": "Dyspnoea at rest."}, format="json")

    assert response.status_code == 200
    row = last_audit_row(case)
    assert (row.actor, row.from_state, row.to_state, row.changed_fields) == (
        second_clinician,
        "submitted",
        "submitted",
        ["note"],
    )
    assert "Dyspnoea" not in row.reason


def test_an_api_import_is_logged_with_every_case_it_wrote(clinician):
    existing = CaseFactory.create()
    records = [record_dict(), record_dict(), existing.to_record().to_json(), {"external_id": "broken"}]

    response = jwt_client(clinician).post(f"{CASES}import/", records, format="json")

    assert response.status_code == 200, response.json()
    new_ids = set(Case.objects.exclude(pk=existing.pk).values_list("pk", flat=True))
    entry = only_entry()
    assert (entry.action, entry.actor, entry.channel) == (A.IMPORT, clinician, "api")
    assert set(entry.case_ids()) == new_ids | {existing.pk}
    assert len(new_ids) == 2


def test_an_import_update_names_the_changed_fields_in_the_case_audit_trail(clinician):
    case = CaseFactory.create()
    record = case.to_record().to_json() | {"note": "Re-imported note."}

    jwt_client(clinician).post(f"{CASES}import/", [record], format="json")

    row = last_audit_row(case)
    assert (row.from_state, row.to_state, row.changed_fields) == ("submitted", "submitted", ["note"])


def test_the_log_costs_the_same_queries_for_a_page_of_5_as_of_50(clinician):
    client = jwt_client(clinician)
    for _ in range(5):
        CaseFactory.create()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(CASES, {"page_size": 500}).status_code == 200
        return len(captured)

    few = queries()
    for _ in range(45):
        CaseFactory.create()
    many = queries()

    assert many == few
    assert [e.case_count for e in entries()] == [5, 50]


# --- The client address behind proxies -------------------------------------------------------------


@pytest.fixture
def proxies(settings):
    def set_to(count: int) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": count}

    return set_to


def test_without_trusted_proxies_a_forwarded_for_header_is_not_believed(clinician, proxies):
    proxies(0)

    jwt_client(clinician).get(CASES, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.66")

    entry = only_entry()
    assert (entry.address, entry.remote_addr) == ("10.0.0.5", "10.0.0.5")


def test_behind_one_proxy_the_address_is_the_one_it_added(clinician, proxies):
    proxies(1)

    # The client forged the first entry; our proxy appended the address it saw.
    jwt_client(clinician).get(CASES, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.9")

    entry = only_entry()
    assert (entry.address, entry.remote_addr) == ("203.0.113.9", "10.0.0.5")


# --- The admin -------------------------------------------------------------------------------------


def test_the_admin_change_list_is_logged_for_a_clinician_with_the_ids_shown(staff_client):
    client, user = staff_client(roles.CLINICIAN)
    cases = [CaseFactory.create() for _ in range(3)]

    response = client.get(CHANGELIST, REMOTE_ADDR="198.51.100.8")

    assert response.status_code == 200
    entry = only_entry()
    assert (entry.actor, entry.action, entry.channel, entry.address) == (user, A.LIST, "admin", "198.51.100.8")
    assert entry.case_ids() == sorted(case.pk for case in cases)
    assert entry.path == CHANGELIST


def test_the_admin_change_form_is_logged_as_a_view(staff_client):
    client, user = staff_client(roles.CLINICIAN)
    case = CaseFactory.create()

    assert client.get(reverse("admin:cases_case_change", args=[case.pk])).status_code == 200

    entry = only_entry()
    assert (entry.actor, entry.action, entry.channel, entry.case_ids()) == (user, A.VIEW, "admin", [case.pk])


def test_an_admin_edit_is_logged_with_the_changed_fields_and_audited(staff_client, clinician):
    client, editor = staff_client(roles.CLINICIAN)
    case = CaseFactory.create(submitted_by=clinician)
    url = reverse("admin:cases_case_change", args=[case.pk])
    data = form_data(client, url) | {"note": "Edited in the admin.", "_save": "Save"}
    before = len(entries())  # the page load above is a view

    response = client.post(url, data)

    assert response.status_code == 302
    edit = entries()[before:]
    assert [(e.action, e.case_ids(), e.fields, e.channel) for e in edit] == [(A.EDIT, [case.pk], ["note"], "admin")]
    row = last_audit_row(case)
    assert (row.actor, row.from_state, row.to_state, row.changed_fields) == (editor, "submitted", "submitted", ["note"])


def test_an_admin_submission_is_logged(staff_client):
    from tests.cases.test_admin import add_form_data

    client, user = staff_client(roles.CLINICIAN)
    data = add_form_data(record_dict()) | {"_save": "Save"}

    response = client.post(reverse("admin:cases_case_add") + "?cohort=respiratory", data)

    assert response.status_code == 302, response.content[:2000]
    case = Case.objects.get()
    entry = only_entry()
    assert (entry.actor, entry.action, entry.case_ids()) == (user, A.SUBMIT, [case.pk])


def test_admin_pages_of_de_identified_cases_are_not_logged(staff_client):
    client, _user = staff_client(roles.ML_ENGINEER)
    case = CaseFactory.create(approved=True)

    assert client.get(CHANGELIST).status_code == 200
    assert client.get(reverse("admin:cases_case_change", args=[case.pk])).status_code == 200
    assert entries() == []


# --- The import command ----------------------------------------------------------------------------


def write_jsonl(tmp_path, records: list[dict[str, Any]]) -> str:
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def test_the_import_command_is_logged_once_with_every_case(tmp_path, clinician):
    path = write_jsonl(tmp_path, [record_dict() for _ in range(5)])

    call_command("import_cases", path, "--submitted-by", clinician.username, "--chunk-size", "2", stdout=io.StringIO())

    entry = only_entry()
    assert (entry.action, entry.channel, entry.actor, entry.address) == (A.IMPORT, "command", clinician, "")
    assert entry.path == "manage.py import_cases"
    assert entry.case_ids() == sorted(Case.objects.values_list("pk", flat=True))
    assert entry.case_count == 5


def test_an_import_command_that_fails_on_some_lines_still_logs_what_it_wrote(tmp_path, clinician):
    path = write_jsonl(tmp_path, [record_dict(), {"external_id": "x"}])

    with pytest.raises(Exception, match="1 of 2 lines failed"):
        call_command("import_cases", path, "--submitted-by", clinician.username, stdout=io.StringIO())

    assert only_entry().case_ids() == list(Case.objects.values_list("pk", flat=True))


def test_a_dry_run_import_leaves_no_entry(tmp_path, clinician):
    path = write_jsonl(tmp_path, [record_dict()])

    call_command("import_cases", path, "--submitted-by", clinician.username, "--dry-run", stdout=io.StringIO())

    assert entries() == []


# --- Append-only -----------------------------------------------------------------------------------


def test_entries_and_their_case_rows_cannot_be_changed_or_deleted(clinician):
    case = CaseFactory.create()
    entry = record_access(action=A.VIEW, case_ids=[case.pk], actor=clinician)
    row = AccessedCase.objects.get(entry=entry)

    entry.action = A.LIST
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AccessLogEntry.objects.filter(pk=entry.pk).update(action=A.LIST)
    with pytest.raises(AppendOnlyError):
        AccessLogEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        AccessedCase.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AccessedCase.objects.all().update(case_id=case.pk)

    assert AccessLogEntry.objects.get(pk=entry.pk).action == A.VIEW
    assert AccessedCase.objects.count() == 1


def test_a_reimport_reads_the_stored_content_in_its_lookup_not_per_case(clinician):
    """The audit row of each updated case names its changed fields: the old values come with the
    chunk's lookup of existing cases, not from a query per case and field."""
    client = jwt_client(clinician)

    def reimport_queries(count: int) -> int:
        cases = [CaseFactory.create() for _ in range(count)]
        records = [case.to_record().to_json() | {"note": f"Re-imported {case.pk}."} for case in cases]
        with CaptureQueriesContext(connection) as captured:
            assert client.post(f"{CASES}import/", records, format="json").json()["updated"] == count
        return len(captured)

    few, many = reimport_queries(2), reimport_queries(12)

    per_case = (many - few) / 10
    assert per_case <= 4  # the claim's UPDATE, the audit row's INSERT and a savepoint around them


def test_a_large_entry_writes_its_case_rows_in_batches_not_per_case(clinician):
    with CaptureQueriesContext(connection) as captured:
        entry = record_access(action=A.IMPORT, case_ids=range(1, 25_001), actor=clinician)

    assert AccessedCase.objects.filter(entry=entry).count() == 25_000
    assert entry.case_count == 25_000
    # The entry, three batches of case rows, and the savepoint around them.
    assert len(captured) <= 6


def test_an_api_import_that_fails_half_way_still_logs_the_chunk_it_wrote(clinician, monkeypatch):
    from django.db import DatabaseError

    from cases import importing

    real_write = importing._write_chunk
    calls: list[int] = []

    def second_chunk_fails(chunk, *, by):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise DatabaseError("the database went away")
        return real_write(chunk, by=by)

    monkeypatch.setattr(importing, "_write_chunk", second_chunk_fails)
    first, second = record_dict(), record_dict()
    # A record repeated in one chunk makes the importer write what came before it first.
    records = [first, second, first | {"note": "Second version."}]
    client = jwt_client(clinician)
    client.raise_request_exception = False

    response = client.post(f"{CASES}import/", records, format="json")

    assert response.status_code == 500
    assert calls == [2, 1]
    written = sorted(Case.objects.values_list("pk", flat=True))
    assert len(written) == 2
    assert only_entry().case_ids() == written
