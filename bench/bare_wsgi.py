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

import django
import redis
from django.conf import settings
from django.urls import path

# The script the check runs, copied so this module does not import spendctl's settings (it must not need them).
CHECK = """
local out = {0, '', 0, 0}
if KEYS[1] ~= '' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
  out[1] = n
end
local v = redis.call('GET', KEYS[2])
if not v then redis.call('SET', KEYS[2], ARGV[2]) v = ARGV[2] end
out[2] = v
if KEYS[3] ~= '' and redis.call('SET', KEYS[3], '1', 'NX', 'EX', 60) then out[3] = 1 end
local sums, missing = {}, {}
local k, a = 4, 4
for g = 1, tonumber(ARGV[3]) do
  local nk, nf = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local fields = {'_built'}
  for j = 1, nf do fields[j + 1] = ARGV[a + 1 + j] end
  a = a + 2 + nf
  local hi, lo = {}, {}
  for j = 1, nf do hi[j] = 0 lo[j] = 0 end
  for i = k, k + nk - 1 do
    local vals = redis.call('HMGET', KEYS[i], unpack(fields))
    if not vals[1] then
      table.insert(missing, i - 3)
    else
      for j = 1, nf do
        local s = vals[j + 1]
        if s then
          local neg = string.byte(s, 1) == 45
          if neg then s = string.sub(s, 2) end
          local l = tonumber(string.sub(s, -9))
          local h = 0
          if #s > 9 then h = tonumber(string.sub(s, 1, #s - 9)) end
          if neg then hi[j] = hi[j] - h lo[j] = lo[j] - l else hi[j] = hi[j] + h lo[j] = lo[j] + l end
        end
      end
    end
  end
  k = k + nk
  for j = 1, nf do table.insert(sums, hi[j]) table.insert(sums, lo[j]) end
end
out[4] = #missing
for _, i in ipairs(missing) do table.insert(out, i) end
for _, x in ipairs(sums) do table.insert(out, x) end
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
