"""The learning loop, simulated through the real code path: a concept drift, its detection, the cycle
that retrains, judges, tests and proposes a candidate, and bad candidates that must never be served.

The stream (issue 15, "Proven by a simulation"): the respiratory generator
(``cases.demo.respiratory_records``) with a concept drift at a known encounter
(``cases.demo_respiratory.COVID_VARIANT``: COVID-19 becomes about half of new patients and its CRP six
times as high, so a model trained before takes many of them for pneumonia). Every encounter goes the
way a real one does:

- its case is imported (``cases.importing.import_objects``) and approved by a second clinician
  (``Case.approve``: the real de-identification);
- a prediction is served through the batch predict endpoint (JWT, the patient block de-identified
  in memory, the prediction log with an A/B test's split or shadow rows, monitoring's input tallies);
- the confirmed diagnosis comes back as feedback (``Prediction.give_feedback``);
- after each batch (a simulated day of ``BATCH`` encounters) monitoring takes its snapshots
  (``monitoring.compute.compute_all``, what its periodic chain runs, on the simulated clock), then
  the learning loop's periodic task runs as the scheduler runs it: the queued task of the chain
  (``learning.tasks.run_learning_cycles``, called with its chain token, so it claims its schedule
  row and enqueues its next run) until the open cycle stops moving, with the worker's tasks it
  enqueued (``training.tasks.build_dataset``, ``training.tasks.run_training_job``) run in between.
  Tasks run synchronously in this process, taken from the dummy task backend's queue.

So each cycle is ``learning.cycles`` itself: the trigger (drift or degradation, from monitoring),
the locked evaluation set, the dataset built by the worker's task, the recipe's training jobs on the
worker path, the candidate chosen on the validation split, the envelope on the locked set, the
shadow A/B test, and the proposal to the clinical lead, who concludes the test with promotion
(``ABTest.conclude``, ``expected_decision='ship_b'``) as the admin's proposal asks her to.

A simulated clock: the batch's predictions and input tallies are dated ``day k`` and the snapshot
is taken at the end of that day, so monitoring's window (``MONITORING_WINDOW_HOURS``, three days
here) holds the last three batches, as it would in a hospital.

Figures: the detection delay in encounters after the drift point (the first cycle opened after
it, and monitoring's first drift flag); the served accuracy before the drift, after it and after the
promotion, against a model retrained by hand on the post-drift cases (``training.trainer.train``,
judged on the same encounters the promoted version answered); the number of cycles (the
``LearningCycle`` rows). Then bad candidates enter the real candidate step: for each run, a policy
version (as a lead writes one) whose recipe names a faulty algorithm that only this benchmark
registers (``training.faults``: a model trained on shuffled labels, one whose training labels were
bent in one subgroup, one whose logits are scaled so its probabilities lie), whose test is a split
test (half of the patients would meet the candidate), opened by ``manage.py learning_cycle`` and
driven by the periodic task. After each, a batch of patients is served. Goals: the envelope rejects
every bad candidate, no prediction in the log (answered, split or shadow) is by a bad version, and
none by any version that did not pass the envelope.

``BENCH_SCALE`` shrinks the stream (``python -m benchmarks learning_loop --scale 0.6``; the quick
run in ``tests/benchmarks`` uses it and requires a promotion).
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
AFTER_PROMOTION = 800  # the stream ends this many encounters after the loop's first promotion (or at STREAM)
MIN_LABELLED = 100  # the shadow test's labelled requests per arm before it decides
BAD_RUNS = 4  # runs of each bad-candidate kind (a run below full size judges one of each)
BAD_BATCH = 20  # patients served after each bad candidate's cycle (the split test would route half to it)
MAX_RUNS_A_DAY = 12  # periodic runs of the learning chain after a simulated day, at most (it stops when idle)
LOOP_GOAL = 1.05  # hand-retrained accuracy / the loop's promoted accuracy

LEARNING_CHAIN = "learning.tasks.run_learning_cycles"
WORKER_TASKS = ("training.tasks.build_dataset", "training.tasks.run_training_job")

# The bad candidates' faulty algorithms (``training.faults``), registered by this benchmark only.
SHUFFLED = "bench_shuffled_labels"
SUBGROUP = "bench_subgroup_worse"
MISCALIBRATED = "bench_miscalibrated"
BAD_KINDS = {SHUFFLED: "shuffled labels", SUBGROUP: "subgroup made worse", MISCALIBRATED: "miscalibrated"}


@dataclass
class Day:
    end: int  # stream position of the day's last encounter
    drifted: bool
    degraded: bool


@dataclass
class Loop:
    users: dict[str, Any]
    model_type: Any
    first_champion: Any = None
    days: list[Day] = field(default_factory=list)
    served: list[tuple[int, str, bool, int]] = field(default_factory=list)  # position, code, correct, version
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # position -> dataset row (approved cases)
    opened_at: dict[int, int] = field(default_factory=dict)  # cycle pk -> stream position when it opened
    promoted_at: dict[int, int] = field(default_factory=dict)  # cycle pk -> first position served after it
    chain_runs: int = 0
    worker_runs: Counter[str] = field(default_factory=Counter)
    position: int = 0  # the last encounter served


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
    # The policy's defaults but for the triggers (drift and degradation), the locked share and the
    # shadow test's sample: the envelope is the default one; the candidate goes to a shadow test and
    # its promotion is proposed to the clinical lead (auto_promote off).
    policy = LearningPolicy(
        model_type=model_type,
        reason="Simulation: drift and degradation triggers, the default envelope, shadow test, propose.",
        trigger_on_degradation=True,
        trigger_drift_psi=0.25,
        recipe=[{"algorithm": "logistic_regression", "grid": {"C": [0.3, 1.0]}}],
        min_evaluation_cases=scaled(200),
        locked_fraction=0.4,
        test_min_labelled_per_arm=scaled(MIN_LABELLED),
        # The rollback guard has its own tests; here a degraded champion opens a candidate cycle.
        rollback_action=LearningPolicy.RollbackAction.OFF,
    )
    policy.save_as_next_version(by=users["lead"])
    return Loop(users=users, model_type=model_type)


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


def _serve_day(loop: Loop, records: list[dict[str, Any]], day: dt.datetime) -> None:
    """One simulated day: cases admitted, predictions served, feedback given, monitoring's snapshot."""
    from benchmarks.bench_predict import prediction_client
    from cases.rows import row_from_record
    from learning import triggers
    from models_registry.models import Prediction
    from monitoring.compute import compute_all
    from monitoring.health import current
    from monitoring.models import InputTally

    start = loop.position + 1
    approved = _admit(loop, records)
    served = [(start + i, r) for i, r in enumerate(records) if r["external_id"] in approved]
    last_tally = InputTally.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    last_prediction = Prediction.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
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
    loop.position = start + len(records) - 1
    # The simulated clock: this day's answers (shadow rows too) and input tallies happened during the day.
    Prediction.objects.filter(pk__gt=last_prediction).update(created_at=day)
    InputTally.objects.filter(pk__gt=last_tally).update(created_at=day)
    compute_all(loop.model_type, now=day + dt.timedelta(hours=12))
    health = current(triggers.champion_of(loop.model_type))
    loop.days.append(Day(end=loop.position, drifted=bool(health.drifted), degraded=health.degraded))


