"""``manage.py import_fhir`` and the FHIR import service (cases.fhir.importing)."""

from __future__ import annotations

import functools
import gc
import io
import json
import random
import tracemalloc
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from cases.access_log import AccessLogEntry
from cases.fhir import importing, mapping, synthetic
from cases.models import Case, CaseTransition
from tests.cases import fhir_exports
from tests.cases.collector_checks import assert_full_collections_spaced_and_restored
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class Run:
    def __init__(self, stdout: str, stderr: str, error: CommandError | None) -> None:
        self.stdout, self.stderr, self.error = stdout, stderr, error


def run(*args: Any, **options: Any) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    options.setdefault("source", fhir_exports.SOURCE)
    try:
        call_command("import_fhir", *[str(a) for a in args], stdout=stdout, stderr=stderr, **options)
    except CommandError as exc:
        return Run(stdout.getvalue(), stderr.getvalue(), exc)
    return Run(stdout.getvalue(), stderr.getvalue(), None)


@pytest.fixture
def submitter():
    return UserFactory(username="alice")


def identifiers(items: list[dict[str, Any]]) -> set[str]:
    words: set[str] = set()
    for item in items:
        for key, value in item["patient"].items():
            if key == "sex":  # kept by Safe Harbor: not an identifier
                continue
            words.add(value)
            words.update(part for part in str(value).replace("-", " ").split() if len(part) > 3)
    return words


def assert_no_identifier(text: str, items: list[dict[str, Any]]) -> None:
    for word in identifiers(items):
        assert word not in text, "an identifier reached the report"


def expected_findings(record: dict[str, Any]) -> dict[str, Any]:
    return {key: pytest.approx(value, abs=1e-6) for key, value in record["findings"].items()}


# --- A Synthea-shaped Bundle -----------------------------------------------------------------------


def test_a_synthea_bundle_gives_one_case_per_encounter_with_converted_findings(tmp_path, submitter):
    items = fhir_exports.records(patients=4, encounters_per_patient=3)
    path = fhir_exports.write_bundle(tmp_path / "Quilla_Brannigan_0a1b.json", items)
    result = run(path, submitted_by="alice")

    assert result.error is None, result.stderr
    assert Case.objects.count() == 12
    for record in items:
        case = Case.objects.get(
            source="synthea", external_id=synthetic.resource_id("synthea", "encounter", record["external_id"])
        )
        assert case.status == Case.Status.SUBMITTED
        assert case.submitted_by == submitter
        assert case.cohort == "respiratory"
        assert case.patient["mrn"] == record["patient"]["mrn"]
        assert case.patient["birth_date"] == record["patient"]["birth_date"]
        assert case.encounter_date.isoformat() == record["encounter_date"]
        # Fahrenheit and mg/dL in half the Observations: converted back to the dictionary's units.
        assert case.findings == expected_findings(record)
        assert case.symptoms == [key for key in ("cough", "fever", "dyspnea") if key in record["symptoms"]]
        assert case.diagnosis_code == record["diagnosis"]["code"]
        assert case.quality_score > 0
        assert case.record_hash
        assert case.dictionary is not None
    assert CaseTransition.objects.count() == 12
    assert "12 encounters: 12 created, 0 updated, 0 unchanged, 0 failed; 0 errors" in result.stdout


def test_resources_the_engine_does_not_use_are_counted_and_skipped(submitter, tmp_path):
    items = fhir_exports.records(patients=2, encounters_per_patient=2)
    report = importing.import_resources(
        [importing.read_bundle(fhir_exports.write_bundle(tmp_path / "b.json", items).open("rb"))],
        by=submitter,
        source="s",
    )
    assert report.skipped == dict.fromkeys(fhir_exports.OTHER_TYPES, 4)
    assert report.by_type["Patient"] == 2
    assert report.by_type["Encounter"] == 4
    assert report.errors == 0
    assert report.created == 4


