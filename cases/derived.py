"""What approval stores beside a case's de-identified record (``Case.approve``, ``cases.redeid``).

Computed once, so that dataset builds never recompute them per case: the record's sha256, its
dataset row (``cases.rows``) and the patient's residual keys (``cases.deid.residual``). This module
sits above both de-identification and the row format, which builds on de-identification's "90+".
"""

from __future__ import annotations

from typing import Any

from cases.deid.records import record_sha256
from cases.deid.residual import residual_keys
from cases.rows import stored_row


def approval_columns(patient: dict[str, Any], deidentified: dict[str, Any]) -> dict[str, str]:
    """The derived columns of an approved case: ``deid_sha256``, ``deid_dataset_row``, ``residual_keys``."""
    return {
        "deid_sha256": record_sha256(deidentified),
        "deid_dataset_row": stored_row(deidentified),
        "residual_keys": residual_keys(patient),
    }
