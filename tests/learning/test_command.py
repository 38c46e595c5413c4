"""manage.py learning_cycle: explain with --dry-run, else open or advance one cycle; clear errors."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from learning.models import LearningCycle


def run(*args: str) -> str:
    out = StringIO()
    call_command("learning_cycle", *args, stdout=out)
    return out.getvalue()


def test_dry_run_names_the_policy_the_champion_and_every_trigger_and_changes_nothing(world):
    policy = world.policy(trigger_new_cases=500, trigger_every_days=3)
    text = run("--model-type", world.model_type.slug, "--dry-run")
    assert str(policy) in text
    assert "enabled" in text
    assert f"Champion: {world.champion.version}." in text
    assert "new_cases: quiet. 0 approved cases since the champion's dataset (threshold 500)." in text
    assert "schedule: FIRES. No cycle yet." in text
    assert "would open a cycle now (trigger schedule)" in text
    assert not LearningCycle.objects.exists()


def test_dry_run_with_an_open_cycle_says_what_the_next_step_does(world):
    world.policy()
    run("--model-type", world.model_type.slug)
    cycle = LearningCycle.objects.get()
    text = run("--model-type", world.model_type.slug, "--dry-run")
    assert f"Open: learning cycle {cycle.pk}" in text
    assert "Next step: lock the evaluation set if needed, build the dataset" in text


def test_without_dry_run_it_opens_a_manual_cycle_and_takes_its_first_step(world):
    world.policy()
    text = run("--model-type", world.model_type.slug)
    cycle = LearningCycle.objects.get()
    assert cycle.trigger == "manual"
    assert cycle.dataset is not None
    assert f"Learning cycle {cycle.pk} of {world.model_type.slug}: opened -> waiting_for_dataset." in text
    run("--model-type", world.model_type.slug)
    assert LearningCycle.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-type", "nope"], "No model type 'nope'."),
        (["--model-type", "{slug}"], "has no learning policy"),
    ],
)
def test_bad_input_is_a_command_error(world, args, message):
    with pytest.raises(CommandError, match=message):
        run(*[arg.format(slug=world.model_type.slug) for arg in args])


def test_dry_run_without_a_policy_says_so(world):
    assert "has no learning policy: no cycle starts." in run("--model-type", world.model_type.slug, "--dry-run")


def test_a_disabled_policy_is_refused_by_the_command(world):
    world.policy(enabled=False)
    with pytest.raises(CommandError, match="is disabled"):
        run("--model-type", world.model_type.slug)
