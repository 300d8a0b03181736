"""Settings for bench/check.py's variant servers: spendctl's own settings, with bench-only swaps switched on by environment variables.

Used only as DJANGO_SETTINGS_MODULE=bench.check_settings by bench/check.py (never by the app). With neither switch
set it is exactly spendctl.settings.base.

* BENCH_CACHE=locmem: Django's cache (and so DRF's throttle history) in process memory instead of Redis. Lets the
  "Redis is down" run reach the check view at all: with the cache on the dead Redis, the throttle fails every API
  request with a 500 before the check's database fallback can answer (bench/check.py shows this too).
* BENCH_FASTPATH=1: the app's URLs plus POST /api/v1/fast-check, bench/check_fastpath.py's prototype of the
  proposed fast path (measurement only).
* BENCH_THROTTLE=fixed-window: the token throttle replaced by bench/check_throttle.py's O(1) fixed-window counter
  (one INCR+EXPIRE round trip) - the change proposed in the report, measured end to end.
"""

import os

from spendctl.settings.base import *  # noqa: F403
from spendctl.settings.base import REST_FRAMEWORK

if os.environ.get("BENCH_CACHE") == "locmem":
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "bench-check"}
    }

if os.environ.get("BENCH_THROTTLE") == "fixed-window":
    REST_FRAMEWORK = {
        **REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["bench.check_throttle.FixedWindowTokenThrottle"],
    }

if os.environ.get("BENCH_FASTPATH") == "1":
    ROOT_URLCONF = "bench.check_fastpath"
