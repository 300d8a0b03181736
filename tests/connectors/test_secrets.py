"""Provider keys and API tokens never appear in logs, error messages, exception reports, Celery task arguments or
results, the Django admin, or API responses after creation. One test per place, over real flows: the provider is
replayed on loopback and echoes the key back in its error bodies and headers, as some proxies do."""

import inspect
import json
import logging
import sys

import httpx
import pytest
from celery import signals
from django.core import mail
from django.core.signals import got_request_exception
from django.db import connections
from django.test import Client
from django.views.debug import ExceptionReporter
from werkzeug import Response

from apps.audit.models import AuditEvent
from apps.connectors import services, tasks
from apps.connectors.models import ProviderConnection, ProviderCostRecord, SyncRun
from apps.orgs.models import ApiToken
from apps.usage.models import UsageRecord
from spendctl.celery import app as celery_app
from spendctl.common import crypto
from tests.connectors.conftest import Query, sample_bytes
from tests.connectors.test_provider_anthropic import (
    COSTS,
    COSTS_QUERY,
    NEXT_COSTS,
    NEXT_USAGE,
    USAGE,
    USAGE_QUERY,
)

pytestmark = pytest.mark.django_db
# Not shaped like "sk-…": only exact-value redaction can hide these, not the key-shaped pattern.
KEY = "zz-admin-Q7x9T2mK4pL8vN3bR6wY1cF5"
KEY2 = "zz-admin-rotated-H3jD8sW2qE6tU9oI"
KEY3 = "zz-admin-refused-V5nB1xC7zA4sD2fG"
SYNC = {"start": "2026-11-16", "end": "2026-11-20"}


@pytest.fixture(autouse=True)
def replay_options(monkeypatch, http_settings):
    monkeypatch.setattr(
        services, "CLIENT_OPTIONS", {"anthropic": {"usage_page_limit": 2, "cost_page_limit": 2}}
    )
    monkeypatch.setattr(services, "HTTP_SETTINGS", http_settings)
    monkeypatch.setattr(tasks, "MAX_RETRIES", 0)
    celery_app.conf.task_eager_propagates = False
    yield
    celery_app.conf.task_eager_propagates = True


@pytest.fixture
def celery_calls():
    """Every task run (eagerly, in process): name, args, kwargs and result, as a worker would receive them."""
    calls = []

    def before(task_id, task, args, kwargs, **_):
        calls.append({"task": task.name, "args": list(args), "kwargs": dict(kwargs)})

    def after(task_id, task, args, kwargs, retval, **_):
        calls.append({"task": task.name, "result": repr(retval)})

    signals.task_prerun.connect(before, weak=False)
    signals.task_postrun.connect(after, weak=False)
    yield calls
    signals.task_prerun.disconnect(before)
    signals.task_postrun.disconnect(after)


@pytest.fixture
def sql_logged():
    """Every SQL statement and its parameters logged (as with DEBUG=True), so stored values are checked too."""
    db = connections["default"]
    db.force_debug_cursor = True
    yield
    db.force_debug_cursor = False


def serve_pages(server, key):
    """The recorded Anthropic usage and cost pages, answered only to this key."""
    headers = {"x-api-key": key}
    for path, query, first, second, nxt in (
        (
            USAGE,
            USAGE_QUERY,
            "anthropic-usage-report-messages-page1.json",
            "anthropic-usage-report-messages-page2.json",
            NEXT_USAGE,
        ),
        (
            COSTS,
            COSTS_QUERY,
            "anthropic-cost-report-page1.json",
            "anthropic-cost-report-page2.json",
            NEXT_COSTS,
        ),
    ):
        server.expect_request(path, query_string=Query(query), headers=headers).respond_with_data(
            sample_bytes(first), content_type="application/json"
        )
        server.expect_request(
            path, query_string=Query([*query, ("page", nxt)]), headers=headers
        ).respond_with_data(sample_bytes(second), content_type="application/json")


