"""The synthetic respiratory cohort's clinical model: how each diagnosis shows, and its Bayes classifier.

Built to be hard in the ways real emergency-department data is (``docs/statistics.md`` has the
figures): every symptom occurs with every diagnosis at some frequency; one encounter's severity moves
its vital signs, labs and symptoms together (correlated findings); labs are ordered more often for
sicker patients and for some diagnoses, so they are missing in about half of the mild encounters; a
patient carries their own offsets of SpO2 and heart rate from visit to visit; ages overlap; and 5% of
recorded diagnoses are wrong (label noise). The model is written so that the best possible
classifier, the Bayes classifier of these parameters, can be computed exactly (one integral over
severity, by Gauss-Hermite quadrature): ``bayes_posteriors``. It reaches about 0.82 accuracy against
the recorded labels; a trained model can approach that, never beat it.

Findings are normal on their scale (CRP and NT-proBNP on the log scale), given the diagnosis, the
severity ``s ~ N(0, 1)`` and the patient's offsets:
``value = centre + loading * s + offset + residual``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

LOG_NORMAL_FINDINGS = frozenset({"crp", "nt_probnp"})
# Generation bounds (what a real emergency department records), and the decimals kept.
FINDING_BOUNDS: dict[str, tuple[float, float, int]] = {
    "temperature_c": (35.0, 41.5, 1),
    "heart_rate": (40.0, 180.0, 0),
    "respiratory_rate": (8.0, 45.0, 0),
    "spo2": (70.0, 100.0, 0),
    "systolic_bp": (70.0, 220.0, 0),
    "wbc": (1.0, 40.0, 1),
    "crp": (0.1, 400.0, 1),
    "nt_probnp": (5.0, 35000.0, 0),
}
RESPIRATORY_FINDINGS = tuple(FINDING_BOUNDS)
VITALS = ("temperature_c", "heart_rate", "respiratory_rate", "spo2", "systolic_bp")
PANEL = ("wbc", "crp")  # the blood panel: ordered together
SYMPTOMS = (
    "cough",
    "fever",
    "dyspnea",
    "sputum",
    "fatigue",
    "chills",
    "myalgia",
    "headache",
    "sore_throat",
    "rhinorrhea",
    "wheeze",
    "chest_tightness",
    "pleuritic_chest_pain",
    "anosmia",
    "orthopnea",
    "leg_swelling",
)
# How one SD of severity moves a symptom's log-odds (the others do not depend on it).
SYMPTOM_SEVERITY = {
    "dyspnea": 0.8,
    "fatigue": 0.4,
    "fever": 0.3,
    "chills": 0.3,
    "chest_tightness": 0.3,
    "orthopnea": 0.3,
}
PANEL_SEVERITY = 1.5  # log-odds of the blood panel being drawn per SD of severity
NT_PROBNP_SEVERITY = 0.8
NT_PROBNP_AGE = 0.03  # per year over 60
SPO2_AGE = 0.03  # older lungs saturate a little less: per year over 50
SPO2_PATIENT_SD = 1.0  # a patient's own offset, kept from visit to visit
HEART_RATE_PATIENT_SD = 6.0
LABEL_NOISE = 0.05  # recorded diagnosis is another one, uniformly
P_OVER_89 = 0.015
QUADRATURE_POINTS = 24


@dataclass(frozen=True, slots=True)
class DiagnosisProfile:
    """How one diagnosis shows: prevalence, who gets it, findings, labs ordered, symptom frequencies.

    ``findings``: per key (centre, residual sd, severity loading) on the generation scale (log for
    CRP and NT-proBNP). ``panel_logit`` / ``nt_probnp_logit``: the log-odds that the blood panel
    (WBC, CRP) or NT-proBNP is measured at average severity. ``symptoms``: the chance of each symptom
    of ``SYMPTOMS`` at average severity.
    """

    code: str
    label: str
    prevalence: float
    age: tuple[float, float]  # mean, sd (adults: 18..)
    p_female: float
    chronic: bool  # chronic conditions bring the same patient back with the same diagnosis
    findings: dict[str, tuple[float, float, float]]
    panel_logit: float
    nt_probnp_logit: float
    symptoms: dict[str, float]


def _log(value: float) -> float:
    return math.log(value)


RESPIRATORY_PROFILES: tuple[DiagnosisProfile, ...] = (
    DiagnosisProfile(
        "J18.9",
        "Pneumonia, unspecified organism",
        0.22,
        (64, 17),
        0.48,
        False,
        {
            "temperature_c": (38.1, 0.8, 0.35),
            "heart_rate": (99, 14, 7),
            "respiratory_rate": (22, 4.5, 3),
            "spo2": (93.5, 2.8, -1.8),
            "systolic_bp": (124, 18, -4),
            "wbc": (12.5, 4.0, 1.5),
            "crp": (_log(80), 0.9, 0.3),
            "nt_probnp": (_log(300), 1.0, 0.3),
        },
        1.2,
        -1.0,
        {
            "cough": 0.85,
            "fever": 0.65,
            "dyspnea": 0.6,
            "sputum": 0.55,
            "fatigue": 0.55,
            "chills": 0.35,
            "myalgia": 0.2,
            "headache": 0.15,
            "sore_throat": 0.12,
            "rhinorrhea": 0.1,
            "wheeze": 0.15,
            "chest_tightness": 0.12,
            "pleuritic_chest_pain": 0.3,
            "anosmia": 0.04,
            "orthopnea": 0.05,
            "leg_swelling": 0.05,
        },
    ),
    DiagnosisProfile(
        "J45.909",
        "Unspecified asthma, uncomplicated",
        0.14,
        (38, 16),
        0.6,
        True,
        {
            "temperature_c": (37.0, 0.5, 0.05),
            "heart_rate": (96, 14, 8),
            "respiratory_rate": (21, 4, 3),
            "spo2": (95.5, 2.2, -1.5),
            "systolic_bp": (126, 15, 2),
            "wbc": (9.0, 2.5, 0.5),
            "crp": (_log(6), 0.9, 0.2),
            "nt_probnp": (_log(70), 0.8, 0.1),
        },
        -1.0,
        -2.0,
        {
            "cough": 0.65,
            "fever": 0.08,
            "dyspnea": 0.75,
            "sputum": 0.2,
            "fatigue": 0.25,
            "chills": 0.04,
            "myalgia": 0.05,
            "headache": 0.1,
            "sore_throat": 0.1,
            "rhinorrhea": 0.15,
            "wheeze": 0.8,
            "chest_tightness": 0.55,
            "pleuritic_chest_pain": 0.05,
            "anosmia": 0.02,
            "orthopnea": 0.08,
            "leg_swelling": 0.02,
        },
    ),
    DiagnosisProfile(
        "J44.1",
        "Chronic obstructive pulmonary disease with (acute) exacerbation",
        0.15,
        (68, 11),
        0.42,
        True,
        {
            "temperature_c": (37.3, 0.6, 0.15),
            "heart_rate": (98, 14, 7),
            "respiratory_rate": (23, 5, 3),
            "spo2": (91.5, 3.5, -2.0),
            "systolic_bp": (134, 18, 2),
            "wbc": (11.0, 3.0, 1.0),
            "crp": (_log(20), 1.0, 0.3),
            "nt_probnp": (_log(400), 1.0, 0.3),
        },
        0.3,
        -0.5,
        {
            "cough": 0.8,
            "fever": 0.15,
            "dyspnea": 0.85,
            "sputum": 0.65,
            "fatigue": 0.5,
            "chills": 0.08,
            "myalgia": 0.05,
            "headache": 0.05,
            "sore_throat": 0.05,
            "rhinorrhea": 0.06,
            "wheeze": 0.55,
            "chest_tightness": 0.3,
            "pleuritic_chest_pain": 0.08,
            "anosmia": 0.01,
            "orthopnea": 0.15,
            "leg_swelling": 0.12,
        },
    ),
    DiagnosisProfile(
        "J06.9",
        "Acute upper respiratory infection, unspecified",
        0.24,
        (40, 17),
        0.55,
        False,
        {
            "temperature_c": (37.6, 0.6, 0.2),
            "heart_rate": (88, 12, 4),
            "respiratory_rate": (17, 3, 1),
            "spo2": (97.3, 1.4, -0.4),
            "systolic_bp": (124, 14, 0),
            "wbc": (8.2, 2.3, 0.5),
            "crp": (_log(10), 0.9, 0.3),
            "nt_probnp": (_log(60), 0.8, 0.1),
        },
        -1.8,
        -2.0,
        {
            "cough": 0.65,
            "fever": 0.35,
            "dyspnea": 0.1,
            "sputum": 0.2,
            "fatigue": 0.35,
            "chills": 0.15,
            "myalgia": 0.25,
            "headache": 0.35,
            "sore_throat": 0.65,
            "rhinorrhea": 0.7,
            "wheeze": 0.08,
            "chest_tightness": 0.05,
            "pleuritic_chest_pain": 0.02,
            "anosmia": 0.08,
            "orthopnea": 0.01,
            "leg_swelling": 0.01,
        },
    ),
    DiagnosisProfile(
        "U07.1",
        "COVID-19",
        0.14,
        (50, 18),
        0.5,
        False,
        {
            "temperature_c": (38.0, 0.8, 0.3),
            "heart_rate": (95, 14, 6),
            "respiratory_rate": (20, 5, 3),
            "spo2": (94.5, 3.0, -2.0),
            "systolic_bp": (124, 15, -2),
            "wbc": (6.8, 2.3, 0.3),
            "crp": (_log(35), 0.9, 0.35),
            "nt_probnp": (_log(150), 1.0, 0.3),
        },
        0.2,
        -2.0,
        {
            "cough": 0.7,
            "fever": 0.7,
            "dyspnea": 0.4,
            "sputum": 0.15,
            "fatigue": 0.7,
            "chills": 0.35,
            "myalgia": 0.5,
            "headache": 0.4,
            "sore_throat": 0.3,
            "rhinorrhea": 0.2,
            "wheeze": 0.05,
            "chest_tightness": 0.15,
            "pleuritic_chest_pain": 0.08,
            "anosmia": 0.35,
            "orthopnea": 0.02,
            "leg_swelling": 0.02,
        },
    ),
    DiagnosisProfile(
        "I50.9",
        "Heart failure, unspecified",
        0.11,
        (74, 11),
        0.45,
        True,
        {
            "temperature_c": (36.8, 0.4, 0.05),
            "heart_rate": (95, 17, 6),
            "respiratory_rate": (22, 4, 3),
            "spo2": (93.0, 3.0, -1.8),
            "systolic_bp": (138, 25, 3),
            "wbc": (8.0, 2.5, 0.3),
            "crp": (_log(10), 0.9, 0.2),
            "nt_probnp": (_log(2500), 1.0, 0.4),
        },
        0.5,
        1.2,
        {
            "cough": 0.35,
            "fever": 0.05,
            "dyspnea": 0.85,
            "sputum": 0.1,
            "fatigue": 0.6,
            "chills": 0.03,
            "myalgia": 0.05,
            "headache": 0.05,
            "sore_throat": 0.02,
            "rhinorrhea": 0.02,
            "wheeze": 0.2,
            "chest_tightness": 0.2,
            "pleuritic_chest_pain": 0.05,
            "anosmia": 0.01,
            "orthopnea": 0.55,
            "leg_swelling": 0.6,
        },
    ),
)
PROFILES_BY_CODE = {profile.code: profile for profile in RESPIRATORY_PROFILES}
PREVALENCE = np.array([profile.prevalence for profile in RESPIRATORY_PROFILES])
PREVALENCE = PREVALENCE / PREVALENCE.sum()


def _sigmoid(value: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-value))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _raw(name: str, value: float) -> float:
    """A value on the generation scale as recorded: exponentiated for the log-normal ones, bounded, rounded."""
    if name in LOG_NORMAL_FINDINGS:
        value = math.exp(value)
    low, high, decimals = FINDING_BOUNDS[name]
    value = min(high, max(low, value))
    return round(value, decimals) if decimals else round(value)


def _centre(profile: DiagnosisProfile, name: str, age: float) -> float:
    centre = profile.findings[name][0]
    if name == "spo2":
        centre -= SPO2_AGE * max(0.0, age - 50)
    return centre


@dataclass(frozen=True, slots=True)
class Drift:
    """A concept drift: from some encounter on, the diagnoses' prevalence and one lab's distribution change.

    ``prevalence``: new prevalence weights by diagnosis code (the others keep theirs; renormalised).
    ``lab_shift``: by diagnosis code, what is added to ``lab`` on its generation scale (log for CRP
    and NT-proBNP), so the lab means something else for that diagnosis: P(diagnosis | findings)
    moves, not only the inputs' distribution. ``COVID_VARIANT`` is a new COVID-19 variant: its weight
    0.14 becomes 0.8 (about half of new patients) and its CRP is six times as high (pneumonia-like),
    so a model trained before it takes many COVID-19 encounters for pneumonia.
    """

    prevalence: Mapping[str, float]
    lab: str
    lab_shift: Mapping[str, float]

    def __post_init__(self) -> None:
        unknown = (set(self.prevalence) | set(self.lab_shift)) - set(PROFILES_BY_CODE)
        if unknown:
            raise ValueError(f"Unknown diagnosis codes in the drift: {', '.join(sorted(unknown))}.")
        if self.lab not in FINDING_BOUNDS or self.lab in VITALS:
            raise ValueError(
                f"The drift's lab must be one of {', '.join(k for k in FINDING_BOUNDS if k not in VITALS)}."
            )
        if any(weight < 0 for weight in self.prevalence.values()):
            raise ValueError("Prevalence weights are at least 0.")

    def prevalence_vector(self) -> NDArray[np.float64]:
        weights = np.array([self.prevalence.get(p.code, p.prevalence) for p in RESPIRATORY_PROFILES], dtype=float)
        return np.asarray(weights / weights.sum(), dtype=np.float64)

    def shifts(self, profile: DiagnosisProfile) -> dict[str, float]:
        shift = self.lab_shift.get(profile.code, 0.0)
        return {self.lab: shift} if shift else {}


COVID_VARIANT = Drift(prevalence={"U07.1": 0.8}, lab="crp", lab_shift={"U07.1": math.log(6.0)})


def sample_encounter(
    profile: DiagnosisProfile,
    rng: np.random.Generator,
    *,
    age: int = 50,
    offsets: Mapping[str, float] | None = None,
    drift: Drift | None = None,
) -> tuple[dict[str, float], list[str]]:
    """One encounter's findings (labs only when ordered) and symptoms, for a diagnosis and a patient.

    ``offsets``: the patient's own shifts (``spo2``, ``heart_rate``), the same at every visit.
    ``drift``: its lab shift for this diagnosis is added too (no random draw changes: the
    encounter's other findings and symptoms are the undrifted encounter's).
    """
    severity = float(rng.standard_normal())
    offsets = dict(offsets or {})
    for name, shift in (drift.shifts(profile) if drift is not None else {}).items():
        offsets[name] = offsets.get(name, 0.0) + shift
    panel = rng.random() < _sigmoid(profile.panel_logit + PANEL_SEVERITY * severity)
    nt_logit = profile.nt_probnp_logit + NT_PROBNP_SEVERITY * severity + NT_PROBNP_AGE * max(0.0, age - 60)
    nt_probnp = rng.random() < _sigmoid(nt_logit)
    findings: dict[str, float] = {}
    for name in RESPIRATORY_FINDINGS:
        _centre_value, spread, loading = profile.findings[name]
        value = _centre(profile, name, age) + loading * severity + offsets.get(name, 0.0)
        value += spread * float(rng.standard_normal())
        measured = name in VITALS or (name in PANEL and panel) or (name == "nt_probnp" and nt_probnp)
        if measured:
            findings[name] = _raw(name, value)
    chances = [
        _sigmoid(_logit(profile.symptoms[name]) + SYMPTOM_SEVERITY.get(name, 0.0) * severity) for name in SYMPTOMS
    ]
    draws = rng.random(len(SYMPTOMS))
    symptoms = [name for name, chance, draw in zip(SYMPTOMS, chances, draws, strict=True) if draw < chance]
    # A visit has a complaint: none drawn means the diagnosis's commonest symptom.
    return findings, symptoms or [max(SYMPTOMS, key=profile.symptoms.__getitem__)]


def sample_findings(profile: DiagnosisProfile, rng: np.random.Generator, *, age: int = 50) -> dict[str, float]:
    """One encounter's findings for a diagnosis (no patient offsets, no data-entry errors)."""
    return sample_encounter(profile, rng, age=age)[0]