def test_a_resource_type_fhir_does_not_have_is_counted_without_its_name(submitter, tmp_path):
    """The resourceType is the sender's text: one FHIR has no resource of is never echoed (it could
    be anything, a patient's name included); known types the engine does not use keep their names."""
    items = fhir_exports.records(patients=1, encounters_per_patient=1)
    resources = fhir_exports.synthea_resources(items)
    invented = ["JohnQuincyDoe", "claim", "Address", "Resource"]  # not a type, wrong case, a datatype, abstract
    resources += [{"resourceType": kind, "id": f"x{i}"} for i, kind in enumerate(invented)]
    resources.append({"resourceType": "MedicinalProductIngredient", "id": "r4"})  # R4 (4.0.1) only
    path = tmp_path / "b.json"
    path.write_text(json.dumps(synthetic.bundle(resources)))
    report = importing.import_resources([importing.read_bundle(path.open("rb"))], by=submitter, source="s")
    shown = json.dumps(report.to_json()) + report.summary()
    for name in invented:
        assert f'"{name}"' not in shown
    assert report.skipped["(not a FHIR resource type)"] == len(invented)
    assert report.by_type["(not a FHIR resource type)"] == len(invented)
    assert report.skipped["MedicinalProductIngredient"] == 1
    assert report.skipped["Claim"] == 1
    assert report.created == 1


def test_the_resource_types_are_those_of_fhir_resources():
    """R4B's list in cases.fhir.resources is fhir.resources.R4B's own (every module's resource class)."""
    import importlib
    from pathlib import Path

    import fhir.resources.R4B as r4b
    from fhir.resources.R4B.resource import Resource

    from cases.fhir import resources

    found: set[str] = set()
    for path in Path(r4b.__file__).parent.glob("*.py"):
        module = importlib.import_module(f"fhir.resources.R4B.{path.stem}")
        found.update(
            name
            for name, value in vars(module).items()
            if name.lower() == path.stem and isinstance(value, type) and issubclass(value, Resource)
        )
    assert found - {"Resource", "DomainResource"} == resources.R4B_RESOURCE_TYPES
    assert not resources.R4_ONLY_RESOURCE_TYPES & found


def test_missing_labs_are_warnings_at_their_encounter_and_the_case_still_imports(submitter, tmp_path):
    items = fhir_exports.records(patients=3, encounters_per_patient=2)
    without_labs = [item for item in items if "wbc" not in item["findings"]]
    assert without_labs, "the generator leaves labs out of about half the encounters"
    report = importing.import_resources(
        [importing.read_bundle(fhir_exports.write_bundle(tmp_path / "b.json", items).open("rb"))],
        by=submitter,
        source="s",
    )
    assert report.created == len(items)
    assert report.errors == 0
    missing = [problem for problem in report.problems if problem.code == "missing"]
    assert len(missing) == 3 * len(without_labs)
    assert {problem.field for problem in missing} == {"findings.wbc", "findings.crp", "findings.nt_probnp"}
    assert all(problem.resource_type == "Encounter" and problem.level == "warning" for problem in missing)


def test_reimporting_the_same_export_changes_nothing(tmp_path, submitter):
    items = fhir_exports.records()
    path = fhir_exports.write_bundle(tmp_path / "b.json", items)
    assert run(path, submitted_by="alice").error is None
    before = list(Case.objects.order_by("pk").values_list("pk", "record_hash", "revision"))
    audits = CaseTransition.objects.count()

    again = run(path, submitted_by="alice")
    assert again.error is None
    assert "0 created, 0 updated, 12 unchanged" in again.stdout
    assert list(Case.objects.order_by("pk").values_list("pk", "record_hash", "revision")) == before
    assert CaseTransition.objects.count() == audits


def test_a_changed_observation_updates_its_case_on_reimport(tmp_path, submitter):
    items = fhir_exports.records(patients=1, encounters_per_patient=2)
    path = fhir_exports.write_bundle(tmp_path / "b.json", items)
    assert run(path, submitted_by="alice").error is None
    items[0]["findings"]["heart_rate"] = 77
    fhir_exports.write_bundle(path, items)
    result = run(path, submitted_by="alice")
    assert "0 created, 1 updated, 1 unchanged" in result.stdout
    assert Case.objects.get(patient__mrn=items[0]["patient"]["mrn"], revision=2).findings["heart_rate"] == 77


