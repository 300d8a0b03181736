"""Settings of the processes the fault tests start (gunicorn, Celery): the production settings, read from the
environment as in a deployment, plus a key prefix so counters and cache keys of one test run never meet another's."""

import os

from spendctl.settings.base import *  # noqa: F403
from spendctl.settings.base import CACHES, REDIS_URL

SPEND_COUNTER_PREFIX = os.environ.get("FAULTS_COUNTER_PREFIX", "spc")
if REDIS_URL:
    CACHES["default"]["KEY_PREFIX"] = SPEND_COUNTER_PREFIX
