import pytest
from django.urls import reverse

from apps.connectors import services
from apps.connectors.models import ProviderConnection, SyncRun
from apps.usage.models import UsageRecord
from tests.connectors.conftest import serve_envelope
from tests.connectors.test_provider_anthropic import USAGE

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, org, member_of):
    client.force_login(member_of(org, "admin"))
    return client


def test_add_a_sandbox_connection_and_its_first_sync_runs(
    admin_client, org, django_capture_on_commit_callbacks
):
    url = reverse("connectors", args=[org.slug])
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"provider": "sandbox", "label": "Demo", "api_key": "sandbox-key"})
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(org=org)
    run = SyncRun.objects.get(connection=connection)
    assert (
        run.status == "succeeded"
        and UsageRecord.objects.filter(org=org, connection_id=connection.pk).exists()
    )
    page = admin_client.get(url).content.decode()
    assert "Demo" in page and "…-key"[-4:] in page and "Sync now" in page
    detail = admin_client.get(reverse("connector", args=[org.slug, connection.pk])).content.decode()
    assert "Succeeded" in detail and "Reconciliation" in detail
    assert "sandbox-key" not in page + detail


def test_a_refused_key_is_a_form_error_and_nothing_is_saved(
    admin_client, org, server, monkeypatch, http_settings
):
    monkeypatch.setattr(services, "HTTP_SETTINGS", http_settings)
    serve_envelope(server, "anthropic-error-401.http.json", USAGE)
    response = admin_client.post(
        reverse("connectors", args=[org.slug]),
        {
            "provider": "anthropic",
            "label": "Claude",
            "api_key": "sk-ant-admin-xyz",
            "base_url": server.url_for(""),
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "refused this key" in html and "sk-ant-admin-xyz" not in html
    assert not ProviderConnection.objects.exists()


def test_sync_now_pause_and_replace_key(admin_client, org, django_capture_on_commit_callbacks):
    connection = services.connection_create(org=org, provider="sandbox", label="Demo", api_key="first-key")
    url = reverse("connector", args=[org.slug, connection.pk])
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "sync"})
    assert SyncRun.objects.get(connection=connection).status == "succeeded"
    admin_client.post(url, {"action": "pause"})
    connection.refresh_from_db()
    assert connection.is_active is False
    admin_client.post(url, {"action": "key", "api_key": "second-key"})
    connection.refresh_from_db()
    assert connection.key_hint == "-key" and "second" not in connection.key_encrypted
    bad = admin_client.post(url, {"action": "backfill", "start": "2026-11-10", "end": "2026-11-01"})
    assert bad.status_code == 302  # a refused window comes back as a message, nothing queued
    assert SyncRun.objects.filter(connection=connection).count() == 1


def test_members_see_but_cannot_change_and_other_orgs_get_404(client, org, other_org, member_of):
    connection = services.connection_create(org=org, provider="sandbox", label="Demo", api_key="k")
    client.force_login(member_of(org, "member"))
    assert client.get(reverse("connectors", args=[org.slug])).status_code == 200
    assert (
        client.post(reverse("connector", args=[org.slug, connection.pk]), {"action": "delete"}).status_code
        == 403
    )
    assert ProviderConnection.objects.filter(pk=connection.pk).exists()
    client.force_login(member_of(other_org, "owner"))
    assert client.get(reverse("connector", args=[org.slug, connection.pk])).status_code == 404
    assert client.get(reverse("connector", args=[other_org.slug, connection.pk])).status_code == 404


def test_a_base_url_typed_without_a_scheme_is_https():
    from apps.connectors.forms import ConnectionForm

    field = ConnectionForm().fields["base_url"]
    assert field.clean("eu.proxy.example.com/v1") == "https://eu.proxy.example.com/v1"
    assert field.clean("http://127.0.0.1:8081") == "http://127.0.0.1:8081"  # a scheme given is kept