def accept_key(server, key):
    """The one cheap call that tests a key on save."""
    server.expect_oneshot_request(USAGE, headers={"x-api-key": key}).respond_with_data(
        sample_bytes("anthropic-usage-report-messages-page2.json"), content_type="application/json"
    )


def echo_key(status):
    """A provider (or proxy) that echoes the key it was sent in its error body and a header."""

    def handler(request):
        sent = request.headers.get("x-api-key", "")
        body = {"error": {"type": "invalid_request_error", "message": f"key {sent} may not read this report"}}
        return Response(
            json.dumps(body), status=status, headers={"X-Echo-Key": sent}, content_type="application/json"
        )

    return handler


def assert_absent(blob: str, *secrets: str, where: str):
    for secret in secrets:
        assert secret not in blob, f"a secret appears in {where}"
        assert secret[-16:] not in blob, f"part of a secret appears in {where}"


def test_a_whole_flow_logged_at_debug_never_shows_a_key_or_token(
    api, org, server, member_of, caplog, celery_calls, django_capture_on_commit_callbacks, sql_logged
):
    """Create a connection, a sync the provider refuses while echoing the key (400, then 401), a refused and an
    accepted key rotation, a token created, used and revoked: every log line at DEBUG (SQL included), every answer,
    e-mail, stored error, audit event and Celery call is free of every secret."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    member_of(org, "owner", user__email="boss@example.test")
    client = api(org)
    answers = []

    def call(method, url, data=None, expect=None):
        with django_capture_on_commit_callbacks(execute=True):
            response = getattr(client, method)(url, data or {}, format="json")
        if expect:
            assert response.status_code == expect, response.content
        answers.append(response.content.decode())
        return response

    accept_key(server, KEY)
    conn = call(
        "post",
        "/api/v1/connectors",
        {"provider": "anthropic", "label": "Claude", "api_key": KEY, "base_url": server.url_for("")},
        201,
    ).json()

    server.expect_oneshot_request(USAGE).respond_with_handler(echo_key(400))
    run = call("post", f"/api/v1/connectors/{conn['id']}/sync", SYNC, 202).json()
    assert SyncRun.objects.get(pk=run["id"]).status == "failed"
    server.expect_oneshot_request(USAGE).respond_with_handler(echo_key(401))
    run = call("post", f"/api/v1/connectors/{conn['id']}/sync", SYNC, 202).json()
    failed = SyncRun.objects.get(pk=run["id"])
    assert failed.status == "failed" and "may not read" in failed.error  # the reason is kept, the key is not
    assert ProviderConnection.objects.get(pk=conn["id"]).status == "needs_key" and len(mail.outbox) == 1

    server.expect_oneshot_request(USAGE).respond_with_handler(echo_key(401))
    refused = call("patch", f"/api/v1/connectors/{conn['id']}", {"api_key": KEY3}, 400).json()
    assert "refused" in refused["error"]["fields"]["api_key"][0]
    accept_key(server, KEY2)
    call("patch", f"/api/v1/connectors/{conn['id']}", {"api_key": KEY2}, 200)
    for url in (
        "/api/v1/connectors",
        f"/api/v1/connectors/{conn['id']}",
        f"/api/v1/connectors/{conn['id']}/runs",
    ):
        call("get", url, expect=200)

    created = client.post("/api/v1/tokens", {"name": "CI", "scopes": ["read"]}, format="json")
    token = created.json()["token"]  # the one answer that carries it
    user = Client()
    assert user.get("/api/v1/org", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    call("get", "/api/v1/tokens", expect=200)
    call("get", f"/api/v1/tokens/{created.json()['id']}", expect=200)
    call("delete", f"/api/v1/tokens/{created.json()['id']}", expect=204)
    refused_token = user.get("/api/v1/org", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert refused_token.status_code == 401
    answers.append(refused_token.content.decode())

    secrets = (KEY, KEY2, KEY3, token, client.plaintext)
    assert (
        "sync run" in caplog.text and "INSERT INTO" in caplog.text
    )  # the capture really saw the flow and its SQL
    assert_absent(caplog.text, *secrets, where="the logs")
    assert_absent("\n".join(answers), *secrets, where="an API answer")
    assert_absent("\n".join(f"{m.subject}\n{m.body}" for m in mail.outbox), *secrets, where="an e-mail")
    stored = [r.error for r in SyncRun.objects.all()] + [
        c.last_error for c in ProviderConnection.objects.all()
    ]
    assert_absent("\n".join(stored), *secrets, where="a stored error")
    events = [(e.actor_label, e.target_label, e.changes) for e in AuditEvent.objects.all()]
    assert len(events) >= 5
    assert_absent(json.dumps(events), *secrets, where="the audit trail")
    assert {c["task"] for c in celery_calls} >= {"connectors.sync_run"}
    assert_absent(json.dumps(celery_calls), *secrets, where="Celery task arguments or results")


def test_celery_tasks_take_ids_only():
    import importlib
    import importlib.util

    from django.apps import apps

    for config in apps.get_app_configs():
        if config.name.startswith("apps.") and importlib.util.find_spec(f"{config.name}.tasks"):
            importlib.import_module(f"{config.name}.tasks")
    ours = {
        name: t for name, t in celery_app.tasks.items() if t.__module__.startswith(("apps.", "spendctl."))
    }
    assert {"connectors.sync_run", "budgets.webhook_deliver", "usage.price_unpriced"} <= set(ours)
    for name, task in ours.items():
        params = [p for p in inspect.signature(task.run).parameters.values() if p.name != "self"]
        for p in params:
            # Ids, plus one plain value that is never a secret: a report's month as "YYYY-MM".
            is_id = p.name.endswith("_id") and p.annotation in (int, "int")
            is_month = p.name == "month" and p.annotation in (str, "str")
            assert is_id or is_month, f"{name} takes {p.name}: {p.annotation}"


def test_tasks_enqueued_by_a_sync_carry_only_the_run_id(
    api, org, server, celery_calls, django_capture_on_commit_callbacks
):
    serve_pages(server, KEY)
    conn = services.connection_create(
        org=org, provider="anthropic", label="C", api_key=KEY, base_url=server.url_for(""), test=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api(org).post(f"/api/v1/connectors/{conn.pk}/sync", SYNC, format="json")
    sync_calls = [c for c in celery_calls if c["task"] == "connectors.sync_run" and "args" in c]
    assert sync_calls == [{"task": "connectors.sync_run", "args": [response.json()["id"]], "kwargs": {}}]
    assert [c["result"] for c in celery_calls if c["task"] == "connectors.sync_run" and "result" in c] == [
        "'succeeded'"
    ]


def _reports():
    """Exception reports as Django's error reporter builds them (mail_admins, error pages) for each 500."""
    reports = []

    def capture(sender, request=None, **kwargs):
        reporter = ExceptionReporter(request, *sys.exc_info())
        reports.append(reporter.get_traceback_text() + reporter.get_traceback_html())

    got_request_exception.connect(capture, weak=False)
    return reports, lambda: got_request_exception.disconnect(capture)


