"""Shared pieces of the Django admin: the confirmation flow for state-changing actions, and charts.

Every state-changing admin action (approve cases, cancel training jobs, activate a model version,
stop an A/B test) works like Django's own ``delete_selected``:

1. the action renders a confirmation page that lists the selected objects and a small form (a
   note, a reason), with the selected primary keys and the action name as hidden inputs;
2. the page posts back to the same URL with ``post=yes``; if the form is valid, the per-object
   callable runs in primary-key order, a ``DomainError`` skips that object, and the user gets one
   success message and one "skipped" message, each with a count.

Usage, inside a ``ModelAdmin``::

    @admin.action(description="Approve selected cases", permissions=["review"])
    def approve_selected(self, request, queryset):
        return confirm_and_apply(
            self, request, queryset,
            title="Approve cases", done="Approved", form_class=ApproveForm,
            apply=lambda case, data: case.approve(by=request.user, note=data["note"]),
            version_field="revision",
        )

The callable owns its transactions (model transitions are atomic per object); the helper opens
none, so slow work a transition does before its write stays outside any transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import ActionLocation
from django.contrib.admin.utils import model_ngettext, unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse

from learning_engine.exceptions import DomainError

CONFIRMATION_TEMPLATE = "admin/confirm_action.html"
CONFIRMED_VERSIONS_FIELD = "_confirmed_versions"
# Objects named on the confirmation page; the rest are summarised as "and N more".
MAX_LISTED = 100
# Reasons spelled out in the "skipped" message; the rest are counted.
MAX_REASONS = 5
# Form fields the confirmation page posts besides the selected keys (csrf, action, post, the
# form's own fields, versions). Used to keep a selection under DATA_UPLOAD_MAX_NUMBER_FIELDS.
_FIELD_MARGIN = 50


class NoInputForm(forms.Form):
    """The form of an action that needs nothing but a "yes"."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What ``confirm_and_apply`` did on the confirmed post (useful to callers and tests)."""

    applied: list[Any]
    skipped: list[tuple[Any, str]]


def _action_field(request: HttpRequest) -> tuple[str, str]:
    """The POST name and value of the action that was run (change list or, Django 6.1, change form)."""
    form_field = f"{ActionLocation.CHANGE_FORM.value}-action"
    if form_field in request.POST:
        return form_field, request.POST[form_field]
    names = request.POST.getlist("action")
    try:
        index = int(request.POST.get("index", 0))
    except ValueError:
        index = 0
    name = names[index] if 0 <= index < len(names) else (names[0] if names else "")
    return "action", name


def default_max_objects() -> int | None:
    """The most objects one confirmation page can carry back without Django refusing the post."""
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return None if limit is None else max(1, limit - _FIELD_MARGIN)


def _decode_versions(raw: str) -> dict[str, str]:
    versions: dict[str, str] = {}
    for item in raw.split(","):
        pk, sep, version = item.partition(":")
        if sep:
            versions[pk.strip()] = version.strip()
    return versions


def _skipped_message(skipped: Sequence[tuple[Any, str]], items: str) -> str:
    reasons = [reason for _obj, reason in skipped[:MAX_REASONS]]
    more = len(skipped) - len(reasons)
    text = "; ".join(reasons)
    if more:
        text += f"; and {more} more"
    return f"Skipped {len(skipped)} {items}: {text}"


def apply_in_order(
    objects: Iterable[Any],
    apply: Callable[[Any, dict[str, Any]], object],
    cleaned_data: dict[str, Any],
    *,
    confirmed_versions: dict[str, str] | None = None,
    version_field: str | None = None,
) -> ActionResult:
    """Call ``apply`` per object; a ``DomainError`` (wrong state, four-eyes, ...) skips the object.

    With ``version_field``, an object whose version differs from the one shown on the confirmation
    page is skipped too: the user confirmed a different object than the one now stored.
    """
    applied: list[Any] = []
    skipped: list[tuple[Any, str]] = []
    for obj in objects:
        if version_field is not None and confirmed_versions is not None:
            seen = confirmed_versions.get(str(obj.pk))
            if seen != str(getattr(obj, version_field)):
                skipped.append((obj, f"{obj} changed after the confirmation page was shown; review it again"))
                continue
        try:
            apply(obj, cleaned_data)
        except DomainError as exc:
            skipped.append((obj, exc.message))
        else:
            applied.append(obj)
    return ActionResult(applied=applied, skipped=skipped)


