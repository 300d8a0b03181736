"""spendctl settings. Everything that varies between installs is read from the environment (see .env.example)."""

import warnings
from datetime import timedelta
from pathlib import Path

from celery.schedules import crontab
from csp.constants import NONE, SELF

from spendctl.env import BASE_DIR, env, require

DEBUG = env.bool("DEBUG", default=False)
PRODUCTION = not DEBUG

SECRET_KEY = require("SECRET_KEY", env.str("SECRET_KEY", default=""), production=PRODUCTION) or (
    "dev-only-insecure-key-never-use-in-production-0123456789abcdef"
)
# Fernet keys, comma separated: the first encrypts, all decrypt (rotation).
FIELD_ENCRYPTION_KEY = require(
    "FIELD_ENCRYPTION_KEY", env.str("FIELD_ENCRYPTION_KEY", default=""), production=PRODUCTION
) or ("dGhpcy1pcy1hLWRldi1vbmx5LWtleS0xMjM0NTY3ODk=")
ALLOWED_HOSTS = require(
    "ALLOWED_HOSTS", env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"]), production=PRODUCTION
)
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
ALLOW_PRIVATE_URLS = env.bool("ALLOW_PRIVATE_URLS", default=False)
# Reverse proxies in front of the app whose X-Forwarded-For is trusted for the client address in the audit trail
# (0: only REMOTE_ADDR counts; the header is ignored because any client can write it).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# CI's API fuzzing run: outbound requests may reach loopback addresses only (see spendctl/common/outbound.py).
OUTBOUND_LOOPBACK_ONLY = env.bool("OUTBOUND_LOOPBACK_ONLY", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "apps.orgs",
    "apps.catalog",
    "apps.usage",
    "apps.connectors",
    "apps.budgets",
    "apps.audit",
    "apps.reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "spendctl.common.middleware.BodySizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.audit.context.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "spendctl.urls"
WSGI_APPLICATION = "spendctl.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.orgs.context_processors.orgs",
            ],
        },
    },
]

# Embedded default: a SQLite file under var/. Production: DATABASE_URL=postgres://…
DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var")))
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'spendctl.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# A persistent connection is checked before a request reuses it, so one dropped while idle (a database restart or
# fail-over) is replaced instead of failing that request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)  # the embedded default needs its folder on a fresh clone
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: broker and cache when REDIS_URL is set; otherwise tasks run in process and the cache is local memory.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # Timeouts: a hung Redis (up but not answering) costs a request at most a second per cache call, never forever;
    # every cache user (throttle, check configuration, debounce) carries on without the cache.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "spendctl"}}

# Redis key prefix of the pre-flight check's spend counters.
SPEND_COUNTER_PREFIX = "spc"

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_RESULT_EXPIRES = timedelta(days=1)
# With Redis down, sending a task fails within about a second instead of blocking the request ~20 s on the result
# store's reconnect loop (its default: 20 retries a second apart); the periodic jobs pick up what was not sent.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# The whole periodic schedule, in one place. Each entry: what it does and when (UTC).
CELERY_BEAT_SCHEDULE = {
    # Liveness of the beat -> broker -> worker path; cheap, every 5 minutes.
    "core-heartbeat": {"task": "core.ping", "schedule": crontab(minute="*/5")},
    # Prices unpriced usage whose model got a price (a genai-prices upgrade or a new override); 03:30 UTC daily.
    "usage-price-unpriced": {"task": "usage.price_unpriced_all", "schedule": crontab(hour=3, minute=30)},
    # Hourly at :05: starts each connection's nightly sync when its org reaches 02:00 local time (so every org
    # syncs at night in its own time zone), and resumes runs whose worker died.
    "connectors-sync-due": {"task": "connectors.sync_due", "schedule": crontab(minute=5)},
    # Hourly at :15: budgets, forecasts and anomalies are re-evaluated even when nothing was ingested.
    "budgets-evaluate-all": {"task": "budgets.evaluate_all", "schedule": crontab(minute=15)},
    # Every 15 minutes: monthly reports for orgs that have passed the 1st of the month 08:00 in their own time
    # zone and whose last month's report has not gone out (one task per recipient; each is sent once).
    "reports-send-due": {"task": "reports.send_due", "schedule": crontab(minute="*/15")},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): 5 failures per user+IP lock that pair out for 15 minutes.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# In development static files come from the finders; the collected folder exists only after collectstatic.
warnings.filterwarnings("ignore", message="No directory at")

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="spendctl <reports@spendctl.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Security. Production (DEBUG off) gets secure cookies, HSTS and HTTPS redirects; `check --deploy` is clean.
# A session lasts SESSION_COOKIE_AGE (12 h) from log-in, however active: then the person logs in again.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = False
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION
# Lax: sent on top-level links (e-mailed alert links work), never on cross-site POSTs.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_HTTPONLY = True  # the token travels in the forms' hidden field; no script needs the cookie
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = 31536000 if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts, styles, images and fonts from this origin only; no inline script or
# style anywhere (chart data travels in json_script blocks, which are data, not script); no framing, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=[SITE_URL] if SITE_URL.startswith("http") else []
)

# Request bodies over these sizes are refused with 413 before anything parses them (spendctl/common/middleware.py).
# A batch of 5,000 events is 1.6 MB (the demo's events) to 6.5 MB (every field, ten 64-character tags).
INGEST_MAX_BODY_BYTES = env.int("INGEST_MAX_BODY_BYTES", default=10 * 1024 * 1024)
MAX_BODY_BYTES = env.int("MAX_BODY_BYTES", default=256 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.orgs.authentication.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.orgs.permissions.HasOrgScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "spendctl.common.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["apps.orgs.throttling.TokenRateThrottle"],
    # Per token, fixed one-minute (or second/hour/day) windows: ingest and check have budgets of their own.
    "DEFAULT_THROTTLE_RATES": {
        "token": env.str("API_RATE_LIMIT", default="1200/min"),
        "ingest": env.str("INGEST_RATE_LIMIT", default="1200/min"),
        "check": env.str("CHECK_RATE_LIMIT", default="6000/min"),
    },
    "DEFAULT_SCHEMA_CLASS": "spendctl.common.schema.SpendctlAutoSchema",
    "EXCEPTION_HANDLER": "spendctl.common.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "COERCE_DECIMAL_TO_STRING": True,
    "URL_FORMAT_OVERRIDE": None,  # ?format= belongs to our CSV/FOCUS exports, not to DRF's renderer choice
}
SPECTACULAR_SETTINGS = {
    "TITLE": "spendctl API",
    "DESCRIPTION": (
        "AI spend under control. Authenticate with `Authorization: Bearer <token>`; the token fixes the "
        'organisation. Every 4xx answers `{"error": {"code", "message", "fields"}}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums"],
}

# Exception reports hide secrets in serializers and dicts too (see spendctl/common/reporting.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "spendctl.common.reporting.SecretsExceptionReporterFilter"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # httpcore's DEBUG trace prints raw response headers, where a provider or proxy may echo the key back.
        "httpcore": {"level": "INFO"},
    },
}

# API tokens: the visible prefix that makes a leaked token recognisable (and greppable by secret scanners).
API_TOKEN_PREFIX = "spc_"  # noqa: S105 - a prefix, not a secret
