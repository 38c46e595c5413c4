"""The five roles of the design, as Django groups over model permissions.

``ROLE_PERMISSIONS`` is the one table of who may do what. ``sync_roles`` makes the groups match it;
data migrations call it (each app adds one when it adds permissions), and so does ``post_migrate``,
so a database is never left with roles older than the code.
"""

from __future__ import annotations

from typing import Any

CLINICIAN = "clinician"
ML_ENGINEER = "ml_engineer"
CLINICAL_LEAD = "clinical_lead"
PREDICTION_CLIENT = "prediction_client"
PRIVACY_OFFICER = "privacy_officer"
ROLES = (CLINICIAN, ML_ENGINEER, CLINICAL_LEAD, PREDICTION_CLIENT, PRIVACY_OFFICER)

# Permissions that guard raw patient data and the review workflow. Named here so code outside
# `cases` can ask about them without importing the cases app.
PERM_VIEW_PHI = "cases.view_phi"
PERM_REVIEW_CASE = "cases.review_case"
PERM_IMPORT_CASES = "cases.import_cases"
PERM_VIEW_STATISTICS = "cases.view_case_statistics"
# Data dictionaries: everyone who works with cases reads them (REST clients validate against the
# published JSON Schema); clinical leads own their content.
PERM_PUBLISH_DICTIONARY = "cases.publish_datadictionary"
DICTIONARY_READ = ["cases.view_cohort", "cases.view_datadictionary", "cases.view_dictionarytransition"]
DICTIONARY_WRITE = [
    "cases.add_cohort",
    "cases.change_cohort",
    "cases.add_datadictionary",
    "cases.change_datadictionary",
    PERM_PUBLISH_DICTIONARY,
]
PERM_DOWNLOAD_DATASET = "training.download_datasetsnapshot"
# An external trainer drives a job through start / progress / complete / fail.
PERM_REPORT_TRAINING = "training.report_trainingjob"
# Serving: request predictions, and confirm (or correct) them afterwards.
PERM_PREDICT = "models_registry.predict"
PERM_GIVE_FEEDBACK = "models_registry.give_feedback"
# A/B tests: ML engineers set them up (and may stop one); clinical leads conclude (and may stop).
PERM_VIEW_AB_TEST = "models_registry.view_abtest"
PERM_ADD_AB_TEST = "models_registry.add_abtest"
PERM_STOP_AB_TEST = "models_registry.stop_abtest"
PERM_CONCLUDE_AB_TEST = "models_registry.conclude_abtest"
# Monitoring of the serving versions (drift, live accuracy, calibration): ML engineers and clinical leads.
PERM_VIEW_MONITORING = "monitoring.view_monitoringsnapshot"
# The learning loop (issue 15): clinical leads write the policy (the change-control plan) and may
# start or cancel a cycle by hand; ML engineers read everything of it.
LEARNING_READ = [
    "learning.view_learningpolicy",
    "learning.view_learningcycle",
    "learning.view_cycletransition",
    "training.view_lockedevaluationset",
]
PERM_RUN_LEARNING_CYCLE = "learning.run_learningcycle"
# The log of who read which patient's data (cases.access_log): the privacy officer's only permission.
PERM_VIEW_ACCESS_LOG = "cases.view_accesslogentry"

