"""Dictionary files: the shipped demo dictionaries, load_dictionary and export_dictionary."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json

import pytest
from django.core.management import CommandError, call_command

from cases import demo
from cases.demo_respiratory import RESPIRATORY_FINDINGS, RESPIRATORY_PROFILES, SYMPTOMS
from cases.dictionary.definition import parse_definition
from cases.dictionary.files import DEMO_DIRECTORY, load_demo_dictionaries
from cases.dictionary.validation import validate_record
from cases.interchange import parse_record
from cases.models import Cohort, DataDictionary
from tests.cases.dictionary_factories import small_definition

BREAST = json.loads((DEMO_DIRECTORY / "breast-mass.json").read_text())
RESPIRATORY = json.loads((DEMO_DIRECTORY / "respiratory.json").read_text())
TODAY = dt.date(2030, 1, 1)
DEMO_SLUGS = ("breast-mass", "respiratory")  # in the test database from the start (tests/conftest.py)


# --- The shipped dictionaries ------------------------------------------------------------------


def test_breast_mass_dictionary_has_the_30_measurements_and_no_demographics():
    parsed = parse_definition(BREAST["dictionary"])
    assert [item.key for item in parsed.findings] == demo.breast_feature_names()
    assert parsed.model_findings == tuple(demo.breast_feature_names())
    assert not parsed.uses_age
    assert not parsed.uses_sex
    assert {item.code: item.display_name for item in parsed.diagnoses} == {
        "C50.9": "Malignant neoplasm of breast of unspecified site",
        "D24.9": "Benign neoplasm of unspecified breast",
    }
    assert {code for code, _label in demo.BREAST_DIAGNOSES.values()} == parsed.diagnosis_codes
    ratios = [item.key for item in parsed.findings if item.unit == "1"]
    assert len(ratios) == 18  # six dimensionless features, as mean, error and worst


def test_respiratory_dictionary_codes_and_units():
    parsed = parse_definition(RESPIRATORY["dictionary"])
    coded = {item.key: (item.loinc, item.unit) for item in parsed.findings}
    assert coded == {
        "temperature_c": ("8310-5", "Cel"),
        "heart_rate": ("8867-4", "/min"),
        "respiratory_rate": ("9279-1", "/min"),
        "spo2": ("59408-5", "%"),
        "systolic_bp": ("8480-6", "mm[Hg]"),
        "wbc": ("6690-2", "10*3/uL"),
        "crp": ("1988-5", "mg/L"),
        "nt_probnp": ("33762-6", "pg/mL"),
    }
    assert set(parsed.model_findings) == set(RESPIRATORY_FINDINGS)
    assert parsed.symptom_keys == set(SYMPTOMS)
    assert {(item.code, item.display_name) for item in parsed.diagnoses} == {
        (profile.code, profile.label) for profile in RESPIRATORY_PROFILES
    }
    assert parsed.uses_age
    assert parsed.uses_sex


@pytest.mark.parametrize(
    ("document", "records"),
    [
        (BREAST, lambda: demo.breast_mass_records()),
        (RESPIRATORY, lambda: itertools.islice(demo.respiratory_records(400), 400)),
    ],
    ids=["breast-mass", "respiratory"],
)
def test_demo_records_are_valid_under_their_dictionary_but_for_the_planted_unit_errors(document, records):
    """The demo plants temperatures in Fahrenheit (``demo.P_FAHRENHEIT``): the hard limits catch
    exactly those; SpO2 written as a fraction is left to the expected range (a quality issue)."""
    parsed = parse_definition(document["dictionary"])
    checked, refused = 0, 0
    for raw in records():
        result = validate_record(parse_record(raw), parsed, today=TODAY)
        fahrenheit = raw["findings"].get("temperature_c", 0) > 50
        if fahrenheit:
            refused += 1
            assert [(issue.code, issue.field) for issue in result.errors] == [
                ("outside_hard_limits", "findings.temperature_c")
            ]
        else:
            assert result.errors == (), raw["external_id"]
        checked += 1
    assert checked >= 400
    assert refused < checked * 0.03


# --- load_dictionary / export_dictionary ---------------------------------------------------------


def write(tmp_path, document, name="dictionary.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def small_document(**definition_changes):
    return {
        "cohort": {"slug": "small", "name": "Small", "description": "A test cohort."},
        "dictionary": small_definition(**definition_changes),
    }


@pytest.mark.django_db
def test_load_creates_the_cohort_and_a_published_version_once(tmp_path):
    path = write(tmp_path, small_document())
    out = io.StringIO()
    call_command("load_dictionary", path, stdout=out)
    assert "small: version 1 (published), created" in out.getvalue()
    call_command("load_dictionary", path, stdout=out)
    assert "small: version 1 (published), unchanged" in out.getvalue()
    cohort = Cohort.objects.get(slug="small")
    assert cohort.name == "Small"
    assert list(cohort.dictionaries.values_list("version", "status")) == [(1, "published")]


@pytest.mark.django_db
def test_a_changed_file_makes_a_new_version_based_on_the_last(tmp_path):
    call_command("load_dictionary", write(tmp_path, small_document()), stdout=io.StringIO())
    changed = small_document(demographics={"age": False, "sex": False})
    call_command("load_dictionary", write(tmp_path, changed), "--draft", stdout=io.StringIO())
    second = DataDictionary.objects.get(cohort__slug="small", version=2)
    assert second.status == "draft"
    assert second.based_on is not None
    assert second.based_on.version == 1
    assert second.definition == changed["dictionary"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        (json.dumps([1]), "must hold a JSON object"),
        (json.dumps({"cohort": {"slug": "x y", "name": "X"}, "dictionary": {}}), "cohort.slug"),
        (json.dumps({**small_document(), "extra": 1}), "Unknown top-level keys: extra"),
        (json.dumps(small_document(diagnoses=[])), "dictionary.diagnoses"),
    ],
)
def test_a_bad_file_is_refused_with_a_message_and_nothing_is_written(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("load_dictionary", str(path), stdout=io.StringIO())
    assert not Cohort.objects.exclude(slug__in=DEMO_SLUGS).exists()


@pytest.mark.django_db
def test_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("load_dictionary", str(tmp_path / "nope.json"), stdout=io.StringIO())


@pytest.mark.django_db
def test_dry_run_writes_nothing(tmp_path):
    out = io.StringIO()
    call_command("load_dictionary", write(tmp_path, small_document()), "--dry-run", stdout=out)
    assert "dry run" in out.getvalue()
    assert not Cohort.objects.exclude(slug__in=DEMO_SLUGS).exists()


@pytest.mark.django_db
def test_export_then_load_round_trips(tmp_path):
    load_demo_dictionaries()
    for document in (BREAST, RESPIRATORY):
        slug = document["cohort"]["slug"]
        target = tmp_path / f"{slug}.json"
        call_command("export_dictionary", slug, "--output", str(target), stderr=io.StringIO())
        exported = json.loads(target.read_text())
        assert exported == {**document, "version": 1, "status": "published"}
        out = io.StringIO()
        call_command("load_dictionary", str(target), stdout=out)
        assert f"{slug}: version 1 (published), unchanged" in out.getvalue()
    stdout = io.StringIO()
    call_command("export_dictionary", "respiratory", stdout=stdout)
    assert json.loads(stdout.getvalue())["dictionary"] == RESPIRATORY["dictionary"]


@pytest.mark.django_db
def test_export_errors_are_command_errors():
    with pytest.raises(CommandError, match="No cohort 'nope'"):
        call_command("export_dictionary", "nope", stdout=io.StringIO())
    load_demo_dictionaries()
    with pytest.raises(CommandError, match="has no version 7"):
        call_command("export_dictionary", "respiratory", "--dictionary-version", "7", stdout=io.StringIO())
