"""The dataset file format (Parquet): one row per case, de-identified fields only.

The builder (``training.datasets``) writes it; the trainer and the registry's evaluation read it.
Deliberately absent: the free-text note (data minimisation: no model here reads text, and text
is where residual identifiers hide), the external id, the source's own identifiers.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

FORMAT_VERSION = "1"

SCHEMA = pa.schema(
    [
        pa.field("case_id", pa.int64(), nullable=False),
        pa.field("split", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_text", pa.string()),
        pa.field("age", pa.int16(), nullable=True),  # 90 stands for the "90+" band
        pa.field("age_band", pa.string(), nullable=True),
        pa.field("sex", pa.string()),
        pa.field("encounter_year", pa.int16()),
        pa.field("findings", pa.map_(pa.string(), pa.float64())),
        pa.field("symptoms", pa.list_(pa.string())),
    ],
    metadata={"format_version": FORMAT_VERSION},
)
STRING_COLUMNS = ("patient_pseudonym", "label", "label_text", "age_band", "sex")


def row_from_deidentified(case_id: int, split: str, record: dict) -> dict:
    """One Parquet row from a case's de-identified record (``cases.deid.deidentify``'s output)."""
    age = record.get("age")
    return {
        "case_id": case_id,
        "split": split,
        "patient_pseudonym": record["patient_pseudonym"],
        "label": record["diagnosis"]["code"],
        "label_text": record["diagnosis"].get("label") or "",
        "age": 90 if age == "90+" else age,
        "age_band": record.get("age_band"),
        "sex": record.get("sex") or "unknown",
        "encounter_year": record.get("encounter_year"),
        "findings": list(record.get("findings", {}).items()),
        "symptoms": list(record.get("symptoms", [])),
    }


def read_rows_by_split(snapshot: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of a ready snapshot's file, grouped by split, as plain dicts (for training).

    The file is read through the storage (shared object storage in a multi-machine deployment)
    and its sha256 checked first: a snapshot is immutable, so a changed file is an error.
    """
    import hashlib
    import io

    import pyarrow.parquet as pq

    with snapshot.file.open("rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if snapshot.file_sha256 and digest != snapshot.file_sha256:
        raise DatasetFileChanged(f"Dataset {snapshot.pk}'s file does not match its recorded sha256.")
    table = pq.read_table(io.BytesIO(data))
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for row in table.to_pylist():
        row["findings"] = dict(row["findings"] or [])
        rows.setdefault(row["split"], []).append(row)
    return rows


class DatasetFileChanged(Exception):
    pass
