"""The outbound URL guard. Decisions are tested on addresses directly (a stub resolver, no packets); end-to-end
refusals use loopback addresses only."""

import httpcore
import httpx
import pytest

from apps.budgets import services as budget_services
from apps.budgets.models import WebhookDelivery
from apps.connectors import services as connector_services
from spendctl.common import outbound
from tests.helpers import assert_error

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.5.4",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "224.0.0.1",
    "239.255.255.250",
    "0.0.0.0",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "2002:7f00:1::1",
    "2001:db8::1",
    "fe80::1%eth0",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert outbound.address_allowed(address) is False


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert outbound.address_allowed(address) is True


@pytest.fixture
def production(settings):
    settings.ALLOW_PRIVATE_URLS = False
    settings.DEBUG = False
    return settings


def stub(*addresses):
    calls = []

    def resolve(host, port):
        calls.append(host)
        return list(addresses)

    resolve.calls = calls
    return resolve


def test_check_url_decisions(production):
    outbound.check_url("https://api.example.com/v1", resolver=stub("93.184.216.34"))
    with pytest.raises(outbound.RefusedURL, match="private"):
        outbound.check_url("https://metadata.example/", resolver=stub("169.254.169.254"))
    with pytest.raises(outbound.RefusedURL, match="https"):
        outbound.check_url("http://api.example.com/", resolver=stub("93.184.216.34"))
    with pytest.raises(outbound.RefusedURL, match="http or https"):
        outbound.check_url("ftp://files.example.com/", resolver=stub("93.184.216.34"))
    with pytest.raises(outbound.RefusedURL, match="does not resolve"):
        outbound.check_url("https://nowhere.example/", resolver=lambda h, p: (_ for _ in ()).throw(OSError()))
    # a name with one private and one public address may only be reached at the public one
    assert outbound.allowed_addresses("mixed.example", 443, resolver=stub("10.0.0.1", "93.184.216.34")) == [
        "93.184.216.34"
    ]


def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(production, monkeypatch):
    connected = []
    monkeypatch.setattr(
        httpcore.SyncBackend, "connect_tcp", lambda self, host, port, **kw: connected.append(host)
    )
    resolver = stub("93.184.216.34")
    outbound.GuardedBackend(resolver).connect_tcp("rebinding.example", 443)
    assert connected == ["93.184.216.34"] and resolver.calls == ["rebinding.example"]
    with pytest.raises(outbound.RefusedAddress):
        outbound.GuardedBackend(stub("127.0.0.1")).connect_tcp("rebinding.example", 443)
    assert connected == ["93.184.216.34"]


@pytest.mark.django_db
def test_refused_urls_are_400_field_errors_when_saved(api, org, production):
    client = api(org)
    assert_error(
        client.post(
            "/api/v1/alert-channels",
            {"kind": "webhook", "name": "x", "url": "https://127.0.0.1:9/hook"},
            format="json",
        ),
        400,
        fields=["url"],
    )
    assert_error(
        client.post(
            "/api/v1/alert-channels",
            {"kind": "webhook", "name": "x", "url": "https://localhost/hook"},
            format="json",
        ),
        400,
        fields=["url"],
    )
    assert_error(
        client.post(
            "/api/v1/connectors",
            {"provider": "sandbox", "label": "x", "api_key": "k", "base_url": "https://[::1]:8443/"},
            format="json",
        ),
        400,
        fields=["base_url"],
    )


@pytest.mark.django_db
def test_a_refused_address_at_use_is_a_recorded_failure_and_no_request_is_sent(org, httpserver, settings):
    channel, _ = budget_services.channel_create(
        org=org, kind="webhook", name="x", url=httpserver.url_for("/h")
    )
    settings.ALLOW_PRIVATE_URLS = False  # e.g. the policy changed after the URL was saved
    settings.DEBUG = True  # keep http allowed so the address decides
    delivery = budget_services.channel_send_test(channel=channel)
    assert delivery.status == "failed" and delivery.last_error.startswith("Refused:")
    assert len(httpserver.log) == 0


@pytest.mark.django_db
def test_a_connector_pointed_at_a_private_address_fails_visibly(org, httpserver, settings):
    from apps.connectors.providers.base import ProviderError

    connection = connector_services.connection_create(
        org=org,
        provider="openai",
        label="x",
        api_key="sk-admin-x",
        base_url=httpserver.url_for(""),
        test=False,
    )
    settings.ALLOW_PRIVATE_URLS = False
    settings.DEBUG = True
    run = connector_services.run_create(connection=connection, kind="manual")
    with pytest.raises(ProviderError, match="private"):
        connector_services.run_execute(run=run)
    connection.refresh_from_db()
    assert "private" in connection.last_error and len(httpserver.log) == 0


@pytest.mark.django_db
def test_redirects_are_not_followed(org, httpserver):
    channel, _ = budget_services.channel_create(
        org=org, kind="webhook", name="x", url=httpserver.url_for("/r")
    )
    httpserver.expect_request("/r").respond_with_data(
        "", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    delivery = budget_services.channel_send_test(channel=channel)
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == ("failed", 302, "HTTP 302")
    assert len(httpserver.log) == 1
    assert WebhookDelivery.objects.filter(channel=channel).count() == 1


def test_the_guarded_client_never_follows_redirects():
    assert outbound.client(timeout=httpx.Timeout(1.0)).follow_redirects is False
