"""Loaded by the Celery worker the fault tests start (`--include tests.faults._worker`).

In each pool process it applies what the in-process tests set with monkeypatch: the provider client options (page
sizes, endpoints), short HTTP timeouts and in-client retries, and a short task backoff (seconds instead of minutes, with an optional floor),
all from FAULTS_* environment variables. Nothing else of the worker is changed.
"""

import json
import os

from celery.signals import worker_process_init


@worker_process_init.connect
def _configure(**_kwargs):
    from apps.connectors import services, tasks
    from apps.connectors.providers import HttpSettings

    services.CLIENT_OPTIONS = json.loads(os.environ.get("FAULTS_CLIENT_OPTIONS", "{}"))
    http = json.loads(os.environ.get("FAULTS_HTTP_SETTINGS", "{}"))
    if http:
        services.HTTP_SETTINGS = HttpSettings(**http)
    if "FAULTS_MAX_RETRIES" in os.environ:
        tasks.MAX_RETRIES = int(os.environ["FAULTS_MAX_RETRIES"])
    if "FAULTS_BACKOFF_BASE" in os.environ:
        base, original = float(os.environ["FAULTS_BACKOFF_BASE"]), tasks.backoff
        # A floor under the jitter: full jitter can draw a countdown of a few milliseconds, and a test that must see
        # the run in "retrying" then races the retry on a loaded machine (seen in CI).
        floor = float(os.environ.get("FAULTS_BACKOFF_MIN", "0"))

        def backoff(attempt, *, base_=base, retry_after=None, **_ignored):
            return max(floor, original(attempt, base=base_, cap=base_ * 8, retry_after=retry_after))

        tasks.backoff = backoff
