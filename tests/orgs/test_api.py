from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.orgs.models import ApiToken, Team
from apps.orgs.throttling import TokenRateThrottle
from tests.factories import TeamFactory
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def test_org_endpoint_returns_the_tokens_org(api, org, other_org):
    response = api(org, scopes=["read"]).get("/api/v1/org")
    assert response.status_code == 200
    assert response.json() == {
        "id": org.pk,
        "name": "Acme Test",
        "slug": "acme-test",
        "currency": "USD",
        "timezone": "UTC",
        "created_at": response.json()["created_at"],
    }


def test_teams_crud(api, org):
    client = api(org)
    created = client.post("/api/v1/teams", {"name": "  Support ", "description": "Tickets"}, format="json")
    assert created.status_code == 201, created.content
    team_id = created.json()["id"]
    assert Team.objects.get(pk=team_id).name == "Support"
    assert client.get("/api/v1/teams").json()["results"][0]["name"] == "Support"
    patched = client.patch(f"/api/v1/teams/{team_id}", {"description": "Ticket triage"}, format="json")
    assert patched.status_code == 200 and patched.json()["description"] == "Ticket triage"
    assert client.delete(f"/api/v1/teams/{team_id}").status_code == 204
    assert not Team.objects.filter(pk=team_id).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 101}, "name"),
        ({"name": ""}, "name"),
        ({"name": 12, "description": ["list"]}, "description"),
        ({"name": "Ok", "colour": "red"}, "colour"),
        ({}, "name"),
    ],
)
def test_team_bad_input_is_a_400_with_field_errors(api, org, body, field):
    response = api(org).post("/api/v1/teams", body, format="json")
    assert_error(response, 400, "invalid", fields=[field])
    assert Team.objects.count() == 0


def test_duplicate_team_name_is_a_400_case_insensitive(api, org):
    TeamFactory(org=org, name="Search")
    response = api(org).post("/api/v1/teams", {"name": "search"}, format="json")
    assert_error(response, 400, "invalid", fields=["name"])
    assert Team.objects.filter(org=org).count() == 1


