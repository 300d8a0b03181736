import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.orgs.models import ApiToken, Membership
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _createorg(*args):
    out = StringIO()
    call_command("createorg", *args, stdout=out)
    return json.loads(out.getvalue())


def test_createorg_prints_one_json_object_with_a_working_admin_token():
    payload = _createorg("Initech", "--owner", "bill@initech.test")
    assert set(payload) == {"org", "owner", "password", "token"}
    assert payload["org"]["slug"] == "initech" and payload["owner"] == "bill@initech.test"
    assert isinstance(payload["password"], str) and len(payload["password"]) >= 12
    membership = Membership.objects.get(org__slug="initech", user__email="bill@initech.test")
    assert membership.role == "owner" and membership.user.check_password(payload["password"])
    assert ApiToken.objects.get(org__slug="initech").scopes == ["admin"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {payload['token']}")
    assert client.get("/api/v1/org").json()["name"] == "Initech"
    assert client.get("/api/v1/tokens").status_code == 200


def test_createorg_for_an_existing_user_prints_no_password():
    user = UserFactory(email="old@example.test")
    payload = _createorg("Second", "--owner", "OLD@example.test")
    assert payload["password"] is None
    assert Membership.objects.get(org__slug="second").user == user


def test_createorg_duplicate_slug_fails_cleanly():
    _createorg("Acme", "--owner", "a@example.test", "--slug", "acme")
    with pytest.raises(CommandError, match="slug"):
        _createorg("Acme", "--owner", "b@example.test", "--slug", "acme")


def test_demo_command_is_repeatable():
    call_command("demo", stdout=StringIO())
    call_command("demo", stdout=StringIO())
    assert Membership.objects.get(org__slug="acme", user__email="demo@acme.test").role == "owner"
    assert Membership.objects.get(org__slug="globex", user__email="demo@acme.test").role == "finance"
