"""The Celery app. Configuration comes from Django settings (CELERY_ namespace); the beat schedule lives there too."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spendctl.settings.base")

app = Celery("spendctl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="core.ping")
def ping() -> str:
    """Health task: proves broker -> worker -> result backend round trips."""
    return "pong"
