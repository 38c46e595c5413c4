"""The de-identified row format has one owner (``cases.rows``): every other place follows from it."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from cases import rows
from cases.deid.records import deidentify
from cases.dictionary.definition import parse_definition
from cases.dictionary.files import DEMO_DIRECTORY, read_file
from cases.interchange import parse_record
from cases.rows import ModelInputs
from tests.cases.factories import record_dict

# The dataset file's schema as format version 1 wrote it, before ``cases.rows`` owned it: files
# built then must read with today's code, and today's files must be the same format.
FORMAT_1 = pa.schema(
    [
        pa.field("case_id", pa.int64(), nullable=False),
        pa.field("split", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_text", pa.string()),
        pa.field("age", pa.int16(), nullable=True),
        pa.field("age_band", pa.string(), nullable=True),
        pa.field("sex", pa.string()),
        pa.field("encounter_year", pa.int16()),
        pa.field("findings", pa.map_(pa.string(), pa.float64())),
        pa.field("symptoms", pa.list_(pa.string())),
    ],
    metadata={"format_version": "1"},
)


@pytest.fixture
def record(settings):
    return deidentify(
        parse_record(record_dict(findings={"wbc": 12.8, "spo2": 93}, symptoms=["fever", "cough"])),
        key=settings.PSEUDONYM_KEY,
    )


def test_every_place_that_names_the_row_takes_its_columns_from_one_definition(record, settings):
    from models_registry.serving.inputs import prediction_input
    from training import dataset_format, datasets

    names = list(rows.COLUMN_NAMES)
    assert dataset_format.SCHEMA.names == names
    assert list(rows.row_from_record(record, case_id=1, split="train")) == names
    # The stored row: its format, then each file column's keys but those the build adds.
    stored = json.loads(rows.stored_row(record))
    assert list(stored) == list(rows.STORED_KEYS) == rows.stored_row_schema().names
    assert datasets._ROW_JSON_OPTIONS.explicit_schema.names == list(rows.STORED_KEYS)
    assert [column.name for column in rows.COLUMNS if not column.stored] == ["case_id", "split"]
    # What the build writes before the split: the file's columns but the split, in order.
    assert datasets._ROW_SCHEMA.names == [name for name in names if name != "split"]
    # Serving: the row a prediction keeps, whichever form the record takes.
    model_fields = list(rows.MODEL_FIELDS)
    assert model_fields == ["age", "age_band", "sex", "findings", "symptoms"]
    by_patient = prediction_input(record_dict())
    by_features = prediction_input({"age": 40, "sex": "female", "findings": {"spo2": 93}, "symptoms": ["cough"]})
    assert list(by_patient.row) == list(by_features.row) == model_fields
    assert list(rows.model_row(record)) == model_fields
    assert set(dataset_format.TRAINING_COLUMNS) == {"case_id", "split", "label", *model_fields}


def test_the_dataset_file_format_is_version_1_unchanged():
    assert rows.dataset_schema().equals(FORMAT_1, check_metadata=True)
    assert rows.FORMAT_VERSION == "1"


def test_a_stored_row_is_byte_for_byte_the_dr1_format():
    record = {
        "patient_pseudonym": "ab12",
        "age": "90+",
        "age_band": "90+",
        "sex": None,
        "encounter_year": 2025,
        "findings": {"wbc": 12.8, "crp": 40},
        "symptoms": ["toux sèche"],
        "diagnosis": {"code": "J18.9", "label": None},
        "note": "never in a row",
        "zip3": "021",
    }

    assert rows.stored_row(record) == (
        '{"v":"dr1","pseudonym":"ab12","code":"J18.9","label":"","age":90,"age_band":"90+",'
        '"sex":"unknown","year":2025,"finding_keys":["crp","wbc"],"finding_values":[40,12.8],'
        '"symptoms":["toux sèche"]}'
    )
    assert rows.stored_row(record).startswith(rows.STORED_ROW_PREFIX)


def test_a_row_holds_no_field_of_the_record_outside_its_columns(record):
    row = rows.row_from_record(record, case_id=3, split="test")

    assert "note" not in row
    assert "zip3" not in row
    assert "source" not in row
    assert row["patient_pseudonym"] == record["patient_pseudonym"]
    assert row["label"] == record["diagnosis"]["code"]
    assert row["findings"] == {"wbc": 12.8, "spo2": 93}


def test_the_model_inputs_follow_the_dictionarys_demographics_and_model_findings():
    breast = parse_definition(read_file(DEMO_DIRECTORY / "breast-mass.json")["dictionary"])
    respiratory = parse_definition(read_file(DEMO_DIRECTORY / "respiratory.json")["dictionary"])

    breast_inputs = ModelInputs.of(breast)
    assert breast_inputs.demographics == frozenset()
    assert [name for name in rows.MODEL_FIELDS if breast_inputs.uses(name)] == ["findings", "symptoms"]
    assert breast_inputs.uses_finding("mean_radius")
    assert not breast_inputs.uses_finding("bogus")
    # What a dataset file of the cohort may hold: the findings and symptoms it defines.
    assert rows.dictionary_keys(breast) == {"findings": breast.finding_keys, "symptoms": breast.symptom_keys}
    respiratory_inputs = ModelInputs.of(respiratory)
    assert [name for name in rows.MODEL_FIELDS if respiratory_inputs.uses(name)] == list(rows.MODEL_FIELDS)
    # A cohort without a dictionary: everything, as before dictionaries.
    assert ModelInputs.of(None) == rows.ALL_INPUTS
    assert all(rows.ALL_INPUTS.uses(name) for name in rows.MODEL_FIELDS)
    assert rows.ALL_INPUTS.uses_finding("anything")
    assert not rows.ALL_INPUTS.uses("encounter_year")


def test_a_file_written_in_format_1_reads_with_todays_reader():
    import io

    import pyarrow.parquet as pq

    from training.dataset_format import rows_by_split_of

    table = pa.Table.from_pylist(
        [
            {
                "case_id": case_id,
                "split": split,
                "patient_pseudonym": f"p{case_id}",
                "label": label,
                "label_text": "",
                "age": 90,
                "age_band": "90+",
                "sex": "female",
                "encounter_year": 2024,
                "findings": [("spo2", 91.0 + case_id)],
                "symptoms": ["cough"],
            }
            for case_id, split, label in [(1, "train", "J18.9"), (2, "test", "J06.9"), (3, "train", "J06.9")]
        ],
        schema=FORMAT_1,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)

    by_split = rows_by_split_of(sink.getvalue())

    assert [row["case_id"] for row in by_split["train"]] == [1, 3]
    assert by_split["test"][0] == {
        "case_id": 2,
        "split": "test",
        "patient_pseudonym": "p2",
        "label": "J06.9",
        "label_text": "",
        "age": 90,
        "age_band": "90+",
        "sex": "female",
        "encounter_year": 2024,
        "findings": {"spo2": 93.0},
        "symptoms": ["cough"],
    }
    values = by_split["test"].columns.findings.values
    assert values is not None
    assert values.tolist() == [93.0]
