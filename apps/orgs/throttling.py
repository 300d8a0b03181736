import logging
import time
from functools import lru_cache

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger(__name__)


@lru_cache(maxsize=32)
def parse_rate(rate: str | None) -> tuple[int | None, int | None]:
    return SimpleRateThrottle.parse_rate(None, rate) if rate else (None, None)


class TokenRateThrottle(BaseThrottle):
    """One budget of requests per token (per client address without one), counted in fixed one-window buckets.

    A view's `throttle_scope` gives it its own budget with its own rate (`ingest`: INGEST_RATE_LIMIT, `check`:
    CHECK_RATE_LIMIT); every other view shares the token's `token` budget (API_RATE_LIMIT). Over the budget the
    answer is a 429 with `Retry-After` (seconds to the next window) in the one error shape.

    O(1) per request (one cache add + incr), unlike DRF's sliding history whose list grows with the rate.
    """

    scope = "token"
    THROTTLE_RATES = SimpleRateThrottle.THROTTLE_RATES

    def __init__(self):
        self.wait_seconds = 0.0

    def allow_request(self, request, view):
        scope = getattr(view, "throttle_scope", None) or self.scope
        num_requests, duration = parse_rate(self.THROTTLE_RATES.get(scope))
        if num_requests is None:
            return True
        token = getattr(request, "api_token", None)
        ident = f"t{token.pk}" if token is not None else f"ip{self.get_ident(request)}"
        now = time.time()
        window = int(now // duration)
        key = f"throttle:{scope}:{ident}:{window}"
        try:
            cache.add(key, 0, timeout=duration + 1)
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=duration + 1)
                count = 1
        except Exception:  # noqa: BLE001 - the cache (Redis) is down: fail open, the API keeps answering
            logger.warning("throttle cache unavailable; request not counted")
            return True
        if count > num_requests:
            self.wait_seconds = (window + 1) * duration - now
            return False
        return True

    def wait(self):
        return max(1.0, self.wait_seconds)


class CheckRateThrottle(TokenRateThrottle):
    """The pre-flight check's throttle. With a cached token (request.token_version set by CheckTokenAuthentication)
    the count is taken in the check's own Redis round trip (same key, same window, see rate_key/rate_window), so
    this lets the request through; otherwise it is TokenRateThrottle. With Redis unavailable: fails open.
    Its budget is the `check` scope's (CHECK_RATE_LIMIT)."""

    scope = "check"

    def __init__(self):
        super().__init__()
        self.num_requests, self.duration = parse_rate(self.THROTTLE_RATES.get(self.scope))

    def allow_request(self, request, view):
        if getattr(request, "token_version", None) is not None:
            return True
        from spendctl.common import redis_client

        if redis_client.enabled() and not redis_client.available():
            return True  # Redis just failed: the cache would fail too, the API keeps answering
        return super().allow_request(request, view)

    def rate_key(self, token, view, now: float) -> tuple[str, float]:
        """The cache key of this window's counter, as the key TokenRateThrottle would use, and the window's end."""
        window = int(now // self.duration)
        key = cache.make_key(f"throttle:{getattr(view, 'throttle_scope', self.scope)}:t{token.pk}:{window}")
        return key, (window + 1) * self.duration
