"""Login lockout (django-axes): who a client is, and what a locked-out client is told.

Axes counts failed logins per username *and* address together (``AXES_LOCKOUT_PARAMETERS``): after
``AXES_FAILURE_LIMIT`` failures that pair is refused, right password included, for
``AXES_COOLOFF_TIME``. Counting the pair, not the username alone, keeps an attacker from locking a
clinician out of the ward by typing wrong passwords under their name, and keeps one address (a
hospital's NAT) from locking out everybody behind it; guessing across many usernames from one
address is slowed by the token endpoint's throttle. Administrators see attempts and lockouts in the
admin (Axes: access attempts, failures and logins) and lift one by deleting its attempt row or with
``manage.py axes_reset_username <name>``.
"""

from __future__ import annotations

from typing import Any

from axes.helpers import get_cool_off
from axes.utils import reset
from django.contrib import admin
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth import authenticate
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from rest_framework.throttling import BaseThrottle

LOCKED_OUT_CODE = "locked_out"


def client_address(request: HttpRequest) -> str | None:
    """The client's address as the throttles see it (``NUM_PROXIES`` entries of X-Forwarded-For
    believed, none by default), so a client cannot pick a fresh identity with a forged header."""
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]


def forget_failures(request: HttpRequest, username: str) -> None:
    """After a successful token login, what ``AXES_RESET_ON_SUCCESS`` does for an admin login: the
    failures of this username from this address are forgotten (simplejwt sends no login signal)."""
    address = client_address(request)
    if username and address:  # both, or one alone would reset other users' or addresses' counts
        reset(ip=address, username=username)


def lockout_message(minutes: int) -> str:
    return (
        f"Too many failed logins for this account from this address. Try again in {minutes} minutes, "
        f"or ask an administrator to unlock the account."
    )


def lockout_payload(request: HttpRequest) -> tuple[dict[str, Any], int]:
    """The API's answer to a locked-out login (code ``locked_out``) and the seconds it lasts."""
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 0
    message = lockout_message(max(1, -(-seconds // 60)))
    return {"code": LOCKED_OUT_CODE, "detail": message, "retry_after": seconds}, seconds


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """429 for a locked-out login: JSON with code ``locked_out`` under /api/, the admin's page
    elsewhere; ``Retry-After`` says when the lockout ends (``AXES_LOCKOUT_CALLABLE``)."""
    payload, seconds = lockout_payload(request)
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(payload, status=429)
    else:
        context = {"message": payload["detail"], "title": "Login locked"}
        response = render(request, "admin/locked_out.html", context, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response


# --- The admin's password change -------------------------------------------------------------------
# The old password on the admin's "Change password" page is a password guess like a login's: with
# Django's form it was checked with ``check_password``, outside django-axes, so anyone holding a
# session (a workstation left open) could try passwords there without limit and learn the one that
# outlives the session. Here it goes through ``authenticate`` like a login: a wrong one counts as a
# failure of that username and address, and a locked-out pair gets the lockout page.


class LockoutPasswordChangeForm(AdminPasswordChangeForm):
    request: HttpRequest | None = None  # set per request by ``admin_password_change``

    def clean_old_password(self) -> str:
        old_password: str = self.cleaned_data["old_password"]
        user = authenticate(self.request, username=self.user.get_username(), password=old_password)
        if user is None or user.pk != self.user.pk:
            raise ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


def admin_password_change(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponseBase:
    """``AdminSite.password_change`` with ``LockoutPasswordChangeForm`` (installed in urls.py)."""
    site = admin.site
    form_class = type("LockoutPasswordChangeForm", (LockoutPasswordChangeForm,), {"request": request})
    defaults: dict[str, Any] = {
        "form_class": form_class,
        "success_url": reverse("admin:password_change_done", current_app=site.name),
        "extra_context": {**site.each_context(request), **(extra_context or {})},
    }
    if site.password_change_template is not None:
        defaults["template_name"] = site.password_change_template
    request.current_app = site.name
    return PasswordChangeView.as_view(**defaults)(request)
