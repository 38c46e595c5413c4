"""The learning loop, simulated through the real code path: a concept drift, its detection, the
retrained candidate judged by the acceptance envelope, and bad candidates that must never pass.

The stream (issue 15, "Proven by a simulation"): the respiratory generator
(``cases.demo.respiratory_records``) with a concept drift at a known encounter
(``cases.demo_respiratory.COVID_VARIANT``: COVID-19 becomes about half of new patients and its CRP six
times as high, so a model trained before takes many of them for pneumonia). Every encounter goes the
way a real one does:

- its case is imported (``cases.importing.import_objects``) and approved by a second clinician
  (``Case.approve``: the real de-identification);
- a prediction is served through the batch predict endpoint (JWT, the patient block de-identified
  in memory, the prediction log, monitoring's input tallies);
- the confirmed diagnosis comes back as feedback (``Prediction.give_feedback``);
- after each batch (a simulated day of ``BATCH`` encounters) monitoring takes its snapshots
  (``monitoring.compute.compute_all``, what the periodic chain runs) and the learning policy's
  triggers are read from ``monitoring.health.current``.

A simulated clock: the batch's predictions and input tallies are dated ``day k`` and the snapshot
is taken at the end of that day, so monitoring's window (``MONITORING_WINDOW_HOURS``, three days
here) holds the last three batches, as it would in a hospital.

When a trigger fires (drift above the policy's PSI, or degradation), a learning cycle runs: the
policy's locked evaluation set (``learning.locked.current_locked_set``), a dataset snapshot and a
training job run by the worker's task (``training.tasks.run_training_job``, synchronously), the
registry's version, and the acceptance envelope (``learning.evaluation.judge_versions``) against the
champion on the locked cases. A candidate inside the envelope is approved and activated by the
clinical lead. ``LearningCycle`` (the automatic cycle with its shadow test) has not landed yet: the
cycle here is these same steps called in order, and the shadow test before promotion is left out.

Figures: the detection delay in encounters after the drift point (drift and degradation apart); the
served accuracy before the drift, after it and after the promotion, against a model retrained by
hand on the post-drift cases (``training.trainer.train`` on them, judged on the same encounters the
promoted version answered); the number of cycles. Then bad candidates are injected into the
candidate step, ``BAD_RUNS`` runs of each kind against the champion on the locked set: a model
trained on shuffled labels, the candidate made worse in one subgroup, the candidate miscalibrated.
The envelope must reject every one, and the prediction log must show no answer by a version that
did not pass the envelope.

``BENCH_SCALE`` shrinks the stream (``python -m benchmarks learning_loop --scale 0.3``; the quick
run in ``tests/benchmarks`` uses it).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.harness import Result, scaled

SLUG = "respiratory-loop"
SEED = 2027
INITIAL = 1200  # pre-drift cases the first champion trains on
STREAM = 2600  # encounters streamed once it is live
DRIFT_AT = 800  # the stream's first drifted encounter (1-based)
BATCH = 100  # encounters a simulated day
WINDOW_HOURS = 72  # monitoring's window: the last three days
COOLDOWN = 400  # encounters between two cycles (a cycle is not started while one would overlap)
BAD_RUNS = 10  # runs of each bad-candidate kind
LOOP_GOAL = 1.05  # hand-retrained accuracy / the loop's promoted accuracy


@dataclass
class Cycle:
    trigger: str
    position: int  # stream position when it started
    passed: bool
    failed: list[str]
    candidate: Any
    champion: Any
    locked: Any
    envelope: dict[str, Any]


@dataclass
class Day:
    end: int  # stream position of the day's last encounter
    version: Any
    degraded: bool
    drifted: dict[str, float]
    live_accuracy: float | None


@dataclass
class Loop:
    users: dict[str, Any]
    model_type: Any
    policy: Any
    champion: Any = None
    cycles: list[Cycle] = field(default_factory=list)
    days: list[Day] = field(default_factory=list)
    served: list[tuple[int, str, bool, int]] = field(default_factory=list)  # position, code, correct, version
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # position -> dataset row (approved cases)
    passed_versions: set[int] = field(default_factory=set)


# --- Set-up ------------------------------------------------------------------------------------------


def _users() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from learning_engine import roles

    made = {}
    for name, role in (
        ("submitter", roles.CLINICIAN),
        ("reviewer", roles.CLINICIAN),
        ("engineer", roles.ML_ENGINEER),
        ("lead", roles.CLINICAL_LEAD),
        ("client", roles.PREDICTION_CLIENT),
    ):
        user = get_user_model().objects.create_user(f"bench-loop-{name}")
        user.groups.add(Group.objects.get(name=role))
        made[name] = user
    return made


def _set_up() -> Loop:
    from cases.demo import RESPIRATORY_COHORT
    from cases.dictionary.files import load_demo_dictionaries
    from learning.models import LearningPolicy
    from training.models import ModelType

    users = _users()
    load_demo_dictionaries(by=users["lead"])
    model_type = ModelType.objects.create(
        slug=SLUG, name="Learning-loop simulation", cohort=RESPIRATORY_COHORT, min_cases_to_train=50, min_quality=0.0
    )
    policy = LearningPolicy(
        model_type=model_type,
        version=1,
        reason="Simulation: drift and degradation triggers, the default envelope.",
        trigger_on_degradation=True,
        trigger_drift_psi=0.25,
        recipe=[{"algorithm": "logistic_regression", "grid": {}}],
        min_evaluation_cases=scaled(200),
        locked_fraction=0.4,
        created_by=users["lead"],
    )
    policy.full_clean()
    policy.save()
    return Loop(users=users, model_type=model_type, policy=policy)


# --- Cases, predictions, feedback ------------------------------------------------------------------


def _admit(loop: Loop, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Import ``records`` as the submitting clinician, approve them as the reviewer (a case the quality
    score found implausible is rejected, as the demo's reviewer does): the approved cases by external id."""
    from cases.importing import import_objects
    from cases.models import Case

    report = import_objects(records, by=loop.users["submitter"])
    if report.created + report.failed != len(records):
        raise RuntimeError(f"import: {report.summary()}")
    ids = [record["external_id"] for record in records]
    approved = {}
    for case in Case.objects.filter(external_id__in=ids, status=Case.Status.SUBMITTED).order_by("pk"):
        if case.quality_issues:
            case.reject(by=loop.users["reviewer"], reason=Case.RejectionReason.IMPLAUSIBLE, note="Check units.")
            continue
        case.approve(by=loop.users["reviewer"], note="Reviewed.")
        approved[case.external_id] = case
    return approved