def test_ndjson_bulk_export_files_give_the_same_cases_as_the_bundle(tmp_path, submitter):
    items = fhir_exports.records()
    folder = fhir_exports.write_ndjson(tmp_path / "export", items)
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        f"{kind}.ndjson" for kind in ("Patient", "Encounter", "Observation", "Condition", *fhir_exports.OTHER_TYPES)
    )
    result = run(folder, submitted_by="alice")
    assert result.error is None, result.stderr
    assert run(fhir_exports.write_bundle(tmp_path / "b.json", items), submitted_by="alice", source="b").error is None

    def cases(source):
        return {
            case.external_id: (case.findings, case.symptoms, case.diagnosis_code, case.patient, case.encounter_date)
            for case in Case.objects.filter(source=source)
        }

    from_ndjson, from_bundle = cases(fhir_exports.SOURCE), cases("b")
    assert from_ndjson == from_bundle
    assert len(from_bundle) == 12


def test_a_collection_bundle_in_any_order_imports_the_same(tmp_path, submitter):
    items = fhir_exports.records(patients=2, encounters_per_patient=2)
    resources = list(reversed(fhir_exports.synthea_resources(items)))  # Observations before their Encounter
    path = tmp_path / "c.json"
    path.write_text(json.dumps(synthetic.bundle(resources, kind="collection")))
    result = run(path, submitted_by="alice")
    assert result.error is None, result.stderr
    assert Case.objects.count() == 4
    for record in items:
        assert Case.objects.get(
            patient__mrn=record["patient"]["mrn"], encounter_date=record["encounter_date"]
        ).findings == expected_findings(record)


def test_an_approved_imported_case_is_de_identified(tmp_path, submitter):
    items = fhir_exports.records(patients=1, encounters_per_patient=1)
    assert run(fhir_exports.write_bundle(tmp_path / "b.json", items), submitted_by="alice").error is None
    case = Case.objects.get()
    case.approve(by=UserFactory.create(username="bob"))
    case.refresh_from_db()
    assert case.deidentified
    assert_no_identifier(json.dumps(case.deidentified), items)
    assert case.deidentified["findings"] == case.findings


def test_the_import_writes_one_phi_access_log_entry_without_the_path(tmp_path, submitter):
    items = fhir_exports.records(patients=1, encounters_per_patient=2)
    run(fhir_exports.write_bundle(tmp_path / "Quilla_Brannigan.json", items), submitted_by="alice")
    entry = AccessLogEntry.objects.get()
    assert entry.action == AccessLogEntry.Action.IMPORT
    assert entry.channel == AccessLogEntry.Channel.COMMAND
    assert entry.path == "manage.py import_fhir"
    assert sorted(entry.case_ids()) == sorted(Case.objects.values_list("pk", flat=True))


# --- A Bundle with every malformation ----------------------------------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(levels):
        extension = {"url": "http://example.org/node", "extension": [extension]}
    return extension


