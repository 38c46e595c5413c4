"""What the dataset and job admins share: pages whose objects a model method creates and that change
in the background afterwards (``LiveCreateAdminMixin``), and object ids from URLs."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path

from learning_engine.exceptions import DomainError


class LiveCreateAdminMixin:
    """Admin pages whose objects are created by a model method and then change in the background.

    A ``DomainError`` raised by the creating method (what the form let through but the model
    refused) becomes an error message, never a 500; ``<id>/live/`` serves the fragment the page
    polls (``live_view``) while the object is still being worked on.
    """

    live_url_name: str

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        except DomainError as exc:
            # The atomic changeform view rolled back.
            self.message_user(request, f"Nothing was created: {exc.message}", messages.ERROR)  # type: ignore[attr-defined]
            return HttpResponseRedirect(request.path)

    def get_urls(self) -> list[URLPattern]:
        live = path(
            "<path:object_id>/live/",
            self.admin_site.admin_view(self.live_view),  # type: ignore[attr-defined]
            name=self.live_url_name,
        )
        return [live, *super().get_urls()]  # type: ignore[misc]  # before the catch-all "<path:object_id>/"


def pk_or_404(object_id: str) -> int:
    try:
        return int(unquote(object_id))
    except ValueError:
        raise Http404 from None


def become(obj: Any, created: Any) -> None:
    """Make the admin's unsaved ``obj`` the row a model method created (messages, log, redirect)."""
    for field in type(created)._meta.concrete_fields:
        setattr(obj, field.attname, getattr(created, field.attname))
    obj._state.adding = False
    obj._state.db = created._state.db
