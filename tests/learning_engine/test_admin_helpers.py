"""The admin confirmation flow and the SVG chart geometry, on a model that is not a case.

``auth.Group`` stands in for any model: the helper must not know about cases.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.contrib.messages.storage.cookie import CookieStorage
from django.template.response import TemplateResponse
from django.test import RequestFactory

from learning_engine import admin_helpers
from learning_engine.admin_helpers import NoInputForm, bar_chart, confirm_and_apply
from learning_engine.exceptions import DomainError, TransitionError
from tests.factories import UserFactory


class NoteForm(admin_helpers.forms.Form):
    note = admin_helpers.forms.CharField(max_length=50)


@pytest.fixture
def modeladmin() -> admin.ModelAdmin:
    return admin.ModelAdmin(Group, admin.site)


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def groups(db) -> list[Group]:
    # Created in reverse name order so that name order and primary-key order differ.
    return [Group.objects.create(name=name) for name in ("delta", "charlie", "bravo", "alpha")]


def selected(groups: list[Group]):
    """The test's own groups (the role migration has created others)."""
    return Group.objects.filter(pk__in=[group.pk for group in groups])


def make_request(user: Any, data: dict[str, Any] | None = None):
    request = RequestFactory().post("/admin/auth/group/", data or {})
    request.user = user
    request._messages = CookieStorage(request)  # type: ignore[attr-defined]  # what MessageMiddleware sets
    return request


def sent(request) -> list[tuple[int, str]]:
    return [(message.level, message.message) for message in request._messages]


def run(modeladmin, request, queryset, apply, **kwargs: Any):
    return confirm_and_apply(modeladmin, request, queryset, title="Do it", apply=apply, done="Done", **kwargs)


def test_first_call_renders_a_confirmation_page_and_changes_nothing(modeladmin, superuser, groups):
    calls: list[Any] = []
    request = make_request(superuser, {"action": "do_it", "index": "0", "_selected_action": [g.pk for g in groups]})

    response = run(modeladmin, request, selected(groups).order_by("name"), lambda obj, data: calls.append(obj))

    assert isinstance(response, TemplateResponse)
    html = response.render().content.decode()
    assert calls == []
    assert sent(request) == []
    for group in groups:
        assert f'name="_selected_action" value="{group.pk}"' in html
        assert group.name in html
    assert 'name="action" value="do_it"' in html
    assert 'name="post" value="yes"' in html


def test_confirmed_post_applies_in_primary_key_order(modeladmin, superuser, groups):
    calls: list[str] = []
    request = make_request(superuser, {"post": "yes", "action": "do_it"})

    response = run(modeladmin, request, selected(groups).order_by("name"), lambda obj, data: calls.append(obj.name))

    assert response is None
    assert calls == ["delta", "charlie", "bravo", "alpha"]  # creation (pk) order, not the name order asked for


def test_domain_errors_skip_the_object_with_one_success_and_one_skipped_message(modeladmin, superuser, groups):
    def apply(obj: Group, data: dict[str, Any]) -> None:
        if obj.name in {"charlie", "alpha"}:
            raise TransitionError(f"{obj.name} is in the wrong state.")
        obj.name = obj.name.upper()
        obj.save()

    request = make_request(superuser, {"post": "yes", "action": "do_it"})

    run(modeladmin, request, selected(groups), apply)

    assert sorted(selected(groups).values_list("name", flat=True)) == ["BRAVO", "DELTA", "alpha", "charlie"]
    assert sent(request) == [
        (messages.SUCCESS, "Done 2 groups."),
        (messages.WARNING, "Skipped 2 groups: charlie is in the wrong state.; alpha is in the wrong state."),
    ]


def test_only_domain_errors_are_swallowed(modeladmin, superuser, groups):
    def apply(obj: Group, data: dict[str, Any]) -> None:
        raise KeyError("a bug")

    request = make_request(superuser, {"post": "yes", "action": "do_it"})

    with pytest.raises(KeyError):
        run(modeladmin, request, selected(groups), apply)


def test_no_success_message_when_everything_was_skipped(modeladmin, superuser, groups):
    def apply(obj: Group, data: dict[str, Any]) -> None:
        raise DomainError("no")

    request = make_request(superuser, {"post": "yes", "action": "do_it"})

    run(modeladmin, request, selected(groups), apply)

    assert sent(request) == [(messages.WARNING, "Skipped 4 groups: no; no; no; no")]


def test_the_skipped_message_spells_out_a_few_reasons_and_counts_the_rest(modeladmin, superuser, db):
    many = [Group.objects.create(name=f"g{index}") for index in range(8)]

    def apply(obj: Group, data: dict[str, Any]) -> None:
        raise DomainError(f"{obj.name} refused")

    request = make_request(superuser, {"post": "yes", "action": "do_it"})

    run(modeladmin, request, selected(many), apply)

    [(level, text)] = sent(request)
    assert level == messages.WARNING
    assert text == "Skipped 8 groups: g0 refused; g1 refused; g2 refused; g3 refused; g4 refused; and 3 more"


def test_an_invalid_form_shows_the_page_again_with_errors_and_applies_nothing(modeladmin, superuser, groups):
    calls: list[Any] = []
    request = make_request(superuser, {"post": "yes", "action": "do_it", "note": ""})

    response = run(modeladmin, request, selected(groups), lambda obj, data: calls.append(obj), form_class=NoteForm)

    assert isinstance(response, TemplateResponse)
    assert "This field is required." in response.render().content.decode()
    assert calls == []
    assert sent(request) == []