# --- The periodic task and the worker ----------------------------------------------------------------


def _queued() -> list[Any]:
    """The task results waiting in the dummy backend's queue, taken off it."""
    from django.tasks import task_backends

    backend: Any = task_backends["default"]
    taken = list(backend.results)
    backend.clear()
    return taken


def _run_queue(loop: Loop) -> tuple[int, int]:
    """Run what is queued, as a worker would: the worker's tasks first, then the learning chain's
    next run (the chain's own re-enqueue waits for the next call). Other chains (monitoring's, whose
    snapshots this simulation takes on its own clock, the reapers, alert deliveries) are dropped.
    Returns (worker tasks run, chain runs)."""
    queued = _queued()
    chain = [result for result in queued if result.task.module_path == LEARNING_CHAIN]
    work = [result for result in queued if result.task.module_path in WORKER_TASKS]
    for result in work:
        outcome = result.task.call(*result.args, **result.kwargs)
        loop.worker_runs[result.task.module_path.rsplit(".", 1)[1]] += 1
        if isinstance(outcome, dict) and outcome.get("outcome") == "failed":
            raise RuntimeError(f"{result.task.module_path}{tuple(result.args)} failed: {outcome}")
    for result in chain[:1]:
        result.task.call(*result.args, **result.kwargs)
        loop.chain_runs += 1
    if not chain:
        raise RuntimeError("The learning loop's periodic chain is not queued: it stopped.")
    return len(work), len(chain[:1])


