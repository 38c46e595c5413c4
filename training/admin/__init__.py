"""The admin of model types, dataset snapshots and training jobs.

Who sees what (``learning_engine.roles``): ML engineers view everything here, create datasets and
jobs, and start, cancel and retry jobs (``training.change_trainingjob``); clinical leads only view;
clinicians see no training at all (Django answers 403). Model types are edited by superusers only.

Nothing here writes a status or a worker field: datasets are immutable audit records (read-only,
never deleted), and a job changes only through its transitions, called from the actions
(``confirm_and_apply``: a confirmation page first, then one success and one "skipped" message).
Job pages are therefore view-only for everyone; acting on a job is a separate permission
(``has_operate_permission``), not "change".

Lists defer the large JSON columns (a dataset's manifest, a job's history and evaluation) and
join what they show, so a list of 200 rows costs the same queries as one of 5. Charts are inline
SVG drawn on the server (no CDN); a running job's page refreshes its progress and curves every two
seconds with a small same-origin script that fetches a fragment (``<id>/live/``).

One module an admin (``model_types``, ``datasets``, ``jobs``), their forms (``forms``), what the
dataset and job pages share (``common``: pages created by a model method that then change in the
background) and the display of stored evaluations, compositions and scan reports (``display``, which
the registry's version pages use too).
"""

from __future__ import annotations

# Django's autodiscovery imports this package; the admins register as their modules load.
from training.admin import datasets, jobs, model_types  # noqa: F401
