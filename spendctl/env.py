"""The one reader of configuration: every setting that varies comes from the environment through `env`."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A local .env (written by `make demo`, never committed) is read when present; real environment variables win.
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=True) and (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"), overwrite=False)


def require(name: str, value, *, production: bool):
    """Fail at start, naming the variable, when a production setting is missing."""
    if production and not value:
        raise ImproperlyConfigured(
            f"The environment variable {name} is required when DEBUG is off. See .env.example for what it holds."
        )
    return value