def malformed_export() -> tuple[list[Any], dict[int, tuple[str, str]], list[dict[str, Any]]]:
    """(entries, {entry index: (resource type, problem code)} of the errors, the good records)."""
    good = fhir_exports.records(patients=2, encounters_per_patient=2)
    resources = fhir_exports.synthea_resources(good)
    entries: list[Any] = [{"fullUrl": f"urn:uuid:{item['id']}", "resource": item} for item in resources]
    patient_id = resources[0]["id"]
    good_encounter = next(item for item in resources if item["resourceType"] == "Encounter")

    own_encounters: list[str] = []

    def observation(**changes: Any) -> dict[str, Any]:
        # Each on an Encounter of its own: of several values of one finding only the latest is used.
        own_encounters.append(f"own-{len(own_encounters)}")
        item = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
            "subject": {"reference": f"urn:uuid:{patient_id}"},
            "encounter": {"reference": f"Encounter/{own_encounters[-1]}"},
            "valueQuantity": {"value": 12, "unit": "mg/L", "system": synthetic.UCUM, "code": "mg/L"},
        }
        item.update(changes)
        return {"resource": item}

    def encounter(eid: str, **changes: Any) -> dict[str, Any]:
        item = {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"code": "EMER"},
            "subject": {"reference": f"urn:uuid:{patient_id}"},
            "period": {"start": "2025-03-01T10:00:00Z"},
        }
        item.update(changes)
        return {"resource": item}

    bad_patient = dict(resources[0], id="bad-patient", birthDate="Quilla Brannigan")
    no_mrn = dict(resources[0], id="no-mrn", identifier=[{"value": "MRN-90210"}])
    quantity = {"unit": "mg/L", "system": synthetic.UCUM, "code": "mg/L"}
    errors: dict[str, tuple[Any, tuple[str, str] | None]] = {
        "not an object": (17, ("", "invalid_json")),
        "no resource": ({"fullUrl": "urn:uuid:x"}, ("", "invalid_json")),
        "resource not an object": ({"resource": ["Patient"]}, ("", "invalid_json")),
        "no resourceType": ({"resource": {"id": "x"}}, ("", "invalid_resource")),
        "odd resourceType": ({"resource": {"resourceType": "Pa tient<script>"}}, ("", "invalid_resource")),
        "patient of wrong types": ({"resource": bad_patient}, ("Patient", "invalid_resource")),
        "patient without MR": ({"resource": no_mrn}, ("Patient", "missing_identifier")),
        "unknown element": (observation(Brannigan_90210=1), ("Observation", "invalid_resource")),
        "wrong type": (observation(status=7), ("Observation", "invalid_resource")),
        "incompatible unit": (
            observation(valueQuantity={"value": 1, "unit": "mmol/L", "system": synthetic.UCUM, "code": "mmol/L"}),
            ("Observation", "unit_refused"),
        ),
        "unknown unit": (
            observation(valueQuantity={"value": 1, "unit": "x", "system": synthetic.UCUM, "code": "Brannigan"}),
            ("Observation", "unit_refused"),
        ),
        "huge number": (observation(valueQuantity={"value": 10**400, **quantity}), ("Observation", "invalid_value")),
        "text value": (observation(valueQuantity=None, valueString="MRN-90210"), ("Observation", "invalid_value")),
        "outside hard limits": (
            observation(
                code={"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
                valueQuantity={"value": 98.6, "unit": "Cel", "system": synthetic.UCUM, "code": "Cel"},
            ),
            ("Observation", "outside_hard_limits"),
        ),
        # Deeper than fhir.resources can validate within Python's recursion limit (and inside an
        # element the import reads: the others are checked by name only).
        "deep nesting": (
            observation(code={"coding": [{"system": "http://loinc.org", "code": "1988-5"}], "extension": [_deep(400)]}),
            ("Observation", "invalid_resource"),
        ),
        "unknown element inside an element read": (
            observation(valueQuantity={"value": 1, "Brannigan": 2, **quantity}),
            ("Observation", "invalid_resource"),
        ),
        "no period": (encounter("no-period", period=None), ("Encounter", "missing_date")),
        "unknown patient": (
            encounter("stray", subject={"reference": "Patient/nobody"}),
            ("Encounter", "no_patient"),
        ),
        "patient without MR's encounter": (
            encounter("of-no-mrn", subject={"reference": "Patient/no-mrn"}),
            ("Encounter", "missing_identifier"),
        ),
        "repeated id": (encounter(good_encounter["id"]), ("Encounter", "refused")),
        "future encounter": (encounter("future", period={"start": "2099-01-01"}), ("Encounter", "refused")),
        # FHIR's string pattern takes NUL; the case record does not (PostgreSQL cannot store it).
        "NUL in a name": (
            {"resource": dict(resources[0], id="nul-name", name=[{"family": "Bran\u0000nigan"}])},
            None,
        ),
        "NUL in a name's encounter": (
            encounter("nul-name-encounter", subject={"reference": "Patient/nul-name"}),
            ("Encounter", "refused"),
        ),
        "condition of wrong type": (
            {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/x"}, "code": "J18.9"}},
            ("Condition", "invalid_resource"),
        ),
    }
    expected: dict[int, tuple[str, str]] = {}
    for _name, (entry, problem) in errors.items():
        if problem is not None:
            expected[len(entries)] = problem
        entries.append(entry)
    # Warnings, not errors: an Observation of an Encounter not in the Bundle.
    entries.append(observation(encounter={"reference": "Encounter/elsewhere"}))
    entries.extend(encounter(eid) for eid in own_encounters[:-1])
    return entries, expected, good


def test_a_bundle_with_every_malformation_reports_each_by_position_and_imports_the_rest(tmp_path, submitter):
    entries, expected, good = malformed_export()
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    report = importing.import_resources(
        [importing.read_bundle(path.open("rb"))], by=submitter, source="synthea", cohort="respiratory"
    )

    errors = {
        problem.position.index: (problem.resource_type, problem.code)
        for problem in report.problems
        if problem.level == "error"
    }
    for index, problem in expected.items():
        assert errors.get(index) == problem, f"entry {index}: {errors.get(index)} != {problem}"
    # The good encounters are imported; the broken resources did not stop anything.
    assert (
        Case.objects.filter(
            external_id__in=[synthetic.resource_id("synthea", "encounter", r["external_id"]) for r in good]
        ).count()
        == 4
    )
    unlinked = [problem for problem in report.problems if problem.code == "unlinked"]
    unlinked_index = next(index for index, entry in enumerate(entries) if "elsewhere" in json.dumps(entry))
    assert [problem.position.index for problem in unlinked] == [unlinked_index]
    assert_no_identifier(json.dumps(report.to_json()), good)
    assert "Brannigan" not in json.dumps(report.to_json())


def test_the_command_reports_each_problem_on_stderr_and_exits_non_zero(tmp_path, submitter):
    entries, expected, good = malformed_export()
    path = tmp_path / "Quilla_Brannigan.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    result = run(path, submitted_by="alice", cohort="respiratory")
    assert result.error is not None
    assert "resources failed" in str(result.error)
    for index, (_kind, code) in expected.items():
        assert f"entry[{index}]" in result.stderr
        assert code in result.stderr
    assert "13 created" in result.stdout  # the 4 good encounters and the 9 the bad Observations sat on
    assert_no_identifier(result.stdout + result.stderr + str(result.error), good)
    assert "Brannigan" not in result.stdout + result.stderr + str(result.error)


def test_a_truncated_bundle_keeps_what_was_read_and_reports_where_it_broke(tmp_path, submitter):
    items = fhir_exports.records(patients=2, encounters_per_patient=1)
    text = json.dumps(synthetic.bundle(fhir_exports.synthea_resources(items)))
    cut = text.index('"resourceType": "Patient"', 200)  # inside the second patient's entry
    path = tmp_path / "cut.json"
    path.write_text(text[:cut])
    report = importing.import_resources([importing.read_bundle(path.open("rb"))], by=submitter, source="s")
    assert [problem.code for problem in report.problems if problem.level == "error"] == ["invalid_json"]
    assert report.created == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"resourceType": "Patient", "id": "p"}, "must be a FHIR Bundle"),
        ({"resourceType": "Bundle", "type": "document", "entry": []}, "Bundle type must be one of"),
        ({"entry": [], "type": "collection", "resourceType": "Bundle2"}, "must be a FHIR Bundle"),
        ("[1, 2", "not valid JSON"),
    ],
)
def test_an_input_that_is_not_a_bundle_of_a_type_taken_is_refused_as_a_whole(tmp_path, submitter, content, message):
    path = tmp_path / "x.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = run(path, submitted_by="alice")
    assert result.error is not None
    assert message in str(result.error)
    assert Case.objects.count() == 0