@pytest.fixture
def exploding_transport(monkeypatch, settings):
    """A failure nobody planned for, deep under the code that holds the key (in the HTTP client that sends it)."""
    settings.DEBUG = False  # production: the reporter's filter is active

    def explode(self, request, **kwargs):
        raise RuntimeError("connection reset while sending")

    monkeypatch.setattr(httpx.Client, "send", explode)
    reports, stop = _reports()
    yield reports
    stop()


def test_an_exception_report_from_the_api_shows_neither_the_key_nor_the_token(
    api, org, server, exploding_transport, caplog
):
    client = api(org)
    client.raise_request_exception = False
    response = client.post(
        "/api/v1/connectors",
        {"provider": "anthropic", "label": "Claude", "api_key": KEY, "base_url": server.url_for("")},
        format="json",
    )
    assert response.status_code == 500 and response.json()["error"]["code"] == "server_error"
    [report] = exploding_transport
    # a real report: the exception, the frames that held the key, the cleansed values
    assert "connection reset while sending" in report and "_validate_key" in report and "********" in report
    assert "HTTP_AUTHORIZATION" in report
    assert_absent(report, KEY, client.plaintext, where="the exception report")
    assert_absent(
        caplog.text + response.content.decode(), KEY, client.plaintext, where="the 500 log or answer"
    )
    assert not ProviderConnection.objects.exists()


