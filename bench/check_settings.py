"""Settings for bench/check.py's variant servers: spendctl's own settings plus bench-only swaps.

Used only as DJANGO_SETTINGS_MODULE=bench.check_settings by bench/check.py (never by the app). Without the switch
it is exactly spendctl.settings.base.

* BENCH_CACHE=locmem: Django's cache (and so the throttle's counters) in process memory instead of Redis. Used
  only when the app answers 500 with Redis down (an earlier version did: the throttle read its cache before the
  check's database fallback could answer), so that the fallback itself can still be measured.
"""

import os

from spendctl.settings.base import *  # noqa: F403

if os.environ.get("BENCH_CACHE") == "locmem":
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "bench-check"}
    }
