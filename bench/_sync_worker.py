"""Loaded by the Celery worker that bench/sync.py starts (`celery -A spendctl worker --include bench._sync_worker`).

It only applies the benchmark's provider client options in each pool process, the way the tests do
(`apps.connectors.services.CLIENT_OPTIONS`), from the BENCH_SYNC_CLIENT_OPTIONS environment variable (JSON), e.g.
{"openai": {"bucket_width": "1h", "usage_page_limit": 31}}. Nothing else of the worker is changed.
"""

import json
import os
import sys

from celery.signals import worker_process_init

print(f"bench: {__name__} imported in pid {os.getpid()}", file=sys.stderr, flush=True)


@worker_process_init.connect
def _apply_client_options(**_kwargs):
    from apps.connectors import services

    services.CLIENT_OPTIONS = json.loads(os.environ.get("BENCH_SYNC_CLIENT_OPTIONS", "{}"))
    print(
        f"bench: pool process {os.getpid()} client options {services.CLIENT_OPTIONS}",
        file=sys.stderr,
        flush=True,
    )