def _serve_day(loop: Loop, records: list[dict[str, Any]], start: int, day: dt.datetime) -> None:
    """One simulated day: cases admitted, predictions served, feedback given, monitoring's snapshot."""
    from benchmarks.bench_predict import prediction_client
    from cases.rows import row_from_record
    from models_registry.models import Prediction
    from monitoring.compute import compute_all
    from monitoring.health import current
    from monitoring.models import InputTally

    approved = _admit(loop, records)
    served = [(start + i, r) for i, r in enumerate(records) if r["external_id"] in approved]
    last_tally = InputTally.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    body = {
        "records": [
            {
                "patient": r["patient"],
                "encounter_date": r["encounter_date"],
                "findings": r["findings"],
                "symptoms": r["symptoms"],
                "subject_key": r["external_id"],
            }
            for _position, r in served
        ],
        # Labs are drawn for the sicker patients only: the missing ones are imputed (and listed).
        "allow_missing": True,
    }
    # A fresh access token each day, as a hospital system refreshes its own: on a loaded machine a
    # run outlives one token. secure=True: DEBUG is off here, so plain http would be redirected.
    response = prediction_client(loop.users["client"]).post(
        f"/api/v1/model-types/{SLUG}/predict/batch/", body, format="json", secure=True
    )
    if response.status_code != 200:
        raise RuntimeError(f"predict: {response.status_code} {response.content[:500]!r}")
    answers = response.json()
    predictions = Prediction.objects.in_bulk([answer["id"] for answer in answers])
    for (position, record), answer in zip(served, answers, strict=True):
        prediction = predictions[answer["id"]]
        code = record["diagnosis"]["code"]
        prediction.give_feedback(diagnosis_code=code, by=loop.users["client"])
        loop.served.append((position, code, prediction.predicted_code == code, prediction.version_id))
        case = approved[record["external_id"]]
        row = row_from_record(case.deidentified, case_id=case.pk, split="stream")
        row["label"] = code
        loop.rows[position] = row
    # The simulated clock: this day's answers and input tallies happened during the day.
    Prediction.objects.filter(pk__in=list(predictions)).update(created_at=day)
    InputTally.objects.filter(pk__gt=last_tally).update(created_at=day)
    compute_all(loop.model_type, now=day + dt.timedelta(hours=12))
    health = current(loop.champion)
    snapshot = health.snapshot
    loop.days.append(
        Day(
            end=start + len(records) - 1,
            version=loop.champion.pk,
            degraded=health.degraded,
            drifted=health.drifted,
            live_accuracy=snapshot.live_accuracy if snapshot is not None else None,
        )
    )