def _start_chain() -> None:
    from learning.tasks import ensure_learning_scheduled

    if not ensure_learning_scheduled():
        raise RuntimeError("The learning loop's periodic chain did not start.")


def _open_cycle() -> Any:
    from learning.models import LearningCycle

    return LearningCycle.objects.filter(model_type__slug=SLUG, status__in=LearningCycle.OPEN).first()


def _state() -> tuple[int | None, str | None]:
    cycle = _open_cycle()
    return (cycle.pk, cycle.status) if cycle is not None else (None, None)


def _periodic(loop: Loop) -> None:
    """The periodic task after a simulated day: its runs until the open cycle stops moving or closes
    (or none opens), with the worker's tasks in between; the clinical lead acts on a proposal when
    one comes.

    The scheduler runs the task every ``LEARNING_CYCLE_INTERVAL_SECONDS`` (300 s: 288 runs a day).
    The simulation stops a day's runs when a cycle closes: while a trigger keeps firing (a drift does
    until the champion's reference catches up), the next run would open another cycle on the same
    cases at once, and the loop has no back-off of its own; here the next one opens the next day."""
    from learning.models import LearningCycle

    known = set(LearningCycle.objects.filter(model_type=loop.model_type).values_list("pk", flat=True))
    for _run in range(MAX_RUNS_A_DAY):
        before = _state()
        worked, _ran = _run_queue(loop)
        for pk in (
            LearningCycle.objects.filter(model_type=loop.model_type).exclude(pk__in=known).values_list("pk", flat=True)
        ):
            loop.opened_at[pk] = loop.position
            known.add(pk)
        _lead_acts_on_proposal(loop)
        after = _state()
        if (after == before and not worked) or (before[0] is not None and after[0] != before[0]):
            break


def _lead_acts_on_proposal(loop: Loop) -> None:
    """A proposed promotion (an admin notice and an alert): the clinical lead reads the test's figures
    and concludes it with promotion, on the decision she saw; the next periodic run closes the cycle."""
    from learning.models import LearningCycle
    from models_registry.experiments.stats import Decision

    cycle = _open_cycle()
    if cycle is None or cycle.status != LearningCycle.Status.PROPOSED or cycle.kind != LearningCycle.Kind.CANDIDATE:
        return
    test = cycle.ab_test
    if test is None or not test.is_running():
        return
    test.conclude(
        by=loop.users["lead"],
        reason=f"Promotion proposed by learning cycle {cycle.pk} accepted.",
        promote=True,
        expected_decision=Decision.SHIP_B,
    )
    loop.promoted_at[cycle.pk] = loop.position + 1


def _end_stream(loop: Loop) -> str | None:
    """At the end of the stream the lead pauses the loop (a policy version with ``enabled`` off, so
    no cycle opens meanwhile) and closes the open cycle, if any."""
    from learning.models import LearningPolicy

    policy = LearningPolicy.current(loop.model_type)
    assert policy is not None
    policy.enabled = False
    policy.reason = "Simulation: the stream ended; the loop is paused."
    policy.save_as_next_version(by=loop.users["lead"])
    return _close_open_cycle(loop)


def _close_open_cycle(loop: Loop) -> str | None:
    """A cycle still testing has its test stopped by the lead (the periodic task then closes it, not
    promoted); one in an earlier state is cancelled."""
    from learning.models import LearningCycle

    cycle = _open_cycle()
    if cycle is None:
        return None
    note = f"cycle {cycle.pk} still {cycle.status} at the end of the stream"
    if cycle.ab_test is not None and cycle.ab_test.is_running():
        cycle.ab_test.stop(by=loop.users["lead"], reason="End of the simulated stream.")
        _periodic(loop)
    cycle.refresh_from_db()
    if cycle.status in LearningCycle.OPEN:
        cycle.cancel(by=loop.users["lead"], reason="End of the simulated stream.")
    return note