def test_a_bundle_whose_type_comes_after_its_entries_is_read(tmp_path, submitter):
    items = fhir_exports.records(patients=1, encounters_per_patient=2)
    bundle = synthetic.bundle(fhir_exports.synthea_resources(items), kind="collection")
    path = tmp_path / "late.json"
    path.write_text(json.dumps({"entry": bundle["entry"], "type": "collection", "resourceType": "Bundle"}))
    assert run(path, submitted_by="alice").error is None
    assert Case.objects.count() == 2


# --- The command's options ---------------------------------------------------------------------------


def test_dry_run_saves_nothing_and_says_what_it_would_do(tmp_path, submitter):
    path = fhir_exports.write_bundle(tmp_path / "b.json", fhir_exports.records(patients=1, encounters_per_patient=2))
    result = run(path, submitted_by="alice", dry_run=True)
    assert result.error is None
    assert "Dry run, nothing saved" in result.stdout
    assert "2 would be created" in result.stdout
    assert Case.objects.count() == 0
    assert AccessLogEntry.objects.count() == 0


def test_progress_lines_show_the_share_of_the_input_read(tmp_path, submitter):
    path = fhir_exports.write_bundle(tmp_path / "b.json", fhir_exports.records(patients=6, encounters_per_patient=3))
    result = run(path, submitted_by="alice", verbosity=2)
    assert "resources (" in result.stdout
    assert "MB, 100%)" in result.stdout


