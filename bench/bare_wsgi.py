"""Baseline for bench/check.py: the least a Django check endpoint can do, under the same gunicorn and load.

    gunicorn bench.bare_wsgi:application -w 2 -k sync      (started by bench/check.py, not by hand)

Two views, no middleware, no database, no auth, no throttling; each parses the JSON body, runs ONE EVALSHA of the
very script spendctl's check runs (apps.budgets.counters.READ) over the same day-hash keys and fields, sums the
counters and answers JSON:

* POST /bare      a plain Django function view (json.loads -> EVALSHA -> JsonResponse)
* POST /bare-drf  a DRF APIView (JSONParser, JSONRenderer, no authentication/permission/throttle classes)

Configured from the environment: BARE_REDIS_URL, BARE_KEYS and BARE_FIELDS (JSON lists; bench/check.py passes the
keys and fields the real check reads, so the Lua script does the same work).
"""

import json
import os

import django
import redis
from django.conf import settings
from django.urls import path

# The script the check runs, copied so this module does not import spendctl's settings (it must not need them).
READ = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    table.insert(out, 1)
    local values = redis.call('HMGET', key, unpack(ARGV))
    for _, v in ipairs(values) do table.insert(out, v or '0') end
  else
    table.insert(out, 0)
  end
end
return out
"""

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
_read = _client.register_script(READ)
KEYS = json.loads(os.environ["BARE_KEYS"])
FIELDS = json.loads(os.environ["BARE_FIELDS"])


def _spent() -> dict:
    flat = _read(keys=KEYS, args=FIELDS)
    totals = dict.fromkeys(FIELDS, 0)
    i = 0
    for _key in KEYS:
        exists = int(flat[i])
        i += 1
        if exists:
            for f in FIELDS:
                totals[f] += int(flat[i])
                i += 1
    return {f: str(v) for f, v in totals.items()}


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