def _train_first_champion(loop: Loop) -> Any:
    """Before the loop: an engineer's dataset and training job (run by the worker's task), approved
    and activated by the clinical lead."""
    from models_registry.models import ModelVersion
    from training.datasets import build_snapshot, create_snapshot
    from training.models import TrainingJob
    from training.tasks import run_training_job

    snapshot = build_snapshot(create_snapshot(loop.model_type, by=loop.users["engineer"], seed=0).pk)
    job = TrainingJob.submit(
        model_type=loop.model_type, by=loop.users["engineer"], dataset=snapshot, algorithm="logistic_regression"
    )
    outcome = run_training_job.call(job.pk)
    if outcome["outcome"] != "completed":
        job.refresh_from_db()
        raise RuntimeError(f"training failed: {job.error_log}")
    _queued()  # the job's own enqueue on commit: run above already
    version = ModelVersion.objects.get(job=job)
    version.approve(by=loop.users["lead"], note="The first champion, trained before the drift.")
    version.activate(by=loop.users["lead"], reason="The first champion, trained before the drift.")
    version.refresh_from_db()
    return version


# --- Bad candidates ----------------------------------------------------------------------------------


def _register_faults() -> None:
    """The three faulty algorithms (``training.faults``), each a logistic regression gone wrong."""
    from training import faults

    def shuffled(rows: Any, params: Any) -> list[dict[str, Any]]:
        rng = np.random.default_rng([SEED, params["seed"]])
        copies = [dict(row) for row in rows]
        for row, label in zip(copies, rng.permutation([row["label"] for row in copies]), strict=True):
            row["label"] = label
        return copies

    def subgroup_worse(rows: Any, params: Any) -> list[dict[str, Any]]:
        # One sex (by the seed), most of whose training labels are bent to one wrong class: the model
        # learns the subgroup's feature as evidence for that class.
        rng = np.random.default_rng([SEED, params["seed"]])
        copies = [dict(row) for row in rows]
        value = sorted({str(row.get("sex")) for row in copies})[params["seed"] % 2]
        counts = Counter(str(row["label"]) for row in copies)
        target = counts.most_common(2)[-1][0]
        for row in copies:
            if str(row.get("sex")) == value and rng.random() < 0.7:
                row["label"] = target
        return copies

    def miscalibrated(classifier: Any, params: Any) -> None:
        # Every logit scaled: the same answers, over- (x4) or under-confident (x0.25) probabilities.
        factor = 4.0 if params["seed"] % 2 else 0.25
        classifier.coef_ = classifier.coef_ * factor
        classifier.intercept_ = classifier.intercept_ * factor

    base = "logistic_regression"
    faults.register(faults.Fault(SHUFFLED, base, rows=shuffled))
    faults.register(faults.Fault(SUBGROUP, base, rows=subgroup_worse))
    faults.register(faults.Fault(MISCALIBRATED, base, fitted=miscalibrated))


def _unregister_faults() -> None:
    from training import faults

    for name in BAD_KINDS:
        faults.unregister(name)


def _bad_candidates(loop: Loop, records: list[dict[str, Any]], clock: dt.datetime) -> list[Any]:
    """For each run and kind: a policy version naming the faulty algorithm, with a split test; a
    cycle opened by ``manage.py learning_cycle`` and driven by the periodic task; a batch of patients
    served while it stands. Returns the cycles."""
    from django.core.management import call_command

    from learning.models import LearningCycle, LearningPolicy

    cycles = []
    batches = iter(range(0, len(records), BAD_BATCH))
    for run in range(_bad_runs()):
        for algorithm in BAD_KINDS:
            policy = LearningPolicy.current(loop.model_type)
            assert policy is not None
            policy.reason = f"Simulation: bad candidate {algorithm} (run {run + 1}) in a split test."
            policy.enabled = True
            policy.recipe = [{"algorithm": algorithm, "grid": {"seed": [run]}}]
            policy.test_mode = LearningPolicy.TestMode.SPLIT
            policy.test_traffic_split = 0.5
            policy.test_min_labelled_per_arm = 1
            policy.trigger_on_degradation = False
            policy.trigger_drift_psi = None
            policy.rollback_action = LearningPolicy.RollbackAction.OFF
            policy.save_as_next_version(by=loop.users["lead"])
            call_command("learning_cycle", "--model-type", SLUG, verbosity=0)
            cycle = LearningCycle.objects.filter(model_type=loop.model_type).order_by("-pk").first()
            if cycle is None or cycle.pk in loop.opened_at:
                raise RuntimeError("learning_cycle opened no cycle for the bad candidate.")
            loop.opened_at[cycle.pk] = loop.position
            _periodic(loop)
            start = next(batches)
            day = clock + dt.timedelta(days=len(loop.days) + 1)
            _serve_day(loop, records[start : start + BAD_BATCH], day)
            _periodic(loop)
            _close_open_cycle(loop)
            cycle.refresh_from_db()
            cycles.append(cycle)
    return cycles