# --- Training and the cycle ------------------------------------------------------------------------


def _train_version(loop: Loop, *, seed: int) -> Any:
    """A snapshot of every approved case (the locked patients left out by the builder), a job run by
    the worker's task, the version the registry registers on the job's commit."""
    from models_registry.models import ModelVersion
    from training.datasets import build_snapshot, create_snapshot
    from training.models import TrainingJob
    from training.tasks import run_training_job

    snapshot = build_snapshot(create_snapshot(loop.model_type, by=loop.users["engineer"], seed=seed).pk)
    (algorithm, params), *_rest = loop.policy.grid()
    job = TrainingJob.submit(
        model_type=loop.model_type,
        by=loop.users["engineer"],
        dataset=snapshot,
        algorithm=algorithm,
        hyperparameters=params,
    )
    outcome = run_training_job.call(job.pk)
    if outcome["outcome"] != "completed":
        job.refresh_from_db()
        raise RuntimeError(f"training failed: {job.error_log}")
    return ModelVersion.objects.get(job=job)


def _promote(loop: Loop, version: Any, reason: str) -> None:
    version.approve(by=loop.users["lead"], note=reason)
    version.activate(by=loop.users["lead"], reason=reason)
    version.refresh_from_db()
    loop.champion = version
    loop.passed_versions.add(version.pk)


def _cycle(loop: Loop, trigger: str, position: int) -> Cycle:
    from learning.evaluation import judge_versions
    from learning.locked import current_locked_set

    locked = current_locked_set(loop.model_type, loop.policy)  # before the dataset: its patients stay out
    candidate = _train_version(loop, seed=len(loop.cycles) + 1)
    result = judge_versions(loop.champion, candidate, locked, loop.policy)
    cycle = Cycle(
        trigger=trigger,
        position=position,
        passed=result.passed,
        failed=result.failed(),
        candidate=candidate,
        champion=loop.champion,
        locked=locked,
        envelope=result.as_dict(),
    )
    loop.cycles.append(cycle)
    if result.passed:
        _promote(loop, candidate, f"Learning cycle {len(loop.cycles)} ({trigger}): inside the envelope.")
    return cycle


def _trigger(loop: Loop, cooldown: int) -> str | None:
    """The policy's triggers on the day's snapshot, at most once every ``cooldown`` encounters (one
    cycle at a time: the next one starts when new cases could change its candidate)."""
    day = loop.days[-1]
    last = loop.cycles[-1].position if loop.cycles else 0
    if day.end - last < cooldown:
        return None
    if day.degraded and loop.policy.trigger_on_degradation:
        return "degradation"
    threshold = loop.policy.trigger_drift_psi
    if threshold is not None and any(psi >= threshold for psi in day.drifted.values()):
        return "drift"
    return None


# --- Figures -----------------------------------------------------------------------------------------


