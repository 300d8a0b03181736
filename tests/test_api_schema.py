"""The published schema tells the truth (what `.ci/fuzz` holds every response to), and regression tests for what the
API fuzzing run found: each test names its finding."""

import json
import socket
import time

import pytest
from django.core import mail

from apps.budgets import services as budget_services
from apps.budgets.models import AlertChannel, WebhookDelivery
from apps.connectors import services as connector_services
from apps.connectors.models import ProviderConnection
from spendctl.common.exceptions import NotFound
from tests.factories import MembershipFactory
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def test_every_operation_documents_its_errors_in_the_one_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message", "fields"}
    count = 0
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        expected = {"401", "403", "429"}
        if "{" in path:
            expected |= {"400", "404"}
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for code in expected:
            assert responses[code]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, (
                method,
                path,
            )
        assert "Retry-After" in responses["429"]["headers"]
        count += 1
    assert count >= 50


def test_409_is_documented_where_a_state_conflict_can_happen(schema):
    ops = {(m, p): o for p, m, o in _operations(schema)}
    for key in [
        ("POST", "/api/v1/reprice/{id}/apply"),
        ("POST", "/api/v1/reprice/{id}/undo"),
        ("POST", "/api/v1/connectors/{id}/sync"),
    ]:
        assert ops[key]["responses"]["409"]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF


def test_csv_downloads_are_documented(schema, api, org):
    """Finding: `?format=csv` answered text/csv, which the schema did not list."""
    # /reports: found by the fuzzing run after the reports work merged
    for path in ("/api/v1/spend", "/api/v1/usage", "/api/v1/reports"):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/csv"}, path
        response = api(org, scopes=["read"]).get(path, {"format": "csv"})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")


def test_reconciliation_is_a_plain_list_as_documented(schema, api, org):
    """Finding: the schema promised a paginated object, the view answers a list of days."""
    documented = schema["paths"]["/api/v1/connectors/{id}/reconciliation"]["get"]["responses"]["200"]
    body_schema = documented["content"]["application/json"]["schema"]
    assert body_schema["type"] == "array"
    params = {
        p["name"] for p in schema["paths"]["/api/v1/connectors/{id}/reconciliation"]["get"]["parameters"]
    }
    assert "page" not in params and "page_size" not in params
    connection = connector_services.connection_create(
        org=org, provider="sandbox", label="Sandbox", api_key="sandbox-key"
    )
    response = api(org, scopes=["read"]).get(
        f"/api/v1/connectors/{connection.pk}/reconciliation", {"start": "2026-11-01", "end": "2026-11-04"}
    )
    assert response.status_code == 200
    assert isinstance(response.json(), list)


def test_an_unknown_api_path_is_a_json_404_for_every_method(client):
    """Finding: a POST/PATCH/DELETE to a path no route matches (e.g. /api/v1/teams/0.5) got Django's HTML CSRF
    page (403) instead of the API's 404."""
    for method in ("get", "post", "patch", "delete", "put"):
        response = getattr(client, method)("/api/v1/teams/0.5", content_type="application/json")
        assert_error(response, 404, "not_found")


def test_channel_test_answers_match_the_schema(schema, api, org):
    """Finding: a test on an e-mail channel answered {"sent": "e-mail"}, the schema promised a delivery."""
    documented = schema["paths"]["/api/v1/alert-channels/{id}/test"]["post"]["responses"]["200"]
    ref = documented["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    one_of = {s["$ref"].rsplit("/", 1)[1] for s in schema["components"]["schemas"][ref]["oneOf"]}
    assert one_of == {"Delivery", "EmailTestSent"}
    owner = MembershipFactory(org=org, role="owner", user__email="owner@example.test")
    channel, _ = budget_services.channel_create(
        org=org, kind=AlertChannel.EMAIL, name="Inbox", recipients=[owner]
    )
    response = api(org).post(f"/api/v1/alert-channels/{channel.pk}/test")
    assert response.status_code == 200
    assert response.json() == {"sent": "e-mail"}
    assert mail.outbox[-1].to == ["owner@example.test"]


def test_a_channel_deleted_under_a_test_send_is_a_404_and_leaves_no_delivery(org):
    """Finding (a 500): a channel deleted by a concurrent request while its test was being sent left a delivery
    pointing at no channel, and the commit failed on the foreign key. The test now locks the channel row first."""
    channel, _ = budget_services.channel_create(
        org=org, kind=AlertChannel.WEBHOOK, name="Hook", url="http://127.0.0.1:9/hook"
    )
    stale = AlertChannel.objects.get(pk=channel.pk)
    AlertChannel.objects.filter(pk=channel.pk).delete()
    with pytest.raises(NotFound):
        budget_services.channel_send_test(channel=stale)
    assert not WebhookDelivery.objects.filter(channel_id=channel.pk).exists()


def test_a_connector_can_be_created_inactive_with_its_trailing_window(api, org):
    """Finding (a 500): POST /api/v1/connectors with `is_active` or `trailing_days` (both writable in the schema)
    crashed: the service did not take them."""
    response = api(org).post(
        "/api/v1/connectors",
        {
            "provider": "sandbox",
            "label": "Paused",
            "api_key": "sandbox-key",
            "is_active": False,
            "trailing_days": 5,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["is_active"] is False and response.json()["trailing_days"] == 5
    connection = ProviderConnection.objects.get(pk=response.json()["id"])
    assert (connection.is_active, connection.trailing_days) == (False, 5)
    bad = api(org).post(
        "/api/v1/connectors",
        {"provider": "sandbox", "label": "Bad", "api_key": "k", "trailing_days": 0},
        format="json",
    )
    assert_error(bad, 400, "invalid", fields=["trailing_days"])


def test_testing_a_key_on_save_gives_up_quickly_on_an_unreachable_provider(api, org):
    """Finding: a base URL that refused connections held the request for the sync's retry schedule (5 attempts,
    ~15 s of back-off). Saving now makes two quick attempts and answers with a field error."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    started = time.monotonic()
    response = api(org).post(
        "/api/v1/connectors",
        {
            "provider": "openai",
            "label": "Down",
            "api_key": "sk-admin-x",
            "base_url": f"http://127.0.0.1:{port}",
        },
        format="json",
    )
    assert_error(response, 400, "invalid", fields=["base_url"])
    assert time.monotonic() - started < 5
    assert connector_services.VALIDATE_HTTP_SETTINGS.max_attempts == 2
    assert not ProviderConnection.objects.filter(label="Down").exists()