def _bad_runs() -> int:
    from benchmarks.harness import scale

    return BAD_RUNS if scale() >= 1 else 1


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


def _first(days: list[Day], after: int, test: Any) -> int | None:
    for day in days:
        if day.end >= after and test(day):
            return day.end
    return None


def _describe(cycle: Any, loop: Loop) -> str:
    from learning.models import LearningCycle

    where = f"at encounter {loop.opened_at.get(cycle.pk, '?')}"
    text = f"cycle {cycle.pk} {where} ({cycle.trigger}"
    if cycle.kind == LearningCycle.Kind.ROLLBACK:
        text += ", rollback"
    text += f"): {cycle.status}"
    if cycle.envelope_passed is False:
        text += f" ({', '.join((cycle.envelope or {}).get('failed', []))})"
    elif cycle.test_decision:
        text += f" (test {cycle.test_decision})"
    return text


# --- The run -----------------------------------------------------------------------------------------


def run() -> list[Result]:
    from django.test.utils import override_settings
    from django.utils import timezone

    from benchmarks.bench_predict import serving_settings
    from cases.demo import respiratory_records
    from cases.demo_respiratory import COVID_VARIANT
    from learning.models import LearningCycle

    initial, stream, drift_at = scaled(INITIAL), scaled(STREAM), scaled(DRIFT_AT)
    bad_runs = _bad_runs()
    extra = bad_runs * len(BAD_KINDS) * BAD_BATCH
    with serving_settings(), override_settings(MONITORING_WINDOW_HOURS=WINDOW_HOURS):
        _register_faults()
        try:
            loop = _set_up()
            records = list(
                respiratory_records(
                    initial + stream + extra, seed=SEED, drift=COVID_VARIANT, drift_from=initial + drift_at
                )
            )
            _admit(loop, records[:initial])
            loop.first_champion = _train_first_champion(loop)
            _start_chain()
            clock = timezone.now()
            for start in range(0, stream, BATCH):
                day = clock + dt.timedelta(days=len(loop.days) + 1)
                _serve_day(loop, records[initial + start : initial + min(start + BATCH, stream)], day)
                _periodic(loop)
                promoted = [at for at in loop.promoted_at.values() if at > drift_at]
                if promoted and loop.position >= min(promoted) + scaled(AFTER_PROMOTION) - 1:
                    break
            stream = loop.position
            still_open = _end_stream(loop)
            stream_cycles = list(LearningCycle.objects.filter(model_type=loop.model_type).order_by("pk"))
            bad = _bad_candidates(loop, records[initial + scaled(STREAM) :], clock)
            figures = _figures(loop, drift_at, stream, stream_cycles, still_open, bad)
        finally:
            _unregister_faults()
    return figures


