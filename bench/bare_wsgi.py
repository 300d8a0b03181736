"""Baseline for bench/check.py: the least a Django check endpoint can do, under the same gunicorn and load.

    gunicorn bench.bare_wsgi:application -w 2 -k sync      (started by bench/check.py, not by hand)

Two views, no middleware, no database, no auth; each parses the JSON body, runs ONE EVALSHA of the very script
spendctl's check runs (apps.budgets.counters.CHECK: throttle INCR, org version, last-used marker, exact sums of the
day hashes' fields) with the same keys and arguments, and answers JSON:

* POST /bare      a plain Django function view (json.loads -> EVALSHA -> JsonResponse)
* POST /bare-drf  a DRF APIView (JSONParser, JSONRenderer, no authentication/permission/throttle classes)

Configured from the environment: BARE_REDIS_URL, BARE_KEYS and BARE_ARGS (JSON lists; bench/check.py passes the
keys and arguments the real check sends for a typical request, so the Lua script does the same work).
"""

import json
import os
from pathlib import Path

import django
import redis
from django.conf import settings
from django.urls import path

# The very script the check runs, read from its file (importing apps.budgets.counters would need spendctl's
# settings, which this module must not).
CHECK = (Path(__file__).resolve().parent.parent / "apps" / "budgets" / "check.lua").read_text()

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-bare-only",  # noqa: S106 - a throwaway baseline, no sessions, nothing signed
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=["rest_framework"],
    USE_TZ=True,
    LOGGING_CONFIG=None,
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "DEFAULT_THROTTLE_CLASSES": [],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
        "UNAUTHENTICATED_USER": None,
    },
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

_client = redis.Redis.from_url(os.environ["BARE_REDIS_URL"], socket_connect_timeout=0.2, socket_timeout=0.2)
_check = _client.register_script(CHECK)
KEYS = json.loads(os.environ["BARE_KEYS"])
ARGS = json.loads(os.environ["BARE_ARGS"])


def _spent() -> list:
    flat = _check(keys=KEYS, args=ARGS)
    missing = int(flat[3])
    sums = flat[4 + missing :]
    return [str(int(sums[i]) * 1_000_000_000 + int(sums[i + 1])) for i in range(0, len(sums), 2)]


@csrf_exempt
def bare(request):
    body = json.loads(request.body)
    return JsonResponse({"model": body.get("model"), "spent": _spent()})


class BareDRF(APIView):
    def post(self, request):
        return Response({"model": request.data.get("model"), "spent": _spent()})


def ping(request):
    return JsonResponse({"ok": _client.ping()})


urlpatterns = [path("bare", bare), path("bare-drf", BareDRF.as_view()), path("healthz", ping)]
application = get_wsgi_application()
