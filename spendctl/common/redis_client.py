"""One raw Redis client per process for the hot paths (spend counters, the check's round trip, org versions).

Django's RedisCache builds a new redis.Redis object on every call (about 0.5 ms of CPU each with redis-py 5), so the
pre-flight check does not go through it. Short socket timeouts: a slow or dead Redis must not hold a request.
Redis unreachable opens a short breaker (DOWN_SECONDS): meanwhile `available()` is False and callers use the
database without trying Redis again on every request. Without REDIS_URL nothing here is used.
"""

import sys
import time

from django.conf import settings

DOWN_SECONDS = 1.0
_client = None
_down_until = 0.0
# How many times Redis failed under this process. Caches confirmed through Redis (the check's tokens and org
# configuration) remember the count they were loaded at and reload when it moved: while Redis was away, changes
# (a bumped counter epoch, a revoked token) could not bump the org version, and a Redis that comes back may hold
# the old version and the old counters.
_failures = 0


def failures() -> int:
    return _failures


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


def mark_down(*, force: bool = False) -> None:
    """Redis just failed (call it from the except block): drop the connection, and if Redis could not be reached
    (refused, reset, connect timeout) leave it alone for DOWN_SECONDS. A slow answer (read timeout) does not open
    the breaker: under load the database path costs far more than waiting for Redis again."""
    global _client, _down_until, _failures
    _client = None
    _failures += 1
    if force or _unreachable(sys.exc_info()[1]):
        _down_until = time.monotonic() + DOWN_SECONDS


def _unreachable(exc) -> bool:
    import redis

    if isinstance(exc, redis.exceptions.TimeoutError):
        return "connect" in str(exc).lower()
    return isinstance(exc, redis.exceptions.ConnectionError | OSError)


def reset() -> None:
    """Forget the client and the breaker (tests point REDIS_URL elsewhere and back)."""
    global _client, _down_until
    _client = None
    _down_until = 0.0
