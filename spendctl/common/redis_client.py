"""One raw Redis client per process for the hot paths (spend counters, the check's round trip, org versions).

Django's RedisCache builds a new redis.Redis object on every call (about 0.5 ms of CPU each with redis-py 5), so the
pre-flight check does not go through it. Short socket timeouts: a slow or dead Redis must not hold a request.
A failure opens a short breaker (DOWN_SECONDS): meanwhile `available()` is False and callers use the database
without trying Redis again on every request. Without REDIS_URL nothing here is used.
"""

import time

from django.conf import settings

DOWN_SECONDS = 1.0
_client = None
_down_until = 0.0


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def available() -> bool:
    return enabled() and time.monotonic() >= _down_until


def client():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.2, socket_timeout=0.2)
    return _client


def mark_down() -> None:
    """Redis just failed: drop the connection and leave it alone for DOWN_SECONDS."""
    global _client, _down_until
    _client = None
    _down_until = time.monotonic() + DOWN_SECONDS


def reset() -> None:
    """Forget the client and the breaker (tests point REDIS_URL elsewhere and back)."""
    global _client, _down_until
    _client = None
    _down_until = 0.0