def confirm_and_apply(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    apply: Callable[[Any, dict[str, Any]], object],
    form_class: type[forms.Form] = NoInputForm,
    done: str = "Updated",
    question: str = "",
    confirm_label: str = "Yes, I'm sure",
    describe: Callable[[Any], str] = str,
    version_field: str | None = None,
    max_objects: int | bool | None = True,
    template: str | Sequence[str] | None = None,
    unavailable: Callable[[Any], str | None] | None = None,
) -> TemplateResponse | None:
    """Confirm, then apply a state change to every selected object. See the module docstring.

    - ``apply(obj, cleaned_data)`` performs the change; raising ``DomainError`` skips the object.
    - ``done`` is the past-tense verb of the success message ("Approved 3 cases.").
    - ``describe(obj)`` is how an object is listed on the confirmation page (``str`` by default;
      it must not reveal anything the user may not see).
    - ``version_field`` names a field (a revision, a lease) that must not change between the
      confirmation page and the confirmed post.
    - ``max_objects``: a larger selection is refused with an error message (``True``: what fits in
      one post under ``DATA_UPLOAD_MAX_NUMBER_FIELDS``; ``None``/``False``: no limit).
    - ``unavailable(obj)``: why the action does not apply to ``obj`` (None when it does). Such an
      object is listed as "will be skipped, <why>"; when none of the selection applies, the page
      says why and offers no confirm button.

    Run from a single object's page (the change form), the page is titled with the action's
    singular description ("Approve this version").

    Returns the confirmation page, or ``None`` after applying (the admin then redirects back).
    """
    opts = modeladmin.model._meta
    queryset = queryset.order_by("pk")
    limit = default_max_objects() if max_objects is True else (max_objects or None)
    total = queryset.count()
    if limit is not None and total > limit:
        modeladmin.message_user(
            request,
            f"{total} {model_ngettext(opts, total)} are selected; this action takes at most {limit} at a "
            "time. Narrow the list with the filters and run it again. Nothing was changed.",
            messages.ERROR,
        )
        return None

    confirmed = request.POST.get("post") == "yes"
    form = form_class(request.POST if confirmed else None)
    if confirmed and form.is_valid():
        versions = _decode_versions(request.POST.get(CONFIRMED_VERSIONS_FIELD, "")) if version_field else None
        result = apply_in_order(
            list(queryset),
            apply,
            form.cleaned_data,
            confirmed_versions=versions,
            version_field=version_field,
        )
        if result.applied:
            count = len(result.applied)
            modeladmin.message_user(request, f"{done} {count} {model_ngettext(opts, count)}.", messages.SUCCESS)
        if result.skipped:
            items = model_ngettext(opts, len(result.skipped))
            modeladmin.message_user(request, _skipped_message(result.skipped, items), messages.WARNING)
        return None

    if unavailable is not None:
        check, name = unavailable, describe

        def describe(obj: Any) -> str:
            why = check(obj)
            return name(obj) if why is None else f"{name(obj)}: will be skipped, {why}"

    objects = list(queryset[:MAX_LISTED])
    pks = list(queryset.values_list("pk", flat=True)) if total > len(objects) else [obj.pk for obj in objects]
    versions_value = ""
    if version_field:
        if confirmed and CONFIRMED_VERSIONS_FIELD in request.POST:
            # The form had errors: keep the versions of the first page, which is what was read.
            versions_value = request.POST[CONFIRMED_VERSIONS_FIELD]
        else:
            rows = queryset.values_list("pk", version_field)
            versions_value = ",".join(f"{pk}:{version}" for pk, version in rows)
    action_name_field, action_name = _action_field(request)
    if action_name_field != "action":  # from a single object's page: the singular description
        title = str(getattr(getattr(modeladmin, action_name, None), "short_description", "") or title)
    # When nothing selected can be acted on, say why instead of offering the button. (Only the
    # listed objects are checked: a selection longer than the list keeps its button.)
    reasons = [unavailable(obj) for obj in objects] if unavailable is not None and total == len(objects) else []
    nothing_applies = bool(reasons) and all(why is not None for why in reasons)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "question": question,
        "confirm_label": confirm_label,
        "opts": opts,
        "form": form,
        "listed": [describe(obj) for obj in objects],
        "more": total - len(objects),
        "total": total,
        "objects_name": model_ngettext(opts, total),
        "selected_pks": pks,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name_field": action_name_field,
        "action_name": action_name,
        "versions_field": CONFIRMED_VERSIONS_FIELD if version_field else "",
        "versions_value": versions_value,
        "nothing_applies": nothing_applies,
        "media": modeladmin.media + form.media,
    }
    request.current_app = modeladmin.admin_site.name
    templates = template or [
        f"admin/{opts.app_label}/{opts.model_name}/confirm_action.html",
        f"admin/{opts.app_label}/confirm_action.html",
        CONFIRMATION_TEMPLATE,
    ]
    return TemplateResponse(request, templates, context)