def test_an_unknown_cohort_or_source_is_refused_before_anything_is_read(tmp_path, submitter):
    path = fhir_exports.write_bundle(tmp_path / "b.json", fhir_exports.records(patients=1, encounters_per_patient=1))
    assert "No such cohort" in str(run(path, submitted_by="alice", cohort="nope").error)
    assert "--source must be" in str(run(path, submitted_by="alice", source="two words").error)
    assert "Not found" in str(run(tmp_path / "missing.json", submitted_by="alice").error)
    (tmp_path / "notes.txt").write_text("x")
    assert "must be a .json Bundle" in str(run(tmp_path / "notes.txt", submitted_by="alice").error)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no .json or .ndjson" in str(run(empty, submitted_by="alice").error)
    assert Case.objects.count() == 0


def test_a_cohort_given_takes_every_encounter_and_one_chosen_by_loinc_codes_otherwise(tmp_path, submitter):
    items = fhir_exports.records(patients=1, encounters_per_patient=1)
    path = fhir_exports.write_bundle(tmp_path / "b.json", items)
    assert run(path, submitted_by="alice").error is None  # chosen: only respiratory knows the codes
    assert Case.objects.get().cohort == "respiratory"
    # breast-mass has no LOINC codes: forcing it leaves every finding unknown to it (warnings only).
    run(path, submitted_by="alice", cohort="breast-mass", source="other")
    assert Case.objects.get(source="other").findings == {}


def test_a_folder_numbers_its_files_and_never_names_them(tmp_path, submitter):
    folder = tmp_path / "export"
    folder.mkdir()
    items = fhir_exports.records(patients=2, encounters_per_patient=1)
    for _index, item in enumerate(items):
        fhir_exports.write_bundle(folder / f"{item['patient']['name'].replace(' ', '_')}.json", [item])
    (folder / "Brannigan_broken.json").write_text(
        '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": 5}]}'
    )
    result = run(folder, submitted_by="alice")
    assert Case.objects.count() == 2
    assert "file 1, entry[0]" in result.stderr
    assert "Brannigan" not in result.stdout + result.stderr + str(result.error)


# --- Streaming ---------------------------------------------------------------------------------------


