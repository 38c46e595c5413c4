"""Login lockout with django-axes (learning_engine.lockout, issue 10 part 5): the admin login and
the JWT token endpoint, per username and address."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.test import Client
from rest_framework.test import APIClient

PASSWORD = "pw-for-tests-only"
TOKEN_URL = "/api/v1/auth/token/"
LOGIN_URL = "/admin/login/"
LIMIT = 5


def token(username: str, password: str, address: str = "127.0.0.1"):
    return APIClient().post(TOKEN_URL, {"username": username, "password": password}, format="json", REMOTE_ADDR=address)


def admin_login(username: str, password: str, address: str = "127.0.0.1"):
    return Client().post(f"{LOGIN_URL}?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_lockout_counts_username_and_address_together_with_a_default_of_five(settings):
    assert settings.AXES_FAILURE_LIMIT == LIMIT
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


@pytest.mark.django_db
def test_the_token_endpoint_locks_out_after_repeated_wrong_passwords(clinician, make_user):
    other = make_user("clinician")
    answers = [token(clinician.username, "wrong") for _ in range(LIMIT)]

    assert [answer.status_code for answer in answers] == [401] * (LIMIT - 1) + [429]
    locked = token(clinician.username, PASSWORD)  # the right password, while locked
    assert locked.status_code == 429
    body = locked.json()
    assert body["code"] == "locked_out"
    assert "Try again in 15 minutes" in body["detail"]
    assert int(locked["Retry-After"]) == 15 * 60
    assert "access" not in body
    # Another user at the same address, and the same user at another address, are not locked out.
    assert token(other.username, PASSWORD).status_code == 200
    assert token(clinician.username, PASSWORD, address="10.1.2.3").status_code == 200


@pytest.fixture
def staff_clinician(make_user):
    return make_user("clinician", is_staff=True)


@pytest.mark.django_db
def test_fewer_failures_than_the_limit_then_the_right_password_logs_in_and_starts_the_count_again(staff_clinician):
    clinician = staff_clinician
    for _ in range(LIMIT - 1):
        assert admin_login(clinician.username, "wrong").status_code == 200  # the form again, with its error
    response = admin_login(clinician.username, PASSWORD)
    assert response.status_code == 302
    # AXES_RESET_ON_SUCCESS: the successful login cleared the failures.
    assert admin_login(clinician.username, "wrong").status_code == 200


@pytest.mark.django_db
def test_the_admin_login_locks_out_with_a_page_that_says_why(staff_clinician, make_user):
    clinician, other = staff_clinician, make_user("clinician", is_staff=True)
    for _ in range(LIMIT - 1):
        assert admin_login(clinician.username, "wrong").status_code == 200

    fifth = admin_login(clinician.username, "wrong")
    right = admin_login(clinician.username, PASSWORD)

    for response in (fifth, right):
        assert response.status_code == 429
        assert b"Too many failed logins for this account from this address" in response.content
        assert b'data-code="locked_out"' in response.content
        assert "sessionid" not in response.cookies
    assert admin_login(other.username, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_lockout_ends_when_an_administrator_removes_it(clinician):
    from axes.utils import reset

    for _ in range(LIMIT):
        token(clinician.username, "wrong")
    assert token(clinician.username, PASSWORD).status_code == 429

    reset(username=clinician.username)  # what deleting the attempt in the admin does

    assert token(clinician.username, PASSWORD).status_code == 200


@pytest.mark.django_db
def test_lockouts_are_visible_to_superusers_in_the_admin_and_to_no_role(clinician, make_user):
    for _ in range(LIMIT):
        token(clinician.username, "wrong")
    assert AccessAttempt.objects.filter(username=clinician.username, failures_since_start=LIMIT).exists()
    admin = make_user(None, is_superuser=True, is_staff=True)
    staff_clinician = make_user("clinician", is_staff=True)

    superuser_client, clinician_client = Client(), Client()
    superuser_client.force_login(admin)
    clinician_client.force_login(staff_clinician)

    page = superuser_client.get("/admin/axes/accessattempt/")
    assert page.status_code == 200
    assert clinician.username.encode() in page.content
    assert clinician_client.get("/admin/axes/accessattempt/").status_code == 403
    # What was posted is not kept with the attempt: no password, in any form.
    attempt = AccessAttempt.objects.get(username=clinician.username)
    assert "wrong" not in attempt.post_data


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_escape_the_lockout(clinician):
    for n in range(LIMIT):
        APIClient().post(
            TOKEN_URL,
            {"username": clinician.username, "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        )
    response = APIClient().post(
        TOKEN_URL,
        {"username": clinician.username, "password": PASSWORD},
        format="json",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert response.status_code == 429


@pytest.mark.django_db
def test_behind_one_proxy_the_address_that_proxy_added_is_the_one_locked_out(clinician, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    def attempt(password: str, forwarded_for: str):
        return APIClient().post(
            TOKEN_URL,
            {"username": clinician.username, "password": password},
            format="json",
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    for n in range(LIMIT):
        # The client forges a first entry; our proxy appends the address it really saw.
        attempt("wrong", f"1.2.3.{n}, 192.0.2.10")

    assert attempt(PASSWORD, "5.6.7.8, 192.0.2.10").status_code == 429
    assert attempt(PASSWORD, "192.0.2.11").status_code == 200  # another client behind the same proxy


@pytest.mark.django_db
def test_a_successful_token_login_forgets_that_users_failures_from_that_address_only(clinician, make_user):
    other = make_user("clinician")
    for _ in range(LIMIT - 1):
        assert token(clinician.username, "wrong").status_code == 401
        assert token(other.username, "wrong").status_code == 401
        assert token(clinician.username, "wrong", address="10.1.2.3").status_code == 401

    assert token(clinician.username, PASSWORD).status_code == 200

    # This user at this address starts again; the other user and the other address do not.
    assert token(clinician.username, "wrong").status_code == 401
    assert token(other.username, "wrong").status_code == 429
    assert token(clinician.username, "wrong", address="10.1.2.3").status_code == 429


@pytest.mark.django_db
def test_the_old_password_of_the_admins_password_change_counts_toward_the_lockout(staff_clinician):
    # A session (a workstation left open) must not allow unlimited guesses of the password that
    # outlives it: a wrong old password is a failed login of that username and address.
    clinician = staff_clinician
    client = Client(REMOTE_ADDR="127.0.0.1")
    client.force_login(clinician)
    url = "/admin/password_change/"

    def change(old: str):
        data = {"old_password": old, "new_password1": "a-New-pass-2026!", "new_password2": "a-New-pass-2026!"}
        return client.post(url, data, REMOTE_ADDR="127.0.0.1")

    first = change("wrong")
    for _ in range(LIMIT - 2):
        change("wrong")
    fifth = change("wrong")
    right = change(PASSWORD)

    assert first.status_code == 200
    assert "incorrect" in first.content.decode()
    assert fifth.status_code == 429
    assert right.status_code == 429
    assert b"Too many failed logins for this account from this address" in right.content
    clinician.refresh_from_db()
    assert clinician.check_password(PASSWORD)
    assert admin_login(clinician.username, PASSWORD).status_code == 429  # the same lockout as the login's


@pytest.mark.django_db
def test_the_admins_password_change_still_changes_a_password_given_the_right_old_one(staff_clinician):
    client = Client()
    client.force_login(staff_clinician)

    response = client.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": "a-New-pass-2026!", "new_password2": "a-New-pass-2026!"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/password_change/done/"
    staff_clinician.refresh_from_db()
    assert staff_clinician.check_password("a-New-pass-2026!")