def _figures(
    loop: Loop, drift_at: int, stream: int, cycles: list[Any], still_open: str | None, bad: list[Any]
) -> list[Result]:
    from learning.models import LearningCycle
    from models_registry.models import Prediction

    promoted = [c for c in cycles if c.status == LearningCycle.Status.PROMOTED and c.pk in loop.promoted_at]
    promoted_at = min(loop.promoted_at[c.pk] for c in promoted) if promoted else None
    after_drift = [c for c in cycles if loop.opened_at.get(c.pk, 0) >= drift_at]
    detected = min((loop.opened_at[c.pk] for c in after_drift), default=None)
    false_cycles = len(cycles) - len(after_drift)
    drift_seen = _first(loop.days, drift_at, lambda day: day.drifted)
    before, n_before = _accuracy(loop, 1, drift_at)
    after, n_after = _accuracy(loop, drift_at, promoted_at or stream + 1)
    first = next((c for c in after_drift), None)
    results = [
        Result(
            "learning loop: drift detected (a cycle opened), encounters after the drift point",
            float(detected - drift_at + 1) if detected is not None else float("nan"),
            "cases",
            note=(
                f"the first learning cycle the periodic task opened after the drift (trigger "
                f"{first.trigger if first else '-'}: {first.trigger_detail if first else '-'}); monitoring's first "
                f"drift flag {drift_seen - drift_at + 1 if drift_seen else '-'} encounters after it ({BATCH} "
                f"encounters a simulated day, a {WINDOW_HOURS} h window); {false_cycles} cycle(s) opened before "
                "the drift"
            ),
        ),
        Result(f"learning loop: served accuracy before the drift ({n_before} answers)", before or float("nan"), ""),
        Result(
            f"learning loop: served accuracy after the drift, before promotion ({n_after} answers)",
            after or float("nan"),
            "",
        ),
    ]
    if promoted_at is not None:
        hand, promoted_accuracy, count = _hand_retrained(loop, drift_at, promoted_at, stream)
        if hand is not None and promoted_accuracy is not None:
            results.append(
                Result(
                    f"learning loop: accuracy after promotion vs retrained by hand ({count} answers)",
                    promoted_accuracy,
                    "",
                    baseline=hand,
                    ratio=hand / promoted_accuracy if promoted_accuracy else None,
                    max_ratio=LOOP_GOAL,
                    note=f"promoted after encounter {promoted_at - 1} (the lead accepted the proposal of a "
                    "shadow test that decided ship_b); ratio = hand-retrained / promoted (lower is better); the "
                    "hand model is trained on the post-drift cases before the promotion, both judged on the "
                    "encounters served after it",
                )
            )
    else:
        results.append(Result("learning loop: promotion after the drift", 0.0, "", note="no candidate promoted"))
    results.append(
        Result(
            "learning loop: cycles (LearningCycle rows of the stream)",
            float(len(cycles)),
            "",
            note="; ".join(_describe(c, loop) for c in cycles) + (f"; {still_open}" if still_open else "") or "none",
        )
    )
    results.append(
        Result(
            "learning loop: promotions by the loop",
            float(len(promoted)),
            "",
            baseline=1.0,
            min_ratio=1.0,
            note=f"{loop.chain_runs} runs of the periodic task, worker tasks "
            + ", ".join(f"{name} {count}x" for name, count in sorted(loop.worker_runs.items())),
        )
    )
    rejected = [c for c in bad if c.status == LearningCycle.Status.REJECTED and c.envelope_passed is False]
    by_kind: dict[str, Counter[str]] = {}
    judged: Counter[str] = Counter()
    for cycle in bad:
        algorithm = cycle.candidates[0]["algorithm"] if cycle.candidates else "?"
        kind = BAD_KINDS.get(algorithm, algorithm)
        judged[kind] += 1
        by_kind.setdefault(kind, Counter()).update(
            name.split("=")[0] for name in (cycle.envelope or {}).get("failed", [])
        )
        if cycle not in rejected:
            by_kind[kind][f"NOT REJECTED ({cycle.status})"] += 1
    results.append(
        Result(
            f"learning loop: bad candidates rejected by the envelope ({len(bad)} cycles)",
            float(len(rejected)),
            "",
            baseline=float(len(bad)),
            min_ratio=1.0,
            note="; ".join(
                f"{kind}: {judged[kind]} cycles, failing "
                + ", ".join(f"{name} {count}x" for name, count in by_kind[kind].most_common())
                for kind in judged
            )
            + "; each policy's action a split test of 50%",
        )
    )
    bad_versions = [c.candidate_id for c in bad if c.candidate_id is not None]
    bad_served = Prediction.objects.filter(version_id__in=bad_versions)
    results.append(
        Result(
            "learning loop: predictions by a bad candidate",
            float(bad_served.count()),
            "",
            baseline=float(Prediction.objects.filter(model_type=loop.model_type).count()),
            max_ratio=0.0,
            note=f"the prediction log, answered, split and shadow rows; {len(bad_versions)} bad versions, "
            f"{BAD_BATCH} patients served after each bad cycle",
        )
    )
    passed = {loop.first_champion.pk} | {
        c.candidate_id for c in LearningCycle.objects.filter(model_type=loop.model_type, envelope_passed=True)
    }
    answered = Prediction.objects.filter(model_type=loop.model_type, shadow_of__isnull=True)
    outside = answered.exclude(version_id__in=passed).count()
    results.append(
        Result(
            "learning loop: answers by a version outside the envelope",
            float(outside),
            "",
            baseline=float(answered.count()),
            max_ratio=0.0,
            note="every answer in the prediction log is by the first champion or a candidate that passed the "
            "envelope in its cycle",
        )
    )
    return results