def _accuracy(loop: Loop, low: int, high: int) -> tuple[float | None, int]:
    picked = [correct for position, _code, correct, _version in loop.served if low <= position < high]
    return (float(np.mean(picked)) if picked else None), len(picked)


def _hand_retrained(loop: Loop, drift_at: int, promoted_at: int, end: int) -> tuple[float | None, float | None, int]:
    """A model trained by hand (the trainer, no dataset, no job) on the post-drift cases before the
    promotion, and the promoted version, both judged on the encounters served after it."""
    from training.evaluation import predict_rows
    from training.trainer import train

    before = [row for position, row in sorted(loop.rows.items()) if drift_at <= position < promoted_at]
    after = [row for position, row in sorted(loop.rows.items()) if promoted_at <= position <= end]
    if len(before) < 50 or not after:
        return None, None, len(after)
    cut = len(before) * 4 // 5
    result = train(
        {"train": before[:cut], "validation": [], "test": before[cut:]},
        algorithm="logistic_regression",
        hyperparameters={},
        report=lambda progress: None,
        artifact_name="bench-loop-hand",
    )
    artifact = _load(result)
    answers = predict_rows(artifact.pipeline, after, numeric_features=artifact.numeric_features)
    truth = np.asarray([row["label"] for row in after], dtype=object)
    hand = float(np.mean(np.asarray(answers.y_pred, dtype=object) == truth))
    loop_accuracy, _count = _accuracy(loop, promoted_at, end + 1)
    return hand, loop_accuracy, len(after)


def _load(result: Any) -> Any:
    """A model the trainer saved, read back as the registry reads artifacts (hash checked)."""
    from training.artifacts import load_artifact

    if result.artifact_path is None or result.artifact_sha256 is None:
        raise RuntimeError("the trainer saved no artifact")
    return load_artifact(result.artifact_path, result.artifact_sha256)


# --- Bad candidates ----------------------------------------------------------------------------------


def _bad_candidates(loop: Loop, cycle: Cycle) -> tuple[Counter[str], Counter[str], dict[str, Counter[str]], bool]:
    """Each kind ``BAD_RUNS`` times against ``cycle``'s champion on its locked set: (judged, accepted,
    failed criteria by kind, whether the good candidate itself passes)."""
    from learning.envelope import Paired, judge
    from learning.evaluation import locked_rows, paired
    from training.evaluation import predict_rows
    from training.trainer import train

    good = paired(cycle.champion, cycle.candidate, cycle.locked, loop.policy)
    terms = loop.policy.terms()
    rows = locked_rows(cycle.locked)
    locked_ids = set(cycle.locked.case_ids)
    train_rows = [row for _position, row in sorted(loop.rows.items()) if row["case_id"] not in locked_ids]
    classes = list(good.candidate_classes)
    probabilities = np.asarray(good.candidate_probabilities)
    judged: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}

    def record(kind: str, bad: Paired) -> None:
        result = judge(bad, terms)
        judged[kind] += 1
        accepted[kind] += int(result.passed)
        reasons.setdefault(kind, Counter()).update(name.split("=")[0] for name in result.failed())

    # Subgroups big enough to judge, each taken in turn.
    groups = [
        (name, value)
        for name, values in good.groups.items()
        for value, size in Counter(values).items()
        if size >= terms.min_subgroup_cases
    ]
    for run in range(max(2, scaled(BAD_RUNS))):
        rng = np.random.default_rng([SEED, run])
        # 1. Trained on shuffled labels (the trainer, on the same rows as the candidate).
        shuffled = [dict(row) for row in train_rows]
        for row, label in zip(shuffled, rng.permutation([row["label"] for row in shuffled]), strict=True):
            row["label"] = label
        cut = len(shuffled) * 4 // 5
        result = train(
            {"train": shuffled[:cut], "validation": [], "test": shuffled[cut:]},
            algorithm="logistic_regression",
            hyperparameters={"seed": run},
            report=lambda progress: None,
            artifact_name=f"bench-loop-shuffled-{run}",
        )
        artifact = _load(result)
        answers = predict_rows(artifact.pipeline, rows, numeric_features=artifact.numeric_features)
        record(
            "shuffled labels",
            Paired(
                truth=good.truth,
                champion=good.champion,
                candidate=answers.y_pred,
                candidate_probabilities=np.asarray(answers.probabilities).reshape(len(rows), len(answers.classes)),
                candidate_classes=answers.classes,
                groups=good.groups,
            ),
        )
        # 2. One subgroup made worse: half of its right answers become the runner-up class.
        name, value = groups[run % len(groups)]
        member = np.asarray([str(v) == value for v in good.groups[name]])
        worse_answers = list(good.candidate)
        worse_probabilities = probabilities.copy()
        order = np.argsort(-probabilities, axis=1)
        for index in np.flatnonzero(member).tolist():
            if good.candidate[index] == good.truth[index] and rng.random() < 0.5:
                first, second = int(order[index, 0]), int(order[index, 1])
                worse_answers[index] = classes[second]
                worse_probabilities[index, [first, second]] = worse_probabilities[index, [second, first]]
        record(
            "subgroup made worse",
            Paired(
                truth=good.truth,
                champion=good.champion,
                candidate=worse_answers,
                candidate_probabilities=worse_probabilities,
                candidate_classes=classes,
                groups=good.groups,
            ),
        )
        # 3. Miscalibrated: the same answers, over- or under-confident (probabilities tempered).
        temperature = (0.2, 4.0)[run % 2] * float(rng.uniform(0.8, 1.2))
        tempered = np.power(np.clip(probabilities, 1e-12, 1.0), 1.0 / temperature)
        tempered /= tempered.sum(axis=1, keepdims=True)
        record(
            "miscalibrated",
            Paired(
                truth=good.truth,
                champion=good.champion,
                candidate=good.candidate,
                candidate_probabilities=tempered,
                candidate_classes=classes,
                groups=good.groups,
            ),
        )
    return judged, accepted, reasons, judge(good, terms).passed


