"""The learning loop's pages in a real browser: a model type's timeline of cycles (steps, envelope
criterion by criterion), one cycle's page, and the policies (clinical leads write a new version, ML
engineers read); clinicians and the privacy officer are refused. No console error, no CSP report."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.test_csp import watch

TIMELINE = "/admin/learning/learningcycle/timeline/{slug}/"
POLICIES = "/admin/learning/learningpolicy/"
CRITERIA = [
    "evaluation_cases",
    "unseen",
    "non_inferiority",
    "subgroup:sex=female",
    "subgroup:sex=male",
    "calibration",
]


def envelope(*, calibration: float) -> dict[str, Any]:
    """An envelope as ``learning.envelope`` writes it (names, figures, bounds and details)."""
    passed = calibration <= 0.1
    return {
        "passed": passed,
        "failed": [] if passed else ["calibration"],
        "criteria": [
            {"name": "evaluation_cases", "figure": 150.0, "bound": 100.0, "passed": True,
             "detail": "150 locked cases; at least 100 needed."},
            {"name": "unseen", "figure": 0.0, "bound": 0.0, "passed": True,
             "detail": "0 locked case(s) of patients in either model's training data."},
            {"name": "non_inferiority", "figure": -0.0213, "bound": -0.05, "passed": True,
             "detail": "Accuracy difference +0.0067 (candidate - champion); one-sided 95% lower bound -0.0213 "
             "against -0.05."},
            {"name": "subgroup:sex=female", "figure": 0.0133, "bound": -0.1, "passed": True,
             "detail": "75 cases: accuracy 0.9200 against the champion's 0.9067."},
            {"name": "subgroup:sex=male", "figure": 0.0, "bound": -0.1, "passed": None,
             "detail": "12 cases: too few to judge."},
            {"name": "calibration", "figure": calibration, "bound": 0.1, "passed": passed,
             "detail": f"ECE {calibration:.4f} of the candidate on the locked set."},
        ],
    }  # fmt: skip


def contrast(page: Any, text: str, background: str) -> float:
    """The WCAG contrast ratio of ``text``'s colour against ``background``'s background colour."""
    return float(
        page.evaluate(
            """([text, background]) => {
                const luminance = (css) => {
                    const [r, g, b] = css.match(/[0-9.]+/g).slice(0, 3).map(Number).map((c) => {
                        c /= 255;
                        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
                    });
                    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
                };
                const fg = luminance(getComputedStyle(document.querySelector(text)).color);
                const bg = luminance(getComputedStyle(document.querySelector(background)).backgroundColor);
                return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
            }""",
            [text, background],
        )
    )


@pytest.fixture
def cycles(site) -> list[Any]:
    """The demo's diagnosis type with a champion, a policy written by the clinical lead, and three
    cycles: one promoted, one rejected by the envelope, one still training."""
    from learning.models import LearningCycle
    from tests.learning.factories import policy
    from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
    from training.models import ModelType

    Status, Trigger = LearningCycle.Status, LearningCycle.Trigger
    model_type = ModelType.objects.get(slug="diagnosis")
    engineer, lead = site.users["demo-ml-engineer"], site.users["demo-clinical-lead"]
    snapshot = ready_snapshot(model_type, by=engineer)
    champion = ModelVersionFactory.create(
        trained=True, approved=True, dataset=snapshot, created_by=engineer, approved_by=lead
    )
    candidate = ModelVersionFactory.create(
        trained=True, dataset=snapshot, created_by=engineer, hyperparameters={"C": 0.5}
    )
    current = policy(model_type, by=lead, min_evaluation_cases=100, trigger_drift_psi=0.25)
    made = []
    for trigger, status, detail, calibration, outcome in (
        (Trigger.DRIFT, Status.PROMOTED, {"input": "findings.temperature_c", "psi": 0.31}, 0.04,
         f"{candidate.version} promoted: inside the envelope."),
        (Trigger.NEW_CASES, Status.REJECTED, {"new_cases": 250}, 0.31,
         f"{candidate.version} rejected by the envelope: calibration."),
        (Trigger.SCHEDULE, Status.TRAINING, {"days": 30}, None, ""),
    ):  # fmt: skip
        cycle = LearningCycle.objects.create(
            model_type=model_type,
            policy=current,
            trigger=trigger,
            trigger_detail=detail,
            status=status,
            champion=champion,
            candidate=None if calibration is None else candidate,
            envelope={} if calibration is None else envelope(calibration=calibration),
            envelope_passed=None if calibration is None else calibration <= 0.1,
            outcome=outcome,
        )
        cycle.transitions.create(from_state="", to_state="waiting_for_dataset", reason=f"Trigger: {trigger}.")
        cycle.transitions.create(from_state="waiting_for_dataset", to_state="training", reason="Dataset ready.")
        if calibration is not None:
            cycle.transitions.create(from_state="training", to_state="evaluating", reason="Candidates trained.")
            cycle.transitions.create(from_state="evaluating", to_state=status, actor=lead, reason=outcome)
        made.append(cycle)
    return made


@pytest.mark.parametrize("username", ["demo-ml-engineer", "demo-clinical-lead"])
def test_ml_staff_read_a_model_types_timeline_with_steps_and_envelopes(site, cycles, username):
    promoted, rejected, training = cycles
    page = site.login(username)
    problems = watch(page, [])
    page.goto("/admin/learning/learningcycle/")
    site.shoot(page, "learning-cycles")
    assert page.locator("#result_list tbody tr").count() == 3
    page.goto(TIMELINE.format(slug="diagnosis"))
    site.shoot(page, "learning-timeline")

    sections = page.locator("section.learning-cycle")
    assert sections.count() == 3
    assert "learning policy v1" in page.locator("#content-main > p").first.inner_text()
    rejected_section = page.locator(f"#cycle-{rejected.pk}")
    assert "rejected by the envelope" in rejected_section.locator("h2").inner_text().lower()
    criteria = rejected_section.locator("table", has=page.locator("th", has_text="criterion"))
    assert criteria.locator("tbody tr td:first-child").all_inner_texts() == CRITERIA
    assert criteria.locator("tr", has_text="calibration").locator("td").nth(3).inner_text() == "FAIL"
    steps = page.locator(f"#cycle-{training.pk} table", has=page.locator("th", has_text="step"))
    assert steps.locator("tbody tr").count() == 2
    assert page.locator(f"#cycle-{training.pk} table").count() == 1  # no envelope yet: no empty table

    # The cycle's link in its section's header is readable: WCAG contrast against the header of at
    # least 3 (the admin's link colour on the header's blue was 1.0: invisible).
    assert contrast(page, f"#cycle-{promoted.pk} h2 a", f"#cycle-{promoted.pk} h2") >= 3
    page.click(f'#cycle-{promoted.pk} h2 a[href="/admin/learning/learningcycle/{promoted.pk}/change/"]')
    page.wait_for_load_state()
    site.shoot(page, "learning-cycle-page")
    assert page.locator(".field-envelope_table table tbody tr").count() == len(CRITERIA)
    assert page.locator(".field-timeline_link a").get_attribute("href") == TIMELINE.format(slug="diagnosis")
    assert problems == []


def test_a_clinical_lead_saves_an_edited_policy_as_the_next_version(site, cycles):
    page = site.login("demo-clinical-lead")
    problems = watch(page, [])
    page.goto(POLICIES)
    site.shoot(page, "policies")
    # Every column fits the list at 1,440 px ("Created at" was cut off by the test mode's sentence).
    overflow = page.evaluate(
        "() => { const r = document.querySelector('#changelist .results'); return r.scrollWidth - r.clientWidth; }"
    )
    assert overflow <= 0
    assert page.locator("td.field-test span").first.get_attribute("title").startswith("Shadow test (")
    page.click("#result_list tbody tr th a")
    page.wait_for_selector("#learningpolicy_form")
    site.shoot(page, "policy-form")
    assert page.locator("fieldset h2, fieldset legend").filter(has_text="Acceptance envelope").count() == 1
    page.fill("#id_reason", "Tighter drift trigger after the temperature shift.")
    page.fill("#id_trigger_drift_psi", "0.2")
    page.click('#learningpolicy_form [name="_save"]')
    page.wait_for_selector(".messagelist")
    site.shoot(page, "policy-saved")
    assert "Saved as version 2" in page.locator(".messagelist").inner_text()
    assert page.locator("#result_list tbody tr").count() == 2
    assert problems == []


def test_an_ml_engineer_reads_a_policy_without_a_save_button(site, cycles):
    page = site.login("demo-ml-engineer")
    problems = watch(page, [])
    page.goto(POLICIES)
    site.shoot(page, "policies-read-only")
    assert page.locator("td.field-test span").first.inner_text() == "Shadow"
    page.click("#result_list tbody tr th a")
    page.wait_for_load_state()
    site.shoot(page, "policy-read-only")
    assert page.locator('[name="_save"]').count() == 0
    assert page.locator(".field-recipe .readonly").is_visible()
    assert problems == []


@pytest.mark.parametrize("username", ["demo-clinician", "demo-privacy-officer"])
def test_other_roles_are_refused_the_learning_pages(site, cycles, username):
    page = site.login(username)
    for url in (TIMELINE.format(slug="diagnosis"), POLICIES, f"/admin/learning/learningcycle/{cycles[0].pk}/change/"):
        response = page.goto(url)
        assert response is not None
        assert response.status == 403, url
    site.shoot(page, "learning-refused")
    assert page.locator("section.learning-cycle").count() == 0


@pytest.mark.parametrize("username", ["demo-ml-engineer", "demo-clinical-lead"])
def test_people_on_the_cycle_and_policy_pages_are_named_without_links(site, cycles, username):
    page = site.login(username)
    page.goto(f"/admin/learning/learningcycle/{cycles[0].pk}/change/")
    assert "demo-clinical-lead" in page.locator(".inline-group").inner_text()
    links = page.locator('#content-main a[href^="/admin/auth/user/"]').count()
    page.goto(POLICIES)
    page.click("#result_list tbody tr th a")
    page.wait_for_load_state()
    assert links + page.locator('#content-main a[href^="/admin/auth/user/"]').count() == 0
