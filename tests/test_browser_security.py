"""Browser-side security, server side: the CSP and other headers, cookie flags in production, session expiry, CSRF
on every form, and log-in throttling under a burst. (The policy in a real browser: tests/e2e/test_security.py.)"""

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
import time_machine
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.budgets import services as budget_services
from apps.budgets.models import AlertChannel
from apps.connectors import services as connector_services
from tests.factories import MembershipFactory, TeamFactory, make_token

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_every_page_carries_a_strict_content_security_policy_and_the_browser_headers(client):
    response = client.get(reverse("login"))
    policy = dict(
        (part.split(" ", 1) + [""])[:2]
        for part in (p.strip() for p in response["Content-Security-Policy"].split(";"))
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'self'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_templates_have_no_inline_script_style_or_event_handler():
    """What the policy forbids is not in the markup: data travels in json_script blocks (type application/json)."""
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        if "email" in path.parts:  # e-mails are not served to browsers; mail clients need inline styles
            continue
        text = path.read_text()
        for pattern in (
            r"<script(?![^>]*\bsrc=)[^>]*>",
            r"<style\b",
            r"\sstyle=",
            r"\son[a-z]+=",
            r"javascript:",
        ):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert offenders == []


def test_production_cookies_and_transport_settings():
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "k: getattr(s, k) for k in ['SESSION_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE', "
        "'SESSION_COOKIE_AGE', 'CSRF_COOKIE_SECURE', 'CSRF_COOKIE_HTTPONLY', 'CSRF_COOKIE_SAMESITE', "
        "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_SSL_REDIRECT', 'X_FRAME_OPTIONS']}))"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("DEBUG", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(
        DEBUG="0",
        DJANGO_SETTINGS_MODULE="spendctl.settings.base",
        DJANGO_READ_DOT_ENV_FILE="0",
        SECRET_KEY="k" * 20 + "-production-secret-key-with-enough-entropy-1234567890",
        FIELD_ENCRYPTION_KEY="Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1rZXktMDA=",
        ALLOWED_HOSTS="spend.example.com",
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == {
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_AGE": 43200,
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_SSL_REDIRECT": True,
        "X_FRAME_OPTIONS": "DENY",
    }


def test_production_sends_hsts_and_secure_cookies(client, settings, org):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    user = MembershipFactory(org=org, role="owner").user
    page = client.get(reverse("login"), secure=True)
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Lax"
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD}, secure=True)
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    assert int(session["max-age"]) == 12 * 3600


def test_a_session_expires_twelve_hours_after_log_in(client, org):
    user = MembershipFactory(org=org, role="owner").user
    home = reverse("dashboard", args=[org.slug])
    with time_machine.travel(NOW, tick=False):
        assert (
            client.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code
            == 302
        )
        assert client.get(home).status_code == 200
    with time_machine.travel(NOW + timedelta(hours=11, minutes=59), tick=False):
        assert client.get(home).status_code == 200  # active use does not extend it ...
    with time_machine.travel(NOW + timedelta(hours=12, seconds=1), tick=False):
        response = client.get(home)  # ... and 12 hours after log-in it is over
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


# -- CSRF on every form --------------------------------------------------------------------------------------------


def _web_routes(patterns=None, prefix=""):
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(("api/", "admin/", "static/", "healthz")):
            continue
        if isinstance(entry, URLResolver):
            yield from _web_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms, self._current = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._current = {
                "method": (attrs.get("method") or "get").lower(),
                "action": attrs.get("action"),
                "csrf": False,
            }
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attrs.get("name") == "csrfmiddlewaretoken":
            self._current["csrf"] = bool(attrs.get("value"))

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


@pytest.fixture
def full_org(org):
    owner = MembershipFactory(org=org, role="owner", user__email="owner@example.test")
    team = TeamFactory(org=org, name="Support")
    budget = budget_services.budget_create(org=org, name="Company", amount=100)
    budget_services.channel_create(org=org, kind=AlertChannel.EMAIL, name="Inbox", recipients=[owner])
    connector_services.connection_create(org=org, provider="sandbox", label="Sandbox", api_key="sandbox-key")
    make_token(org=org, user=owner.user)
    return org, owner.user, {"team": team, "budget": budget}


def test_every_post_form_carries_a_csrf_token_and_is_refused_without_it(full_org):
    org, user, objects = full_org
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    pages = [
        reverse(name, args=[org.slug])
        for name in (
            "dashboard",
            "usage",
            "budgets",
            "budget-new",
            "alerts",
            "notifications",
            "connectors",
            "settings-org",
            "settings-teams",
            "settings-members",
            "settings-tokens",
        )
    ]
    pages += [
        reverse("budget", args=[org.slug, objects["budget"].pk]),
        reverse("budget-edit", args=[org.slug, objects["budget"].pk]),
        reverse("settings-team-edit", args=[org.slug, objects["team"].pk]),
        reverse("password_change"),
    ]
    posted = set()
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        parser = _Forms()
        parser.feed(response.content.decode())
        for form in parser.forms:
            if form["method"] != "post":
                continue
            assert form["csrf"], f"a POST form on {url} has no CSRF token"
            action = form["action"] or url
            refused = client.post(action, {})
            assert refused.status_code == 403, (url, action)
            posted.add(re.sub(r"\d+", "N", action))
    # every kind of change a person can make in the UI was among them
    assert len(posted) >= 12, sorted(posted)


# Exempt on purpose, each with its reason. Nothing else may be.
CSRF_EXEMPT = {
    # RFC 8058 one-click unsubscribe: mail clients POST it without a session or a CSRF cookie. It acts only on the
    # signed token in its URL (never on the session), so a forged POST can do nothing a click on the link can't.
    "/reports/unsubscribe/1/": 400,  # "1" is not a valid signed token: refused by the signature check
}


def test_no_web_view_is_exempt_from_csrf(full_org):
    """Every web route (with any ids: the check runs before the view) refuses a POST without a token, but for the
    listed exemptions, which refuse it in their own way."""
    org, user, _ = full_org
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    routes = list(_web_routes())
    assert len(routes) >= 25
    for route in routes:
        url = "/" + re.sub(
            r"<(?:\w+:)?(\w+)>", lambda m: org.slug if m.group(1) == "org_slug" else "1", route
        )
        url = url.replace("^", "").replace("$", "")
        assert client.post(url, {}).status_code == CSRF_EXEMPT.get(url, 403), url


# -- log-in throttling ---------------------------------------------------------------------------------------------


def test_a_burst_of_failed_log_ins_locks_the_account_until_the_cool_off(client, org, settings):
    user = MembershipFactory(org=org, role="owner", user__email="target@example.test").user
    login = reverse("login")
    with time_machine.travel(NOW, tick=False):
        answers = [
            client.post(login, {"username": user.username, "password": f"guess-{n}"}).status_code
            for n in range(20)
        ]
        limit = settings.AXES_FAILURE_LIMIT
        assert answers[: limit - 1] == [200] * (limit - 1)  # the form again, with an error
        assert answers[limit - 1 :] == [429] * (20 - limit + 1)  # locked from the limit on
        refused = client.post(login, {"username": user.username, "password": PASSWORD})
        assert refused.status_code == 429 and "_auth_user_id" not in client.session
    cool_off = settings.AXES_COOLOFF_TIME
    with time_machine.travel(NOW + cool_off - timedelta(seconds=5), tick=False):
        # still locked; and a try while locked counts as a failure, so the cool-off starts again from here
        assert client.post(login, {"username": user.username, "password": PASSWORD}).status_code == 429
    with time_machine.travel(NOW + cool_off + timedelta(seconds=5), tick=False):
        assert client.post(login, {"username": user.username, "password": PASSWORD}).status_code == 429
    with time_machine.travel(
        NOW + 2 * cool_off + timedelta(seconds=10), tick=False
    ):  # a cool-off after the last try
        response = client.post(login, {"username": user.username, "password": PASSWORD})
        assert response.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)
