"""The monitoring page of a model type in a real browser: ML engineers and clinical leads see the
live accuracy with its interval against the offline line and the PSI per input over the snapshots,
as SVG with named series, under the Content-Security-Policy; other roles are refused."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.browser.test_csp import watch

PAGE = "/admin/monitoring/monitoringsnapshot/model-type/{slug}/"
ROUNDS = 5
ACCURACY_SERIES = ["live accuracy", "interval (low)", "interval (high)", "offline accuracy", "offline - tolerance"]


def complete_rows_by_split(*, seed: int, first_id: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Dataset rows with every finding of the respiratory dictionary (the registry factory's hold
    two), so the version's training reference describes each input it is sent."""
    from tests.models_registry.serving.factories import synthetic_rows

    rows = synthetic_rows(150, seed=seed)
    splits: dict[str, list[dict[str, Any]]] = {}
    for index, row in enumerate(rows):
        split = "train" if index < 80 else "validation" if index < 90 else "test"
        splits.setdefault(split, []).append({**row, "case_id": first_id + index, "split": split})
    return splits


@pytest.fixture
def monitored(site, fresh_serving, settings, monkeypatch) -> Any:
    """The demo's diagnosis type served by a version trained on its dataset's rows, and five
    snapshots taken as answers and feedback come in: the patients grow warmer round by round
    (temperature drifts), a quarter of the answers are corrected (live accuracy below 100 %)."""
    from monitoring.compute import compute_snapshot, version_scope
    from tests.models_registry.registry import factories as registry
    from tests.models_registry.serving.factories import COLD_FEATURES, PNEUMONIA_FEATURES, served_version
    from tests.monitoring.factories import predict_batch
    from training.models import ModelType

    settings.MONITORING_MIN_INPUTS = 10
    monkeypatch.setattr(registry, "rows_by_split", complete_rows_by_split)
    model_type = ModelType.objects.get(slug="diagnosis")
    engineer, lead = site.users["demo-ml-engineer"], site.users["demo-clinical-lead"]
    dataset = registry.ready_snapshot(model_type, by=engineer)
    splits = dataset._splits  # type: ignore[attr-defined]
    version = served_version(
        model_type=model_type, engineer=engineer, lead=lead, dataset=dataset, rows=splits["train"] + splits["test"]
    )
    client, clinician = site.users["demo-prediction-client"], site.users["demo-clinician"]
    for round_number in range(ROUNDS):
        rng = random.Random(round_number)
        records = []
        for i in range(16):
            base = PNEUMONIA_FEATURES if i % 2 == 0 else COLD_FEATURES
            findings = {key: round(value * rng.uniform(0.97, 1.03), 1) for key, value in base["findings"].items()}
            findings["spo2"] = min(findings["spo2"], 100.0)
            findings["temperature_c"] += 0.5 * round_number
            records.append(
                {
                    **base,
                    "findings": findings,
                    "age": max(18, min(89, base["age"] + rng.randint(-15, 15))),
                    "sex": rng.choice(["female", "male"]),
                    "subject_key": f"round-{round_number}-subject-{i}",
                }
            )
        answered = predict_batch(client, records, slug=model_type.slug)
        for index, prediction in enumerate(answered[:12]):
            other = "J06.9" if prediction.predicted_code == "J18.9" else "J18.9"
            prediction.give_feedback(diagnosis_code=prediction.predicted_code if index % 4 else other, by=clinician)
        compute_snapshot(version_scope(version))
    return version


def series_names(page: Any, label: str) -> list[str]:
    """The names of a line chart's series (each series' group carries its name as a <title>)."""
    chart = page.locator(f'svg.line-chart-svg[aria-label^="{label}"]')
    return [str(name) for name in chart.locator("g.line-chart-series > title").all_text_contents()]


@pytest.mark.parametrize("username", ["demo-ml-engineer", "demo-clinical-lead"])
def test_ml_staff_see_accuracy_and_drift_over_time_as_charts(site, monitored, username):
    page = site.login(username)
    problems = watch(page, [])
    page.click('#content-main a[href="/admin/monitoring/monitoringsnapshot/"] >> nth=0')
    site.shoot(page, "monitoring-snapshots")
    page.click(f'a[href="{PAGE.format(slug="diagnosis")}"] >> nth=0')
    page.wait_for_selector("svg.line-chart-svg")
    site.shoot(page, "monitoring-page")

    assert page.locator("svg.line-chart-svg").count() == 2
    assert series_names(page, "Live accuracy") == ACCURACY_SERIES
    accuracy = page.locator('svg.line-chart-svg[aria-label^="Live accuracy"]')
    assert accuracy.locator("polyline").count() >= len(ACCURACY_SERIES)  # every series drawn, none empty
    assert accuracy.locator("circle").count() == ROUNDS * len(ACCURACY_SERIES)  # one point per snapshot
    drift = series_names(page, "PSI against the training reference")
    assert drift[-1] == "threshold"
    assert "findings.temperature_c" in drift
    assert 2 <= len(drift) <= 5
    assert page.locator('svg.line-chart-svg[aria-label^="PSI"] circle').count() == ROUNDS * len(drift)

    # Every legend (long input names with their last value) is drawn inside its chart, not cut off.
    overflow = page.eval_on_selector_all(
        "svg.line-chart-svg",
        "svgs => svgs.flatMap(svg => [...svg.querySelectorAll('g.line-chart-series > text')]"
        ".filter(t => t.getBoundingClientRect().right > svg.getBoundingClientRect().right + 0.5)"
        ".map(t => t.textContent))",
    )
    assert overflow == []
    inputs = page.locator("table.monitoring", has=page.locator("th", has_text="outside expected range"))
    assert inputs.locator("tbody tr").count() >= 2
    assert (
        page.locator("table.monitoring", has=page.locator("th", has_text="live share")).locator("tbody tr").count() == 2
    )
    recent = page.locator(".module", has=page.locator("h2", has_text="Recent snapshots"))
    assert recent.locator("tbody tr").count() == ROUNDS
    assert "round-" not in page.content()  # no subject key reaches the page
    assert problems == []


@pytest.mark.parametrize("username", ["demo-clinician", "demo-privacy-officer"])
def test_other_roles_are_refused_the_monitoring_page(site, monitored, username):
    page = site.login(username)
    response = page.goto(PAGE.format(slug="diagnosis"))
    assert response is not None
    assert response.status == 403
    site.shoot(page, "monitoring-refused")
    assert page.locator("svg.line-chart-svg").count() == 0
    assert "may not open this page" in page.locator("#content").inner_text()