def test_a_bundle_of_100k_entries_is_streamed(tmp_path, submitter):
    """100,000 entries (a few hundred encounters and Synthea's many other resources): the import's
    memory peak stays a fraction of the file, because entries are read one at a time and only the
    used resources' facts are kept."""
    items = fhir_exports.records(patients=60, encounters_per_patient=5)
    used = fhir_exports.synthea_resources(items)
    filler = [
        {
            "resourceType": "Provenance",
            "id": f"prov-{i}",
            "target": [{"reference": "Patient/x"}],
            "recorded": "2025-01-01T00:00:00Z",
        }
        for i in range(100_000 - len(used))
    ]
    path = tmp_path / "big.json"
    with path.open("w") as out:
        out.write('{"resourceType": "Bundle", "type": "collection", "entry": [')
        for index, resource in enumerate(used + filler):
            out.write(
                ("," if index else "") + json.dumps({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
            )
        out.write("]}")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        report = importing.import_resources([importing.read_bundle(path.open("rb"))], by=submitter, source="big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.resources == 100_000
    assert report.created == 300
    assert report.errors == 0
    assert report.skipped["Provenance"] == len(filler) + len(items)  # Synthea writes one per encounter too
    assert peak < size / 3, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        (b"[" * 300_000, "nesting deeper than 1000 levels"),
        (b'{"resourceType": "Observation", "valueQuantity": {"value": ' + b"9" * 6000 + b"}}", "1,000 digits or more"),
        (b'{"resourceType": "Observation", "valueQuantity": {"value": 1e' + b"9" * 900 + b"}}", "not valid JSON"),
    ],
)
def test_input_that_would_take_the_parser_down_stops_the_read_there_and_keeps_what_came_before(
    tmp_path, submitter, hostile, reason
):
    # ijson's C parser crashes the process on an integer of a few thousand digits and runs out of
    # memory on a few hundred thousand levels of nesting: neither may reach it.
    items = fhir_exports.records(patients=1, encounters_per_patient=2)
    good = json.dumps(synthetic.bundle(fhir_exports.synthea_resources(items), kind="collection")).encode()
    body = good[: good.rindex(b"]")] + b', {"resource": ' + hostile
    path = tmp_path / "hostile.json"
    path.write_bytes(body)
    report = importing.import_resources([importing.read_bundle(path.open("rb"))], by=submitter, source="s")
    assert report.created == 2
    broken = [problem for problem in report.problems if problem.code == "invalid_json"]
    assert len(broken) == 1
    assert reason in broken[0].message


def test_the_stream_guard_ignores_brackets_and_digits_inside_strings(tmp_path):
    text = json.dumps({"a": "[" * 5000 + '\\"' + "{" * 5000, "b": [[["x"]]]}).encode()
    guarded = importing.GuardedStream(io.BytesIO(text), max_depth=4)
    read = b"".join(iter(lambda: guarded.read(7), b""))  # chunks cut escapes and strings anywhere
    assert read == text
    assert guarded.hostile == ""
    guarded = importing.GuardedStream(io.BytesIO(text), max_depth=3)
    assert len(b"".join(iter(lambda: guarded.read(7), b""))) < len(text)
    assert guarded.hostile == "nesting deeper than 3 levels"


def _first_too_deep(text: bytes, max_depth: int) -> int:
    """Byte by byte: where the nesting outside strings first passes ``max_depth`` (or the end). A
    quote after an odd run of backslashes does not count, in a string or (invalid JSON) not."""
    depth, in_string, backslashes = 0, False, 0
    for index, byte in enumerate(text):
        if byte == ord("\\"):
            backslashes += 1
            continue
        counts = byte == ord('"') and backslashes % 2 == 0
        backslashes = 0
        if counts:
            in_string = not in_string
        elif in_string:
            continue
        elif byte in b"[{":
            depth += 1
            if depth > max_depth:
                return index
        elif byte in b"]}":
            depth -= 1
    return len(text)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096])
def test_the_stream_guard_cuts_where_a_byte_by_byte_reading_finds_the_nesting_too_deep(chunk):
    pieces = ["[", "{", "]", "}", '"', "\\", '\\"', "\\\\", "a", ":", ",", "1", "  "]
    generator = random.Random(17)
    for _ in range(150):
        text = "".join(generator.choice(pieces) for _ in range(generator.randrange(1, 120))).encode()
        for max_depth in (1, 2, 4):
            guarded = importing.GuardedStream(io.BytesIO(text), max_depth=max_depth)
            read = b"".join(iter(functools.partial(guarded.read, chunk), b""))
            cut = _first_too_deep(text, max_depth)
            assert read == text[:cut], (text, max_depth)
            assert bool(guarded.hostile) == (cut < len(text))


@pytest.mark.parametrize("chunk", [1, 3, 64, 4096])
def test_the_stream_guards_scan_of_chunks_without_escapes_agrees_with_a_byte_by_byte_reading(chunk):
    # Chunks without a backslash are scanned by their quotes and brackets only: the same cut, and
    # the same depth and string state carried into the next chunk (which may have escapes).
    pieces = ["[", "{", "]", "}", '"', "a", ":", ",", "1", "  ", '"[{"', '"]}"']
    generator = random.Random(29)
    for _ in range(200):
        text = "".join(generator.choice(pieces) for _ in range(generator.randrange(1, 160)))
        if generator.random() < 0.2:  # an escape in a later chunk, after the state was carried
            text += '"\\"[[' + text
        for max_depth in (1, 2, 3, 5):
            guarded = importing.GuardedStream(io.BytesIO(text.encode()), max_depth=max_depth)
            read = b"".join(iter(functools.partial(guarded.read, chunk), b""))
            cut = _first_too_deep(text.encode(), max_depth)
            assert read == text.encode()[:cut], (text, max_depth)
            assert bool(guarded.hostile) == (cut < len(text))