def test_an_exception_report_from_the_web_form_hides_the_posted_key(
    org, member_of, server, exploding_transport
):
    web = Client(raise_request_exception=False)
    web.force_login(member_of(org, "admin"))
    response = web.post(
        f"/o/{org.slug}/connectors/",
        {"provider": "anthropic", "label": "Claude", "api_key": KEY, "base_url": server.url_for("")},
    )
    assert response.status_code == 500
    [report] = exploding_transport
    assert "api_key" in report and "connection reset while sending" in report
    assert_absent(report, KEY, where="the exception report")


def test_an_exception_report_during_a_sync_shows_no_key(org, server, exploding_transport):
    conn = services.connection_create(
        org=org, provider="anthropic", label="C", api_key=KEY, base_url=server.url_for(""), test=False
    )
    run = services.run_create(connection=conn, kind=SyncRun.MANUAL)
    with pytest.raises(RuntimeError) as raised:
        services.run_execute(run=run)
    report = ExceptionReporter(None, raised.type, raised.value, raised.tb).get_traceback_text()
    assert "run_execute" in report and "connection reset while sending" in report
    assert_absent(report, KEY, where="the exception report of a sync")


def test_the_admin_shows_no_key_secret_or_token(admin_client, org, api):
    from apps.budgets.services import channel_create

    conn = services.connection_create(org=org, provider="sandbox", label="Sandbox", api_key=KEY)
    channel, secret = channel_create(org=org, kind="webhook", name="Hook", url="https://example.test/h")
    client = api(org)
    token = ApiToken.objects.get(pk=client.token.pk)
    pages = {
        f"/admin/connectors/providerconnection/{conn.pk}/change/": "Sandbox",
        "/admin/connectors/providerconnection/": "Sandbox",
        f"/admin/orgs/apitoken/{token.pk}/change/": token.prefix,
        "/admin/orgs/apitoken/": token.prefix,
        f"/admin/budgets/alertchannel/{channel.pk}/change/": "Hook",
    }
    for url, shown in pages.items():
        response = admin_client.get(url)
        html = response.content.decode()
        assert response.status_code == 200 and shown in html, url
        assert_absent(html, KEY, secret, client.plaintext, token.token_hash, where=url)
        assert conn.key_encrypted not in html and channel.secret_encrypted not in html
    assert (
        admin_client.post(
            f"/admin/connectors/providerconnection/{conn.pk}/change/", {"label": "x"}
        ).status_code
        == 403
    )


def test_api_answers_after_creation_never_carry_the_secret(api, org):
    client = api(org)
    conn = client.post(
        "/api/v1/connectors", {"provider": "sandbox", "label": "S", "api_key": KEY}, format="json"
    )
    assert conn.status_code == 201
    hook = client.post(
        "/api/v1/alert-channels",
        {"kind": "webhook", "name": "H", "url": "https://example.test/h"},
        format="json",
    )
    secret = hook.json()["secret"]
    made = client.post("/api/v1/tokens", {"name": "T", "scopes": ["read"]}, format="json").json()
    assert secret.startswith("whsec_") and made["token"].startswith("spc_")
    assert_absent(conn.content.decode(), KEY, where="the connection's create answer")
    later = [
        client.get(u).content.decode()
        for u in (
            "/api/v1/connectors",
            f"/api/v1/connectors/{conn.json()['id']}",
            "/api/v1/alert-channels",
            f"/api/v1/alert-channels/{hook.json()['id']}",
            "/api/v1/tokens",
            f"/api/v1/tokens/{made['id']}",
            "/api/v1/audit",
        )
    ]
    later.append(
        client.patch(
            f"/api/v1/connectors/{conn.json()['id']}", {"label": "S2"}, format="json"
        ).content.decode()
    )
    assert_absent("\n".join(later), KEY, secret, made["token"], client.plaintext, where="a later API answer")


