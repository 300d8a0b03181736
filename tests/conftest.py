import contextlib

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, OrganizationFactory, make_token


@pytest.fixture(autouse=True)
def _clear_cache(settings):
    # Throttle counters, login lock-outs and spend counters live in the cache or Redis; every test starts clean.
    cache.clear()
    _clear_spend_counters(settings)
    yield
    # a test may have pointed the cache at an unreachable Redis on purpose
    with contextlib.suppress(Exception):
        cache.clear()


def _clear_spend_counters(settings):
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{settings.SPEND_COUNTER_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme Test", slug="acme-test")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(name="Other Co", slug="other-co")


@pytest.fixture
def member_of():
    """member_of(org, role) -> user with that role in org."""

    def make(org, role="member", **kwargs):
        return MembershipFactory(org=org, role=role, **kwargs).user

    return make


@pytest.fixture
def api():
    """api(org, scopes=[...], team=None) -> APIClient authenticated with a fresh token of that org."""

    def make(org, scopes=("admin",), **kwargs):
        token, plaintext = make_token(org=org, scopes=scopes, **kwargs)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        client.token = token
        client.plaintext = plaintext
        return client

    return make