# --- The run -----------------------------------------------------------------------------------------


def _first(days: list[Day], after: int, test: Any) -> int | None:
    for day in days:
        if day.end >= after and test(day):
            return day.end
    return None


def run() -> list[Result]:
    from django.test.utils import override_settings
    from django.utils import timezone

    from benchmarks.bench_predict import serving_settings
    from cases.demo import respiratory_records
    from cases.demo_respiratory import COVID_VARIANT

    initial, stream, drift_at, batch = scaled(INITIAL), scaled(STREAM), scaled(DRIFT_AT), BATCH
    with serving_settings(), override_settings(MONITORING_WINDOW_HOURS=WINDOW_HOURS):
        loop = _set_up()
        cooldown = scaled(COOLDOWN)
        records = list(
            respiratory_records(initial + stream, seed=SEED, drift=COVID_VARIANT, drift_from=initial + drift_at)
        )
        _admit(loop, records[:initial])
        _promote(loop, _train_version(loop, seed=0), "The first champion, trained before the drift.")
        clock = timezone.now()
        for day, start in enumerate(range(0, stream, batch), start=1):
            _serve_day(
                loop, records[initial + start : initial + start + batch], start + 1, clock + dt.timedelta(days=day)
            )
            trigger = _trigger(loop, cooldown)
            if trigger is not None:
                _cycle(loop, trigger, loop.days[-1].end)
        promoted = [cycle for cycle in loop.cycles if cycle.passed and cycle.position >= drift_at]
        promoted_at = promoted[0].position + 1 if promoted else None
        figures = _figures(loop, drift_at, stream, promoted_at)
    return figures


