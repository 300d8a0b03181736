"""Test settings: the base settings with fixed keys and fast hashing. DATABASE_URL and REDIS_URL still apply."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("ALLOW_PRIVATE_URLS", "1")
os.environ.setdefault("DJANGO_READ_DOT_ENV_FILE", "0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-0123456789-0123456789-0123456789-xyz")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1rZXktMDA=")

from .base import *  # noqa: E402,F403
from .base import CACHES, REDIS_URL  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
SPEND_COUNTER_PREFIX = f"spc-test{os.getpid()}"
if REDIS_URL:
    # Tests share one Redis: give each run its own key prefix so parallel runs never collide.
    CACHES["default"]["KEY_PREFIX"] = f"test{os.getpid()}"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