def sample_symptoms(profile: DiagnosisProfile, rng: np.random.Generator) -> list[str]:
    """One encounter's symptoms for a diagnosis (at least one)."""
    return sample_encounter(profile, rng)[1]


def noisy_label(profile: DiagnosisProfile, rng: np.random.Generator) -> DiagnosisProfile:
    """The diagnosis as recorded: another one, uniformly, with probability ``LABEL_NOISE``."""
    if rng.random() >= LABEL_NOISE:
        return profile
    others = [other for other in RESPIRATORY_PROFILES if other.code != profile.code]
    return others[int(rng.integers(len(others)))]


# --- The Bayes classifier of these parameters -------------------------------------------------------


def _age_log_density(profile: DiagnosisProfile, age: float) -> float:
    if age >= 90:  # the 90+ tail is a uniform share of every diagnosis; its normal part is negligible
        return math.log(P_OVER_89 / 12)
    mean, sd = profile.age
    return math.log(1 - P_OVER_89) - 0.5 * ((age - mean) / sd) ** 2 - math.log(sd)


def _scale(name: str, value: float) -> float:
    return math.log(value) if name in LOG_NORMAL_FINDINGS else value


def bayes_posteriors(records: Sequence[Mapping[str, Any]]) -> NDArray[np.float64]:
    """P(true diagnosis | the encounter) for each record (rows) and profile (columns, in order).

    Exact for the model above, up to the quadrature, the rounding of recorded values and the
    bounds: severity is integrated out (Gauss-Hermite), the patient's offsets enter the findings'
    variances, and missing labs count as evidence (P(not ordered | severity)). Records are
    interchange records (``findings``, ``symptoms``, ``patient.sex``) with ``age`` added.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_POINTS)
    log_weights = np.log(weights / weights.sum())
    results = np.empty((len(records), len(RESPIRATORY_PROFILES)))
    patient_sd = {"spo2": SPO2_PATIENT_SD, "heart_rate": HEART_RATE_PATIENT_SD}
    for row, record in enumerate(records):
        findings: Mapping[str, float] = record["findings"]
        present = set(record["symptoms"])
        age = float(record["age"])
        for column, profile in enumerate(RESPIRATORY_PROFILES):
            log_like = np.zeros(QUADRATURE_POINTS)  # per severity node
            for name in RESPIRATORY_FINDINGS:
                _c, spread, loading = profile.findings[name]
                if name in findings:
                    sd = math.sqrt(spread**2 + patient_sd.get(name, 0.0) ** 2)
                    mean = _centre(profile, name, age) + loading * nodes
                    log_like += -0.5 * ((_scale(name, findings[name]) - mean) / sd) ** 2 - math.log(sd)
            panel = _sigmoid(profile.panel_logit + PANEL_SEVERITY * nodes)
            log_like += np.log(panel if "wbc" in findings else 1 - panel)
            nt = _sigmoid(profile.nt_probnp_logit + NT_PROBNP_SEVERITY * nodes + NT_PROBNP_AGE * max(0.0, age - 60))
            log_like += np.log(nt if "nt_probnp" in findings else 1 - nt)
            symptoms = np.zeros(QUADRATURE_POINTS)
            none_drawn = np.zeros(QUADRATURE_POINTS)
            for name in SYMPTOMS:
                chance = _sigmoid(_logit(profile.symptoms[name]) + SYMPTOM_SEVERITY.get(name, 0.0) * nodes)
                symptoms += np.log(chance if name in present else 1 - chance)
                none_drawn += np.log(1 - chance)
            if present == {max(SYMPTOMS, key=profile.symptoms.__getitem__)}:
                symptoms = np.logaddexp(symptoms, none_drawn)  # drawing none records the commonest alone
            log_like += symptoms
            total = np.logaddexp.reduce(log_like + log_weights)
            sex = record.get("patient", {}).get("sex")
            p_sex = profile.p_female if sex == "female" else 1 - profile.p_female
            results[row, column] = (
                total + math.log(PREVALENCE[column]) + _age_log_density(profile, age) + math.log(p_sex)
            )
    results -= results.max(axis=1, keepdims=True)
    posterior = np.exp(results)
    return np.asarray(posterior / posterior.sum(axis=1, keepdims=True), dtype=np.float64)


def bayes_predict(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Bayes classifier's diagnosis code for each record (the most probable true diagnosis).

    Label noise does not change it: the recorded label's probability is an increasing function of
    the true one's, so the most probable true diagnosis is also the most probable recorded one.
    """
    codes = [profile.code for profile in RESPIRATORY_PROFILES]
    return [codes[int(i)] for i in np.argmax(bayes_posteriors(records), axis=1)]
