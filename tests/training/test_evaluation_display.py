"""The evaluation table shows a score and its interval in the same unit (percent), not 91.3% beside 0.850 to 0.950."""

from __future__ import annotations

from training.admin.display import headline_rows


def test_a_percentage_metric_and_its_interval_read_in_percent():
    rows = {row["name"]: row for row in headline_rows({"accuracy": 0.9, "accuracy_ci": [0.85, 0.95], "ece": 0.04})}

    assert rows["Accuracy"]["value"] == "90.0%"
    assert rows["Accuracy"]["interval"] == "85.0% to 95.0%"
    assert rows["Expected calibration error"]["interval"] == ""  # no interval given: none shown