def _figures(loop: Loop, drift_at: int, stream: int, promoted_at: int | None) -> list[Result]:
    from models_registry.models import Prediction

    drift_seen = _first(loop.days, drift_at, lambda day: bool(day.drifted))
    degraded_seen = _first(loop.days, drift_at, lambda day: day.degraded)
    false_alarms = sum(1 for day in loop.days if day.end < drift_at and (day.drifted or day.degraded))
    before, n_before = _accuracy(loop, 1, drift_at)
    after, n_after = _accuracy(loop, drift_at, promoted_at or stream + 1)
    results = [
        Result(
            "learning loop: drift detected, encounters after the drift point",
            float(drift_seen - drift_at + 1) if drift_seen is not None else float("nan"),
            "cases",
            note=(
                f"PSI >= {_threshold()} on a model input over monitoring's {WINDOW_HOURS} h window ({BATCH} "
                f"encounters a simulated day); {false_alarms} alarm day(s) before the drift; drifted inputs at "
                f"detection: {_drifted_at(loop, drift_seen)}"
            ),
        ),
        Result(
            "learning loop: degradation detected, encounters after the drift point",
            float(degraded_seen - drift_at + 1) if degraded_seen is not None else float("nan"),
            "cases",
            note="the anytime-valid interval of the champion's cumulative live accuracy below offline minus the "
            "tolerance; nan: not within the stream (the drift trigger fired first and the champion was replaced)",
        ),
        Result(f"learning loop: served accuracy before the drift ({n_before} answers)", before or float("nan"), ""),
        Result(
            f"learning loop: served accuracy after the drift, before promotion ({n_after} answers)",
            after or float("nan"),
            "",
        ),
    ]
    if promoted_at is not None:
        hand, promoted, count = _hand_retrained(loop, drift_at, promoted_at, stream)
        if hand is not None and promoted is not None:
            results.append(
                Result(
                    f"learning loop: accuracy after promotion vs retrained by hand ({count} answers)",
                    promoted,
                    "",
                    baseline=hand,
                    ratio=hand / promoted if promoted else None,
                    max_ratio=LOOP_GOAL,
                    note="ratio = hand-retrained / promoted (lower is better); the hand model is trained on the "
                    "post-drift cases before the promotion, both judged on the encounters served after it",
                )
            )
    else:
        results.append(Result("learning loop: promotion after the drift", 0.0, "", note="no candidate promoted"))
    results.append(
        Result(
            "learning loop: cycles",
            float(len(loop.cycles)),
            "",
            note="; ".join(
                f"cycle {i} at encounter {c.position} ({c.trigger}): "
                + ("inside the envelope, promoted" if c.passed else f"rejected ({', '.join(c.failed)})")
                for i, c in enumerate(loop.cycles, start=1)
            )
            or "none",
        )
    )
    # The bad candidates are injected into the promoting cycle (else the last one): its champion, its
    # locked set, and its candidate as the model they are made from.
    judged_cycle = next((cycle for cycle in loop.cycles if cycle.passed), loop.cycles[-1] if loop.cycles else None)
    if judged_cycle is not None:
        judged, accepted, reasons, good_passes = _bad_candidates(loop, judged_cycle)
        total, taken = sum(judged.values()), sum(accepted.values())
        results.append(
            Result(
                f"learning loop: bad candidates inside the envelope ({total} injected)",
                float(taken),
                "",
                baseline=float(total),
                max_ratio=0.0,
                note="; ".join(
                    f"{kind}: {accepted[kind]}/{judged[kind]} accepted, failing "
                    + ", ".join(f"{name} {count}x" for name, count in reasons[kind].most_common())
                    for kind in judged
                )
                + f"; the good candidate on the same set: {'inside' if good_passes else 'OUTSIDE'} the envelope",
            )
        )
    answered = Prediction.objects.filter(model_type=loop.model_type)
    outside = answered.exclude(version_id__in=loop.passed_versions).count()
    results.append(
        Result(
            "learning loop: answers by a version outside the envelope",
            float(outside),
            "",
            baseline=float(answered.count()),
            max_ratio=0.0,
            note="the prediction log (split and shadow rows included): every answer is by the first champion or "
            "a candidate that passed the envelope",
        )
    )
    return results


def _threshold() -> float:
    from django.conf import settings

    return float(settings.MONITORING_PSI_THRESHOLD)


def _drifted_at(loop: Loop, end: int | None) -> str:
    day = next((day for day in loop.days if day.end == end), None)
    if day is None:
        return "-"
    return ", ".join(f"{name} {psi:.2f}" for name, psi in sorted(day.drifted.items())) or "-"