def test_the_cleaned_form_data_reaches_the_callable(modeladmin, superuser, groups):
    notes: list[str] = []
    request = make_request(superuser, {"post": "yes", "action": "do_it", "note": "because"})

    run(modeladmin, request, selected(groups), lambda obj, data: notes.append(data["note"]), form_class=NoteForm)

    assert notes == ["because"] * 4


def test_an_object_changed_after_the_confirmation_page_is_skipped(modeladmin, superuser, groups):
    page_request = make_request(superuser, {"action": "do_it"})
    page = run(modeladmin, page_request, selected(groups), lambda obj, data: None, version_field="name")
    versions = page.context_data["versions_value"]
    Group.objects.filter(name="bravo").update(name="bravo-2")  # someone else changes one meanwhile
    calls: list[str] = []
    request = make_request(
        superuser, {"post": "yes", "action": "do_it", admin_helpers.CONFIRMED_VERSIONS_FIELD: versions}
    )

    run(modeladmin, request, selected(groups), lambda obj, data: calls.append(obj.name), version_field="name")

    assert calls == ["delta", "charlie", "alpha"]
    assert sent(request)[1][0] == messages.WARNING
    assert "changed after the confirmation page was shown" in sent(request)[1][1]


def test_a_selection_larger_than_one_post_can_carry_is_refused_with_a_message(modeladmin, superuser, groups):
    calls: list[Any] = []
    request = make_request(superuser, {"post": "yes", "action": "do_it"})

    response = run(modeladmin, request, selected(groups), lambda obj, data: calls.append(obj), max_objects=3)

    assert response is None
    assert calls == []
    [(level, text)] = sent(request)
    assert level == messages.ERROR
    assert "at most 3" in text
    assert "Nothing was changed" in text


def test_the_default_limit_follows_django_s_field_limit(settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
    assert admin_helpers.default_max_objects() == 950
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = None
    assert admin_helpers.default_max_objects() is None


def test_the_page_re_posts_the_change_form_action_name(modeladmin, superuser, groups):
    request = make_request(superuser, {"CHANGE_FORM-action": "do_it", "_selected_action": [groups[0].pk]})

    response = run(modeladmin, request, Group.objects.filter(pk=groups[0].pk), lambda obj, data: None)

    assert 'name="CHANGE_FORM-action" value="do_it"' in response.render().content.decode()


def test_no_input_form_needs_nothing_but_yes():
    assert NoInputForm({}).is_valid()


def test_bar_chart_scales_bars_to_the_largest_value():
    chart = bar_chart([("a", 10), ("b", 5), ("c", 0)], title="t", width=300, height=200)

    tallest, half, empty = chart.bars
    assert tallest.height == pytest.approx(200 - 24 - 40)
    assert half.height == pytest.approx(tallest.height / 2)
    assert empty.height == 0
    assert tallest.y + tallest.height == pytest.approx(chart.baseline)
    assert tallest.x < half.x < empty.x
    assert empty.x + empty.width <= 300
    assert chart.total == 15
    assert chart.max_value == 10


def test_bar_chart_of_nothing_draws_no_bars():
    chart = bar_chart([], title="empty")
    assert chart.bars == []
    assert chart.total == 0


# --- Display names and numbers (issue 12.4) --------------------------------------------------------


def test_metric_names_are_the_same_human_names_everywhere():
    from learning_engine.display import metric_name

    assert metric_name("f1_macro") == "F1 (macro)"
    assert metric_name("accuracy_ci") == "Accuracy, 95% interval"
    assert metric_name("auroc_macro") == "AUROC (macro, one-vs-rest)"
    assert metric_name("test_size") == "Test-set size"
    assert metric_name("some_new_metric") == "Some new metric"


def test_numbers_read_as_people_read_them():
    from learning_engine.display import (
        fmt,
        fmt_bytes,
        fmt_count,
        fmt_difference,
        fmt_difference_interval,
        fmt_percent,
        metric_value,
    )

    assert fmt(-0.0001) == "0.000"  # never "-0.000"
    assert fmt(-0.25) == "-0.250"
    assert fmt(3572) == "3,572"
    assert fmt(31.0, 1) == "31.0"
    assert fmt(float("nan")) == "—"
    assert fmt(True) == "—"
    assert fmt_count(3572.0) == "3,572"
    assert fmt_percent(0.15) == "15%"
    assert fmt_percent(0.125) == "12.5%"
    assert fmt_bytes(140825) == "137.5\xa0KB (140,825 bytes)"
    assert metric_value("test_size", 1200.0) == "1,200"
    assert metric_value("accuracy_ci", [0.5, 0.75]) == "50.0% to 75.0%"
    assert metric_value("auroc_macro_ci", [0.5, 0.75]) == "0.500 to 0.750"
    # Shares of cases people read as percentages, one decimal; other scores stay decimals.
    assert metric_value("accuracy", 0.91349) == "91.3%"
    assert metric_value("f1_macro", 1) == "100.0%"
    assert metric_value("f1_macro", -0.00001) == "0.0%"
    assert metric_value("accuracy", float("nan")) == "—"
    assert metric_value("auroc_macro", 0.91349) == "0.913"
    assert metric_value("brier", 0.1) == "0.100"
    assert fmt_difference("accuracy", 0.0123) == "+1.2 points"
    assert fmt_difference("accuracy", -0.0001) == "0.0 points"
    assert fmt_difference("auroc_macro", 0.0123) == "0.012"
    assert fmt_difference_interval("accuracy", [-0.012, 0.034]) == "-1.2 to +3.4 points"
    assert fmt_difference_interval("brier", [-0.012, 0.034]) == "-0.012 to 0.034"
    assert fmt_difference_interval("accuracy", None) == ""
