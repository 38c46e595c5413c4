from __future__ import annotations

import pytest
from django.core.management import call_command

from training.models import ModelType


@pytest.mark.django_db
def test_load_demo_creates_the_demo_model_types_once(settings):
    settings.DEBUG = True
    call_command("load_demo", "--skip-cases", verbosity=0)
    call_command("load_demo", "--skip-cases", verbosity=0)
    types = {t.slug: t for t in ModelType.objects.all()}
    assert set(types) == {"diagnosis", "breast-mass"}
    assert types["diagnosis"].cohort == "respiratory"
    assert types["diagnosis"].epoch_algorithm == "sgd"
    assert types["breast-mass"].cohort == "breast-mass"