class StateActionsMixin:
    """A single object's page offers only the actions that apply to the object's state, and says
    why the others are not offered (``action_notes`` in the page's context).

    Subclasses answer ``action_unavailable(request, obj, name)``: None when the action ``name``
    applies to ``obj``, else a short reason ("it is completed"). Lists keep every action the role
    has (a selection mixes states); ``confirm_and_apply(unavailable=...)`` then skips, with reasons.
    """

    def action_unavailable(self, request: HttpRequest, obj: Any, name: str) -> str | None:
        return None

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        request._admin_page_object = obj  # type: ignore[attr-defined]  # read by get_actions below
        return obj

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> Any:
        # An action posted from the page that no longer applies (the object changed meanwhile):
        # say so and show the page again, instead of Django's refusal of a save.
        name = request.POST.get(f"{ActionLocation.CHANGE_FORM.value}-action") if request.method == "POST" else None
        if name and object_id is not None:
            obj = self.get_object(request, unquote(object_id))
            offered = super().get_actions(request, action_location=ActionLocation.CHANGE_FORM)  # type: ignore[misc]
            why = self.action_unavailable(request, obj, name) if obj is not None and name in offered else None
            if why is not None:
                description = offered[name].description
                self.message_user(  # type: ignore[attr-defined]
                    request, f"Nothing was done: {description}: {why}.", messages.WARNING
                )
                return HttpResponseRedirect(request.path)
        return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]

    def get_actions(self, request: HttpRequest, action_location: ActionLocation = ActionLocation.CHANGE_LIST) -> Any:
        actions = super().get_actions(request, action_location=action_location)  # type: ignore[misc]
        obj = getattr(request, "_admin_page_object", None)
        if action_location != ActionLocation.CHANGE_FORM or obj is None:
            return actions
        return {name: action for name, action in actions.items() if self.action_unavailable(request, obj, name) is None}

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None:
            offered = super().get_actions(request, action_location=ActionLocation.CHANGE_FORM)  # type: ignore[misc]
            notes = []
            for name, action in offered.items():
                why = self.action_unavailable(request, obj, name)
                if why is not None:
                    notes.append(f"{action.description}: not offered, {why}.")
            context["action_notes"] = notes
        return super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]


# --- Charts --------------------------------------------------------------------------------------
# Drawn on the server as inline SVG (templates/admin/includes/bar_chart.html): no JavaScript and no
# CDN, so the admin works offline and under a strict Content-Security-Policy.


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float
    label_x: float
    value_y: float
    label_y: float
    hint: str = ""  # more about the label, in the bar's tooltip (a code's name)


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    width: int
    height: int
    baseline: float
    bars: list[Bar]
    max_value: int
    total: int
    value_label: str


def bar_chart(
    items: Iterable[tuple[str, int]],
    *,
    title: str,
    width: int = 640,
    height: int = 260,
    value_label: str = "count",
    hints: Mapping[str, str] | None = None,
) -> BarChart:
    """The geometry of a vertical bar chart: one bar per ``(label, value)``; heights scale to the maximum.
    ``hints``: more about a label (a diagnosis code's name), shown in its bar's tooltip."""
    pairs = [(str(label), int(value)) for label, value in items]
    top, bottom, side = 24.0, 40.0, 8.0
    plot_height = height - top - bottom
    baseline = height - bottom
    slot = (width - 2 * side) / max(len(pairs), 1)
    bar_width = slot * 0.8
    max_value = max((value for _label, value in pairs), default=0)
    bars = []
    for index, (label, value) in enumerate(pairs):
        bar_height = plot_height * value / max_value if max_value else 0.0
        x = side + index * slot + (slot - bar_width) / 2
        bars.append(
            Bar(
                label=label,
                value=value,
                x=round(x, 2),
                y=round(baseline - bar_height, 2),
                width=round(bar_width, 2),
                height=round(bar_height, 2),
                label_x=round(x + bar_width / 2, 2),
                value_y=round(baseline - bar_height - 6, 2),
                label_y=round(baseline + 16, 2),
                hint=(hints or {}).get(label, ""),
            )
        )
    return BarChart(
        title=title,
        width=width,
        height=height,
        baseline=baseline,
        bars=bars,
        max_value=max_value,
        total=sum(value for _label, value in pairs),
        value_label=value_label,
    )


class DeferredListAdminMixin:
    """A changelist that never loads ``list_deferred`` (large or PHI columns a list does not show)."""

    list_deferred: tuple[str, ...] = ()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        deferred = self.list_deferred

        class DeferringChangeList(ChangeList):
            def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
                return super().get_queryset(request, exclude_parameters).defer(*deferred)

        return DeferringChangeList