def test_malformed_json_is_a_400(api, org):
    response = api(org).generic("POST", "/api/v1/teams", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_non_object_body_is_a_400(api, org):
    response = api(org).post("/api/v1/teams", [1, 2], format="json")
    assert_error(response, 400, "invalid")


def test_unknown_api_path_is_a_json_404(api, org):
    assert_error(api(org).get("/api/v1/no-such-thing"), 404, "not_found")


def test_members_list(api, org, member_of):
    member_of(org, "finance", user__email="fin@example.test")
    body = api(org, scopes=["read"]).get("/api/v1/members").json()
    roles = {m["email"]: m["role"] for m in body["results"]}
    assert roles["fin@example.test"] == "finance"
    assert body["count"] == 2  # the token's creator is an admin member too


# --- tokens ------------------------------------------------------------------------------------------------------


def test_token_is_shown_once_and_stored_as_a_hash(api, org):
    client = api(org)
    response = client.post("/api/v1/tokens", {"name": "ingest bot", "scopes": ["ingest"]}, format="json")
    assert response.status_code == 201, response.content
    plaintext = response.json()["token"]
    assert plaintext.startswith("spc_") and len(plaintext) > 40
    row = ApiToken.objects.get(pk=response.json()["id"])
    assert plaintext not in str(row.__dict__.values())
    assert row.prefix == plaintext[:12]
    listed = client.get("/api/v1/tokens").json()["results"]
    assert all("token" not in t for t in listed)
    assert plaintext not in str(listed)
    detail = client.get(f"/api/v1/tokens/{row.pk}").json()
    assert "token" not in detail and detail["scopes"] == ["ingest"]
    # and the new token works
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert fresh.get("/api/v1/org").status_code == 403  # ingest-only token: valid, but lacks the read scope


def test_token_create_validation(api, org, other_org):
    client = api(org)
    foreign_team = TeamFactory(org=other_org)
    assert_error(
        client.post("/api/v1/tokens", {"name": "x", "scopes": []}, format="json"), 400, fields=["scopes"]
    )
    assert_error(
        client.post("/api/v1/tokens", {"name": "x", "scopes": ["god"]}, format="json"), 400, fields=["scopes"]
    )
    assert_error(
        client.post(
            "/api/v1/tokens", {"name": "x", "scopes": ["read"], "team": foreign_team.pk}, format="json"
        ),
        400,
        fields=["team"],
    )
    past = (timezone.now() - timedelta(days=1)).isoformat()
    assert_error(
        client.post("/api/v1/tokens", {"name": "x", "scopes": ["read"], "expires_at": past}, format="json"),
        400,
        fields=["expires_at"],
    )
    assert ApiToken.objects.filter(org=org).count() == 1  # only the client's own


def test_team_bound_token(api, org):
    team = TeamFactory(org=org)
    response = api(org).post(
        "/api/v1/tokens", {"name": "t", "scopes": ["ingest"], "team": team.pk}, format="json"
    )
    assert response.status_code == 201 and response.json()["team"] == team.pk


def test_delete_revokes_and_the_token_stops_working(api, org):
    admin = api(org)
    victim = api(org, scopes=["read"])
    assert victim.get("/api/v1/org").status_code == 200
    assert admin.delete(f"/api/v1/tokens/{victim.token.pk}").status_code == 204
    assert ApiToken.objects.get(pk=victim.token.pk).revoked_at is not None
    assert_error(victim.get("/api/v1/org"), 401, "not_authenticated")


def test_rename_token(api, org):
    admin = api(org)
    response = admin.patch(f"/api/v1/tokens/{admin.token.pk}", {"name": "renamed"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "renamed"
    assert_error(admin.patch(f"/api/v1/tokens/{admin.token.pk}", {"scopes": ["read"]}, format="json"), 400)


# --- authentication and scopes -----------------------------------------------------------------------------------


def _bearer(value):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=value)
    return client


def test_unknown_malformed_and_missing_tokens_are_401_in_one_shape(db):
    for client in (_bearer("Bearer spc_nope"), _bearer("Token abc"), _bearer("Bearer a b"), APIClient()):
        error = assert_error(client.get("/api/v1/org"), 401, "not_authenticated")
        assert error["fields"] == {}


def test_expired_token_is_401(api, org):
    client = api(org, scopes=["read"])
    ApiToken.objects.filter(pk=client.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(client.get("/api/v1/org"), 401, "not_authenticated")


def test_deleted_users_tokens_stop_working(api, org):
    client = api(org, scopes=["read"])
    client.token.created_by.delete()
    assert_error(client.get("/api/v1/org"), 401, "not_authenticated")


def test_deactivated_or_removed_users_tokens_stop_working(api, org):
    client = api(org, scopes=["read"])
    user = client.token.created_by
    user.is_active = False
    user.save()
    assert_error(client.get("/api/v1/org"), 401)
    user.is_active = True
    user.save()
    assert client.get("/api/v1/org").status_code == 200
    user.memberships.filter(org=org).delete()
    assert_error(client.get("/api/v1/org"), 401)


@pytest.mark.parametrize(
    ("scopes", "method", "path", "status"),
    [
        (["read"], "get", "/api/v1/teams", 200),
        (["read"], "post", "/api/v1/teams", 403),
        (["read"], "get", "/api/v1/tokens", 403),
        (["ingest"], "get", "/api/v1/teams", 403),
        (["check"], "get", "/api/v1/members", 403),
        (["admin"], "get", "/api/v1/tokens", 200),
        (["admin"], "post", "/api/v1/teams", 201),
    ],
)
def test_scopes(api, org, scopes, method, path, status):
    client = api(org, scopes=scopes)
    response = getattr(client, method)(path, {"name": "Scoped"} if method == "post" else None, format="json")
    assert response.status_code == status, response.content
    if status == 403:
        assert_error(response, 403, "permission_denied")


def test_last_used_is_recorded(api, org):
    client = api(org, scopes=["read"])
    assert client.token.last_used_at is None
    client.get("/api/v1/org")
    assert ApiToken.objects.get(pk=client.token.pk).last_used_at is not None


def test_throttling_is_per_token(api, org, monkeypatch):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
    first, second = api(org, scopes=["read"]), api(org, scopes=["read"])
    for _ in range(3):
        assert first.get("/api/v1/org").status_code == 200
    throttled = first.get("/api/v1/org")
    assert_error(throttled, 429, "throttled")
    assert int(throttled["Retry-After"]) > 0
    assert second.get("/api/v1/org").status_code == 200


def test_schema_and_docs_are_served_without_cdn(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/org", "/api/v1/teams", "/api/v1/teams/{id}", "/api/v1/tokens", "/api/v1/members"} <= set(
        paths
    )
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger" in html.lower() and "cdn.jsdelivr" not in html and "unpkg" not in html
