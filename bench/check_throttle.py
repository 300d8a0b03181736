"""A prototype of the throttle change proposed by bench/check.py, for measurement only (not wired into the app).

DRF's SimpleRateThrottle (which apps.orgs.throttling.TokenRateThrottle extends) keeps one timestamp per request of
the window in one cache value, and every request reads it, unpickles it, prepends, pickles and writes it back: the
cost grows with the allowed rate. At 1,000 checks/s and a per-minute limit that is a 60,000-float list (~540 KB)
read and written per request. This fixed-window counter does one pipelined INCR + EXPIRE per request, O(1), with
the same cache key per token and scope (plus the window number) and the same rate setting.
"""

import time

from django.core.cache import cache

from apps.orgs.throttling import TokenRateThrottle


class FixedWindowTokenThrottle(TokenRateThrottle):
    def allow_request(self, request, view):
        if self.rate is None:
            return True
        base = self.get_cache_key(request, view)
        if base is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_end = (window + 1) * self.duration
        key = f"{base}:{window}"
        backend = getattr(cache, "_cache", None)
        if hasattr(backend, "get_client"):  # Django's RedisCache: one round trip
            full_key = cache.make_and_validate_key(key)
            pipe = backend.get_client(full_key, write=True).pipeline(transaction=False)
            pipe.incr(full_key)
            pipe.expire(full_key, self.duration + 1, nx=True)
            count = pipe.execute()[0]
        else:  # any other cache backend
            cache.add(key, 0, self.duration + 1)
            count = cache.incr(key)
        return count <= self.num_requests

    def wait(self):
        return max(0.0, self.window_end - time.time())
