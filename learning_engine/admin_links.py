"""No dead ends in the admin: links only where the reader may follow them, and refusal pages that
keep the admin's navigation.

Django links every read-only foreign key on a change page ("Submitted by", "Reviewed by",
"Created by", an audit entry's actor) to the related object's admin page without asking whether
the reader may open it; everyone but a superuser then meets a bare 403. ``RelatedLinksMixin``
swaps such a field, per request, for a plain-text display of the related object (a person's full
name, else their username), so only those who may open the target get the link.

``admin_permission_denied`` is the 403 page of every admin URL: the admin's header, breadcrumbs and
sidebar around one sentence, so a refused reader can go on from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from learning_engine.parsers import MAX_JSON_INTEGER


def display_name(obj: Any) -> str:
    """How a related object is named in plain text: a user by full name (else username)."""
    if obj is None:
        return "—"
    if isinstance(obj, get_user_model()):
        return obj.get_full_name() or obj.get_username()
    return str(obj)


@cache
def _plain(model: type[models.Model], name: str) -> Callable[[Any], str]:
    """The plain-text stand-in for ``model.<name>``: one function per field, so the same object
    appears in the fieldsets and in the read-only fields (the admin matches them by identity)."""
    field = model._meta.get_field(name)

    def show(obj: Any) -> str:
        return display_name(getattr(obj, name, None))

    show.__name__ = f"{name}_name"
    show.short_description = getattr(field, "verbose_name", name)  # type: ignore[attr-defined]
    return show


def can_open(admin_site: admin.AdminSite, request: HttpRequest, model: type[models.Model]) -> bool:
    """Whether the reader may open ``model``'s admin pages (so a link to one is not a dead end)."""
    target = admin_site._registry.get(model)
    return target is not None and target.has_view_or_change_permission(request)


def is_id_sized(text: str) -> bool:
    """False for a whole number beyond what a database id holds (``MAX_JSON_INTEGER``); True for
    anything else, numbers or not (other checks judge those)."""
    digits = text.strip().removeprefix("-")
    return not digits.isdecimal() or (len(digits) <= 19 and int(digits) <= MAX_JSON_INTEGER)


class RelatedLinksMixin:
    """For a ``ModelAdmin``: on its change page (and its inlines), a read-only foreign key links to
    its target only for readers who may open the target; the others see its name as text.

    Applied where the page is rendered (``render_change_form``), after every ``get_fieldsets`` and
    ``get_readonly_fields`` of the class and its inlines has had its say."""

    admin_site: admin.AdminSite

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest) -> bool:
        # A list's ``?dataset=<25 digits>`` (any foreign key) reached the database as a number no
        # id column holds: OverflowError in SQLite's driver, a 500. Such a lookup is refused like
        # any other the admin does not take (400).
        if not is_id_sized(str(value)):
            return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[misc, no-any-return]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        adminform = context.get("adminform")
        if adminform is not None:
            _unlink(adminform, adminform.model_admin.model, self.admin_site, request)
        for formset in context.get("inline_admin_formsets") or ():
            _unlink(formset, formset.opts.model, self.admin_site, request)
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[misc]


def _unlink(form: Any, model: type[models.Model], admin_site: admin.AdminSite, request: HttpRequest) -> None:
    """Swap the read-only foreign keys of an ``AdminForm`` or ``InlineAdminFormSet`` whose target the
    reader may not open for their plain-text stand-ins (both keep ``fieldsets`` and ``readonly_fields``)."""
    readonly = list(form.readonly_fields)
    # A view-only inline shows every field read-only, listed or not.
    shown_readonly = readonly if getattr(form, "has_change_permission", True) else flatten_fieldsets(form.fieldsets)
    swaps: dict[str, Callable[[Any], str]] = {}
    for name in flatten_fieldsets(form.fieldsets):
        if not isinstance(name, str) or name not in shown_readonly:
            continue
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:  # a display method
            continue
        if isinstance(field, models.ForeignKey) and not can_open(admin_site, request, field.related_model):
            swaps[name] = _plain(model, name)
    if not swaps:
        return
    form.fieldsets = [
        (title, {**options, "fields": _swap_fields(options.get("fields", ()), swaps)})
        for title, options in form.fieldsets
    ]
    form.readonly_fields = [*readonly, *swaps.values()]


def _swap_fields(fields: Sequence[Any], swaps: dict[str, Callable[[Any], str]]) -> tuple[Any, ...]:
    swapped: list[Any] = []
    for entry in fields:
        if isinstance(entry, (list, tuple)):  # fields on one line
            swapped.append(tuple(swaps.get(name, name) if isinstance(name, str) else name for name in entry))
        else:
            swapped.append(swaps.get(entry, entry) if isinstance(entry, str) else entry)
    return tuple(swapped)


def admin_permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The admin's 403: its header, breadcrumbs and sidebar (the reader's own apps) and one sentence."""
    context = {
        **admin.site.each_context(request),
        "title": "You may not open this page",
        "subtitle": None,
    }
    request.current_app = admin.site.name
    response = TemplateResponse(request, "admin/403.html", context, status=403)
    return response.render()