def _history(conn):
    return (
        SyncRun.objects.filter(connection=conn).count(),
        UsageRecord.objects.filter(org=conn.org).count(),
        ProviderCostRecord.objects.filter(connection=conn).count(),
    )


def test_rotating_a_key_keeps_the_history_and_the_next_sync_uses_the_new_key(
    api, org, server, member_of, django_capture_on_commit_callbacks
):
    serve_pages(server, KEY)
    conn = services.connection_create(
        org=org, provider="anthropic", label="C", api_key=KEY, base_url=server.url_for(""), test=False
    )
    client = api(org)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(f"/api/v1/connectors/{conn.pk}/sync", SYNC, format="json").json()
    assert SyncRun.objects.get(pk=first["id"]).status == "succeeded"
    conn.refresh_from_db()
    history, synced_through = _history(conn), conn.synced_through
    assert history[1] > 0 and history[2] > 0 and synced_through is not None

    # API: a refused key changes nothing; an accepted one replaces the stored key, and only the key
    server.expect_oneshot_request(USAGE).respond_with_handler(echo_key(401))
    assert client.patch(f"/api/v1/connectors/{conn.pk}", {"api_key": KEY3}, format="json").status_code == 400
    conn.refresh_from_db()
    assert crypto.decrypt(conn.key_encrypted) == KEY
    accept_key(server, KEY2)
    answer = client.patch(f"/api/v1/connectors/{conn.pk}", {"api_key": KEY2}, format="json")
    assert answer.status_code == 200 and answer.json()["key_hint"] == KEY2[-4:]
    conn.refresh_from_db()
    assert crypto.decrypt(conn.key_encrypted) == KEY2  # the old key is gone from the row
    assert _history(conn) == history and conn.synced_through == synced_through

    # the next sync authenticates with the new key and converges on the same ledger
    server.clear_all_handlers()
    serve_pages(server, KEY2)
    before = len(server.log)
    with django_capture_on_commit_callbacks(execute=True):
        second = client.post(f"/api/v1/connectors/{conn.pk}/sync", SYNC, format="json").json()
    run = SyncRun.objects.get(pk=second["id"])
    assert run.status == "succeeded" and run.records_replaced == history[1]
    assert {req.headers["x-api-key"] for req, _ in server.log[before:]} == {KEY2}
    assert _history(conn) == (history[0] + 1, history[1], history[2])

    # the web form does the same
    web = Client()
    web.force_login(member_of(org, "admin"))
    accept_key(server, KEY3)
    response = web.post(f"/o/{org.slug}/connectors/{conn.pk}/", {"action": "key", "api_key": KEY3})
    assert response.status_code == 302
    conn.refresh_from_db()
    assert crypto.decrypt(conn.key_encrypted) == KEY3 and _history(conn) == (
        history[0] + 1,
        history[1],
        history[2],
    )
    assert [e.action for e in AuditEvent.objects.filter(action="connector.key_rotated")] == [
        "connector.key_rotated"
    ] * 2


def test_rotating_a_key_while_a_sync_moves_on_keeps_the_syncs_progress(org):
    from datetime import date

    from django.utils import timezone

    conn = services.connection_create(org=org, provider="sandbox", label="S", api_key="sandbox-key-0001")
    stale = ProviderConnection.objects.get(
        pk=conn.pk
    )  # loaded by the page before a sync commits its progress
    ProviderConnection.objects.filter(pk=conn.pk).update(
        synced_through=date(2026, 11, 19), last_sync_at=timezone.now()
    )
    services.connection_update(connection=stale, api_key="sandbox-key-0002")
    conn.refresh_from_db()
    assert conn.synced_through == date(2026, 11, 19) and conn.last_sync_at is not None
    assert crypto.decrypt(conn.key_encrypted) == "sandbox-key-0002" and conn.key_hint == "0002"