# Alerts: clinical leads decide where alerts go (a receiver is a disclosure outside the engine, and
# its URL may hold a token); ML engineers and leads read the events and the delivery log.
ALERT_LOG_READ = ["alerts.view_alertevent", "alerts.view_alertdelivery", "alerts.view_deliveryattempt"]
ALERT_RECEIVERS_WRITE = [
    "alerts.view_alertreceiver",
    "alerts.add_alertreceiver",
    "alerts.change_alertreceiver",
    "alerts.delete_alertreceiver",
    "alerts.send_test_alert",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    CLINICIAN: [
        "cases.view_case",
        "cases.add_case",
        "cases.change_case",
        PERM_VIEW_PHI,
        PERM_REVIEW_CASE,
        PERM_IMPORT_CASES,
        PERM_VIEW_STATISTICS,
        "cases.view_casetransition",
        PERM_PREDICT,
        PERM_GIVE_FEEDBACK,
        *DICTIONARY_READ,
    ],
    ML_ENGINEER: [
        # De-identified cases only: no view_phi.
        "cases.view_case",
        "cases.view_casetransition",
        PERM_VIEW_STATISTICS,
        "training.view_modeltype",
        "training.view_datasetsnapshot",
        "training.view_datasettransition",
        "training.add_datasetsnapshot",
        PERM_DOWNLOAD_DATASET,
        "training.view_trainingjob",
        "training.add_trainingjob",
        "training.change_trainingjob",
        PERM_REPORT_TRAINING,
        "training.view_jobtransition",
        "models_registry.view_modelversion",
        "models_registry.view_activationhistory",
        "models_registry.view_performancerecord",
        "models_registry.add_performancerecord",
        "models_registry.view_versiontransition",
        "models_registry.view_artifactrejection",
        PERM_VIEW_AB_TEST,
        PERM_ADD_AB_TEST,
        PERM_STOP_AB_TEST,
        "models_registry.view_abtesttransition",
        PERM_VIEW_MONITORING,
        *DICTIONARY_READ,
        *LEARNING_READ,
        *ALERT_LOG_READ,
    ],
    CLINICAL_LEAD: [
        "cases.view_case",
        "cases.view_casetransition",
        PERM_VIEW_STATISTICS,
        "training.view_modeltype",
        "training.view_datasetsnapshot",
        "training.view_datasettransition",
        "training.view_trainingjob",
        "training.view_jobtransition",
        "models_registry.view_modelversion",
        "models_registry.approve_modelversion",
        "models_registry.deploy_modelversion",
        "models_registry.view_activationhistory",
        "models_registry.view_performancerecord",
        "models_registry.view_versiontransition",
        "models_registry.view_artifactrejection",
        PERM_VIEW_AB_TEST,
        PERM_STOP_AB_TEST,
        PERM_CONCLUDE_AB_TEST,
        "models_registry.view_abtesttransition",
        PERM_VIEW_MONITORING,
        *DICTIONARY_READ,
        *DICTIONARY_WRITE,
        *LEARNING_READ,
        "learning.add_learningpolicy",
        PERM_RUN_LEARNING_CYCLE,
        *ALERT_LOG_READ,
        *ALERT_RECEIVERS_WRITE,
    ],
    PREDICTION_CLIENT: [PERM_PREDICT, PERM_GIVE_FEEDBACK, "cases.view_cohort", "cases.view_datadictionary"],
    # Reads the PHI access log and nothing else: no cases, datasets, models, statistics or dictionaries.
    PRIVACY_OFFICER: [PERM_VIEW_ACCESS_LOG],
}

# Roles whose members work in the Django admin (is_staff is set for demo users of these roles).
ADMIN_ROLES = (CLINICIAN, ML_ENGINEER, CLINICAL_LEAD, PRIVACY_OFFICER)


def sync_roles(apps: Any = None, schema_editor: Any = None, *, strict: bool = False) -> None:
    """Create the role groups and set their permissions to exactly ``ROLE_PERMISSIONS``.

    Works with the historical ``apps`` of a migration or, with ``apps=None``, the live registry.
    Permissions of apps not migrated yet are skipped unless ``strict``; the app's own migration
    calls this again once they exist.
    """
    from django.contrib.auth.management import create_permissions

    if apps is None:
        from django.apps import apps as live_apps

        apps = live_apps
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = []
        for name in names:
            app_label, codename = name.split(".", 1)
            perm = permission_model.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if perm is None:
                if strict:
                    raise LookupError(f"Permission {name} of role {role} does not exist.")
                continue
            wanted.append(perm)
        group.permissions.set(wanted)
