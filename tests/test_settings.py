"""Settings come from the environment; production refuses to start without its required variables."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROD_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "k" * 20 + "-production-secret-key-with-enough-entropy-1234567890",
    "FIELD_ENCRYPTION_KEY": "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1rZXktMDA=",
    "ALLOWED_HOSTS": "spend.example.com",
    "SITE_URL": "https://spend.example.com",
    "DJANGO_READ_DOT_ENV_FILE": "0",
    "DJANGO_SETTINGS_MODULE": "spendctl.settings.base",
}


def _manage(*args, env):
    # A clean environment: nothing of the test run (e.g. the browser tests' DJANGO_ALLOW_ASYNC_UNSAFE) leaks in.
    dropped = {"REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in PROD_ENV and k not in dropped}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_in_production():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_required_production_variables_are_named():
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "ALLOWED_HOSTS"):
        env = {k: v for k, v in PROD_ENV.items() if k != name}
        result = _manage("check", env=env)
        assert result.returncode != 0
        assert f"The environment variable {name} is required" in result.stderr


def test_debug_runs_without_production_variables():
    result = _manage("check", env={"DEBUG": "1", "DJANGO_READ_DOT_ENV_FILE": "0"})
    assert result.returncode == 0, result.stderr