def test_the_command_lists_warnings_only_at_verbosity_2(tmp_path, submitter):
    items = [
        item for item in fhir_exports.records(patients=3, encounters_per_patient=2) if "wbc" not in item["findings"]
    ]
    path = fhir_exports.write_bundle(tmp_path / "b.json", items)
    quiet = run(path, submitted_by="alice")
    assert quiet.error is None
    assert quiet.stderr == ""
    assert "-v 2 lists the warnings" in quiet.stdout
    loud = run(path, submitted_by="alice", verbosity=2)
    assert "warning missing: findings.wbc" in loud.stderr


def test_observations_and_conditions_with_no_code_the_dictionaries_use_are_skipped_unread(tmp_path, submitter):
    items = fhir_exports.records(patients=1, encounters_per_patient=1)
    resources = fhir_exports.synthea_resources(items)
    encounter_ref = {"reference": f"urn:uuid:{resources[1]['id']}"}
    # A survey score and a cholesterol (not in the respiratory dictionary), one of them malformed
    # elsewhere: neither is validated, both are counted as skipped, no error.
    resources.append(
        {
            "resourceType": "Observation",
            "id": "survey",
            "status": 7,
            "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
            "encounter": encounter_ref,
        }
    )
    resources.append(
        {
            "resourceType": "Observation",
            "id": "cholesterol",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
            "encounter": encounter_ref,
            "valueQuantity": {"value": 190, "unit": "mg/dL", "system": synthetic.UCUM, "code": "mg/dL"},
        }
    )
    resources.append(
        {
            "resourceType": "Condition",
            "id": "diabetes",
            "code": {"coding": [{"system": synthetic.ICD10_CM, "code": "E11.9"}]},
        }
    )
    path = tmp_path / "b.json"
    path.write_text(json.dumps(synthetic.bundle(resources)))
    report = importing.import_resources([importing.read_bundle(path.open("rb"))], by=submitter, source="s")
    assert report.errors == 0
    assert report.created == 1
    assert report.skipped["Observation (no code the dictionaries use)"] == 2
    assert report.skipped["Condition (no code the dictionaries use)"] == 1


# --- The garbage collector during the import ---------------------------------------------------------


@pytest.mark.parametrize("fails", [False, True], ids=["imported", "failed"])
def test_the_import_spaces_full_collections_and_puts_the_collector_back(
    tmp_path, submitter, monkeypatch, gc_defaults, fails
):
    items = fhir_exports.records(patients=1, encounters_per_patient=1)
    path = fhir_exports.write_bundle(tmp_path / "b.json", items)
    assert_full_collections_spaced_and_restored(
        monkeypatch,
        gc_defaults,
        fails=fails,
        module=importing,
        reader="import_resources",
        run_import=lambda: run(path, submitted_by="alice"),
    )


def test_what_is_kept_until_a_bundle_is_written_is_left_alone_by_the_garbage_collector():
    # A large Bundle keeps every used resource's facts until it ends: kept in tuples of strings
    # and numbers, the collector stops walking them, and one object per Encounter stays tracked.
    items = fhir_exports.records(patients=3, encounters_per_patient=2)
    collector = importing._Collector(importing.FhirImportReport(), None)
    for index, resource in enumerate(fhir_exports.synthea_resources(items)):
        collector.add(importing.Position(index), resource)
    for _ in range(3):  # a tuple is let go once what it holds is: a pass for each level at worst
        gc.collect()
    assert len(collector.encounters) == 6
    assert all(not gc.is_tracked(patient) for patient in collector.patients.values())
    for encounter in collector.encounters.values():
        assert encounter.measurements
        assert encounter.conditions
        assert encounter.snomed
        for kept in (encounter.measurements, encounter.conditions, encounter.snomed, encounter.diagnosis_ranks):
            assert not gc.is_tracked(kept)
        # Made again when written: the same measurements as the mapping read.
        remade = [mapping.Measurement(*row) for row in encounter.measurements]
        assert [importing._row(measurement) for measurement in remade] == list(encounter.measurements)
        assert all(isinstance(measurement.loinc, tuple) for measurement in remade)
        assert all(measurement.when for measurement in remade)
