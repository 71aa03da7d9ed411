"""One env-driven settings module. Every variable is listed in .env.example."""

from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
env_file = BASE_DIR / ".env"
if env_file.exists():
    environ.Env.read_env(str(env_file))

DEBUG = env.bool("DEBUG", default=True)

if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])
else:
    # No defaults when DEBUG is off: a missing secret stops the process at start.
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
    if not ALLOWED_HOSTS:
        # An empty list would start fine and then answer 400 to every request.
        raise ImproperlyConfigured("Set the ALLOWED_HOSTS environment variable (DEBUG is off)")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as our own static files (/api/docs, /api/redoc): no CDN
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "django_celery_beat",
    "mercari_ops.common",
    "mercari_ops.inbox",
    "loyalty",
    "campaigns",
    "line_integration",
    "history",
]

MIDDLEWARE = [
    # First: every later layer's log lines carry the request ID (mercari_ops/common/logging.py).
    "mercari_ops.common.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Japanese first: the language the user picked (cookie), else the browser's Accept-Language, else LANGUAGE_CODE.
    "mercari_ops.common.i18n.OpsLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mercari_ops.common.i18n.UserLanguageMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "mercari_ops.common.otp_admin.AdminSecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "mercari_ops.common.middleware.DatabaseUnavailableMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its 429 page
]
# Machine-to-machine endpoints skip sessions, CSRF, auth, messages and clickjacking (mercari_ops/wsgi.py):
# every path under these prefixes authenticates its caller by a token or a signature, never by a cookie.
# No SecurityMiddleware either: its headers (nosniff, Referrer-Policy, COOP, HSTS) speak to browsers and its
# HTTPS redirect exempts these paths (SECURE_REDIRECT_EXEMPT); it cost 6 us of every push and estimate.
MACHINE_MIDDLEWARE = [
    "mercari_ops.common.logging.RequestIdMiddleware",  # one contextvar set and a response header
    "mercari_ops.common.middleware.DatabaseUnavailableMiddleware",
]
# /metrics (bearer token), /livez and /readyz (probes) are machine paths too: no cookie, no CSRF.
MACHINE_PATH_PREFIXES = ["/pubsub/push/", "/line/", "/api/", "/metrics", "/livez", "/readyz"]

ROOT_URLCONF = "mercari_ops.urls"
WSGI_APPLICATION = "mercari_ops.wsgi.application"

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
            ],
        },
    },
]

# PostgreSQL only. `make run` / `make test` start an embedded PostgreSQL and Redis (mercari_ops/embedded.py)
# and pass their URLs; a `make run` stack also leaves them in var/run/stack.env for manage.py in other shells.
_URL_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
_stack_file = VAR_DIR / "run" / "stack.env"
if not any(env.str(name, default="") for name in _URL_VARIABLES) and _stack_file.exists():
    environ.Env.read_env(str(_stack_file))
_missing = [name for name in _URL_VARIABLES if not env.str(name, default="")]
if _missing:
    raise ImproperlyConfigured(
        f"{', '.join(_missing)} not set: start the embedded PostgreSQL and Redis with `make run` (or `make test`), "
        "or set DATABASE_URL, REDIS_URL and CELERY_BROKER_URL to your own servers"
    )
DATABASES = {"default": env.db("DATABASE_URL")}
if not DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must be a PostgreSQL URL (postgres://...), the only database")
# A Unix-socket directory arrives percent-encoded in the URL's host (postgres://user@%2Fpath%2Fto%2Fdir:5432/db).
DATABASES["default"]["HOST"] = unquote(DATABASES["default"]["HOST"])
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# Server-side binding plus a prepare threshold let psycopg prepare hot statements (the inbox insert,
# the handlers' statements) after they ran DB_PREPARE_THRESHOLD times on a connection; Django alone
# never prepares. Set DB_PREPARE_THRESHOLD= (empty) behind a transaction-pooling pgbouncer older than 1.21.
DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env.bool("DB_SERVER_SIDE_BINDING",
                                                                                default=True)
DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env.int("DB_PREPARE_THRESHOLD", default=5) \
    if env.str("DB_PREPARE_THRESHOLD", default="5") != "" else None
# Session settings sent with the connection (libpq "options", no extra round trip). JIT off: this is an
# OLTP workload, and PostgreSQL compiled a 2,000-customer ingest statement for 357 ms to run it in 70
# (cost estimates above jit_above_cost). Set DB_SESSION_OPTIONS= (empty) behind a pooler that refuses it.
DB_SESSION_OPTIONS = env.str("DB_SESSION_OPTIONS", default="-c jit=off")
if DB_SESSION_OPTIONS:
    DATABASES["default"]["OPTIONS"]["options"] = DB_SESSION_OPTIONS
# Off by default: a health check costs a round trip per request; a dead connection fails one
# request with 503 (callers retry) and is then replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=False)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Admin logins (mercari_ops/common/otp_admin.py, docs/operations.md): django-axes locks a username (from any IP)
# and an IP (for any username) after AXES_FAILURE_LIMIT wrong passwords for AXES_COOLOFF_MINUTES (its backend
# first, so a locked user is refused before the password is checked); TOTP (django-otp) is required of operators,
# approvers and superusers.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_MINUTES = env.int("AXES_COOLOFF_MINUTES", default=30)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
# Two separate parameters (not one combination): a password guesser is stopped by switching neither IP nor username.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_ONLY_ADMIN_SITE = True
# Behind a load balancer the client is the left-most X-Forwarded-For address of this many proxies (0: REMOTE_ADDR).
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0) or None
if AXES_IPWARE_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="MercariOps")
# A first device is enrolled only with a set-up code a superuser issued (mercari_ops/common/otp_enrolment.py), for
# the roles that must use TOTP. Off by default with DEBUG on (the demo's admin enrols at first login).
OTP_ENROLMENT_GRANT_REQUIRED = env.bool("OTP_ENROLMENT_GRANT_REQUIRED", default=not DEBUG)
OTP_ENROLMENT_GRANT_HOURS = env.int("OTP_ENROLMENT_GRANT_HOURS", default=24)
ADMIN_URL_PREFIX = env.str("ADMIN_URL_PREFIX", default="admin/").strip("/") + "/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# The admin speaks Japanese unless the browser or the user asks for English. APIs and logs stay English.
LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", "日本語"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Business months and days (loyalty buckets, campaign periods, settlement, provisions, nightly jobs) are
# Japan's; instants are stored in UTC (mercari_ops/common/business_time.py). The admin shows and takes
# local times; APIs take any RFC 3339 offset and answer in UTC.
BUSINESS_TIME_ZONE = env.str("BUSINESS_TIME_ZONE", default="Asia/Tokyo")
try:
    ZoneInfo(BUSINESS_TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"BUSINESS_TIME_ZONE={BUSINESS_TIME_ZONE!r} is not an IANA time zone (Asia/Tokyo)")
TIME_ZONE = BUSINESS_TIME_ZONE
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Redis: the Celery broker, and the store of the global rate limiter every process and machine shares.
REDIS_URL = env.str("REDIS_URL")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
# A message not acked within the visibility timeout is redelivered: keep it
# well above the hard limit so a long task is never run twice by accident.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 10}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = BUSINESS_TIME_ZONE  # crontabs (nightly, monthly) run at local times
# django-celery-beat's DatabaseScheduler that also records its tick for the metrics
CELERY_BEAT_SCHEDULER = "mercari_ops.common.metrics.beat:TickingScheduler"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in ("events", "line", "settlement", "default")]
CELERY_TASK_ROUTES = {
    "inbox.*": {"queue": "events"},
    "loyalty.*": {"queue": "events"},
    "history.*": {"queue": "events"},
    "line.*": {"queue": "line"},
    "campaigns.settle*": {"queue": "settlement"},
    "campaigns.*": {"queue": "default"},
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis down or hung must never hold a request (issue 16): every Redis connection gives up within seconds.
# A web request's .delay() then fails fast and the after-commit enqueue is skipped (mercari_ops/common/enqueue.py;
# the sweepers deliver later), and this process skips further enqueues for REDIS_ENQUEUE_PAUSE_SECONDS.
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=2.0)
REDIS_CONNECT_TIMEOUT_SECONDS = env.float("REDIS_CONNECT_TIMEOUT_SECONDS", default=2.0)
REDIS_ENQUEUE_PAUSE_SECONDS = env.float("REDIS_ENQUEUE_PAUSE_SECONDS", default=10.0)
CELERY_BROKER_TRANSPORT_OPTIONS.update(socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                                       socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS)
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT_SECONDS
# Celery retries a failed publish (default 3 times, up to 1 s apart); keep it short: a sweeper catches up.
BROKER_PUBLISH_MAX_RETRIES = env.int("BROKER_PUBLISH_MAX_RETRIES", default=1)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": BROKER_PUBLISH_MAX_RETRIES,
    "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2,
}

REST_FRAMEWORK = {
    # Hashed service tokens with scopes (mercari_ops/common/tokens.py): every API view declares required_scope.
    "DEFAULT_AUTHENTICATION_CLASSES": ["mercari_ops.common.api_auth.CachedTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["mercari_ops.common.api_auth.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["mercari_ops.common.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "mercari_ops.common.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mercari_ops internal API",
    "DESCRIPTION": "Back-office APIs for campaigns, loyalty, LINE and payment history.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# What the schema cannot learn from the views: 401 on every token-authenticated operation, the shared error
# body, and the Pub/Sub push and Braze webhook (plain Django views) -- mercari_ops/common/openapi.py.
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = ["drf_spectacular.hooks.postprocess_schema_enums",
                                                "mercari_ops.common.openapi.postprocess_schema"]
# The benchmark baseline view POST /bench/bare (204, no auth): on only in the bench harness's environment.
BENCH_BARE_VIEW = env.bool("BENCH_BARE_VIEW", default=False)
# Its middleware: Django's browser stack as every share before 5 December 2026 measured it, fixed, so a
# middleware the admin gains (locale, second factor, lockout) never lowers the baseline and flatters a share.
BENCH_BARE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "mercari_ops.common.middleware.DatabaseUnavailableMiddleware",
]

# Event inbox (Pub/Sub push).
PUBSUB_PUSH_TOKEN = env.str("PUBSUB_PUSH_TOKEN", default="dev-pubsub-token" if DEBUG else None)
# How pushes authenticate: "oidc" (production) checks the Google-signed ID token a push subscription sends
# (mercari_ops/inbox/auth.py); "token" compares PUBSUB_PUSH_TOKEN (local development, tests, benches).
PUBSUB_AUTH = env.str("PUBSUB_AUTH", default="token" if DEBUG else "oidc")
if PUBSUB_AUTH not in ("token", "oidc"):
    raise ImproperlyConfigured(f"PUBSUB_AUTH must be token or oidc, not {PUBSUB_AUTH!r}")
PUBSUB_OIDC_AUDIENCE = env.list("PUBSUB_OIDC_AUDIENCE", default=[])
PUBSUB_OIDC_SERVICE_ACCOUNTS = env.list("PUBSUB_OIDC_SERVICE_ACCOUNTS", default=[])
PUBSUB_OIDC_CERTS_URL = env.str("PUBSUB_OIDC_CERTS_URL", default="https://www.googleapis.com/oauth2/v1/certs")
PUBSUB_OIDC_CLOCK_SKEW_SECONDS = env.int("PUBSUB_OIDC_CLOCK_SKEW_SECONDS", default=10)
if PUBSUB_AUTH == "oidc" and not DEBUG and not (PUBSUB_OIDC_AUDIENCE and PUBSUB_OIDC_SERVICE_ACCOUNTS):
    raise ImproperlyConfigured("PUBSUB_AUTH=oidc needs PUBSUB_OIDC_AUDIENCE and PUBSUB_OIDC_SERVICE_ACCOUNTS "
                               "(DEBUG is off)")
# Pub/Sub messages reach 10 MB, about 13.4 MB of base64 in a wrapped push; only the push path allows this
# much (DATA_UPLOAD_MAX_MEMORY_SIZE stays Django's 2.5 MB for everything else).
PUBSUB_PUSH_MAX_BODY_BYTES = env.int("PUBSUB_PUSH_MAX_BODY_BYTES", default=14 * 1024 * 1024)
INBOX_MAX_ATTEMPTS = env.int("INBOX_MAX_ATTEMPTS", default=8)
INBOX_RETENTION_DAYS = env.int("INBOX_RETENTION_DAYS", default=30)
INBOX_WAITING_ALERT_SECONDS = env.int("INBOX_WAITING_ALERT_SECONDS", default=300)
INBOX_WAITING_TIMEOUT_SECONDS = env.int("INBOX_WAITING_TIMEOUT_SECONDS", default=600)
# Group commit (threaded web server): concurrent Pub/Sub pushes and Braze webhooks of one process share a transaction.
GROUP_COMMIT = env.bool("GROUP_COMMIT", default=True)
GROUP_COMMIT_MAX = env.int("GROUP_COMMIT_MAX", default=200)
GROUP_COMMIT_TIMEOUT_SECONDS = env.float("GROUP_COMMIT_TIMEOUT_SECONDS", default=30.0)
EVENT_FUTURE_TOLERANCE_SECONDS = env.int("EVENT_FUTURE_TOLERANCE_SECONDS", default=300)

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$", r"^metrics$", r"^pubsub/", r"^line/", r"^api/"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    CSRF_COOKIE_HTTPONLY = True  # the admin reads the token from its forms, never from JavaScript
    CSRF_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)  # one working day
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Logs: "plain" text lines or "json" (one object per line), both in UTC with the request ID; LINE IDs masked
# (mercari_ops/common/logging.py). LOGGING_CONFIG also installs the record factory adding the request context.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING_CONFIG = "mercari_ops.common.logging.logging_configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "mercari_ops.common.logging.PlainFormatter"},
                   "json": {"()": "mercari_ops.common.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Error reporting (optional): Sentry with personal data scrubbed (mercari_ops/common/sentry.py). Off when empty.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if SENTRY_DSN:
    from mercari_ops.common.sentry import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)

# --- LINE integration -------------------------------------------------------
LINE_API_BASE = env.str("LINE_API_BASE", default="http://127.0.0.1:8089")
LINE_CHANNEL_ACCESS_TOKEN = env.str("LINE_CHANNEL_ACCESS_TOKEN", default="sandbox-token" if DEBUG else None)
LINE_CHANNEL_SECRET = env.str("LINE_CHANNEL_SECRET", default="sandbox-secret" if DEBUG else None)
BRAZE_WEBHOOK_TOKEN = env.str("BRAZE_WEBHOOK_TOKEN", default="dev-braze-token" if DEBUG else None)
ENRICH_URL = env.str("ENRICH_URL", default="")
ENRICH_TIMEOUT_SECONDS = env.float("ENRICH_TIMEOUT_SECONDS", default=1.0)
LINE_PUSH_RATE_PER_SECOND = env.int("LINE_PUSH_RATE_PER_SECOND", default=2000)
LINE_MULTICAST_RATE_PER_SECOND = env.int("LINE_MULTICAST_RATE_PER_SECOND", default=200)
LINE_RATE_SAFETY = env.float("LINE_RATE_SAFETY", default=0.97)
# Seconds; a sender process lowers Python's GIL switch interval to this (default 5 ms) so a thread woken for its
# paced slot runs on time instead of waiting for another thread's turn to end.
LINE_SENDER_SWITCH_INTERVAL = env.float("LINE_SENDER_SWITCH_INTERVAL", default=0.001)
LINE_RICHMENU_RATE_PER_SECOND = env.int("LINE_RICHMENU_RATE_PER_SECOND", default=2000)
LINE_AUDIENCE_RATE_PER_MINUTE = env.int("LINE_AUDIENCE_RATE_PER_MINUTE", default=60)
LINE_CONNECT_TIMEOUT = env.float("LINE_CONNECT_TIMEOUT", default=3.05)
LINE_READ_TIMEOUT = env.float("LINE_READ_TIMEOUT", default=10.0)
LINE_AUDIENCE_READ_TIMEOUT = env.float("LINE_AUDIENCE_READ_TIMEOUT", default=30.0)
LINE_SEND_BATCH_SIZE = env.int("LINE_SEND_BATCH_SIZE", default=1000)
LINE_SEND_THREADS = env.int("LINE_SEND_THREADS", default=8)
LINE_SEND_LEASE_SECONDS = env.int("LINE_SEND_LEASE_SECONDS", default=120)
LINE_SEND_MAX_AGE_HOURS = env.int("LINE_SEND_MAX_AGE_HOURS", default=23)
LINE_SEND_RETRY_BASE_SECONDS = env.float("LINE_SEND_RETRY_BASE_SECONDS", default=1.0)
LINE_SENDER_CONCURRENCY = env.int("LINE_SENDER_CONCURRENCY", default=2)
LINE_SENDER_TASK_SECONDS = env.int("LINE_SENDER_TASK_SECONDS", default=50)
LINE_LINK_URL = env.str("LINE_LINK_URL", default="https://jp.mercari.com/line/link?linkToken={link_token}")
LINE_ACCOUNT_LINK_URL = env.str("LINE_ACCOUNT_LINK_URL", default="https://access.line.me/dialog/bot/accountLink")
LINE_GREETING_TEXT = env.str("LINE_GREETING_TEXT", default="メルカリのアカウントとLINEの連携が完了しました。ようこそ！")
LINE_RICH_MENU_LINKED = env.str("LINE_RICH_MENU_LINKED", default="richmenu-00000000000000000000000000000001")
LINE_RICH_MENU_UNLINKED = env.str("LINE_RICH_MENU_UNLINKED", default="")
LINE_AUDIENCE_CHUNK_SIZE = env.int("LINE_AUDIENCE_CHUNK_SIZE", default=10000)
LINE_AUDIENCE_MAX_JOBS = env.int("LINE_AUDIENCE_MAX_JOBS", default=10)
LINE_AUDIENCE_ROTATE_DAYS = env.int("LINE_AUDIENCE_ROTATE_DAYS", default=170)
LINE_AUDIENCE_DESCRIPTION = env.str("LINE_AUDIENCE_DESCRIPTION", default="mercari linked users")
LINE_SANDBOX_AUDIENCE_JOB_SECONDS = env.float("LINE_SANDBOX_AUDIENCE_JOB_SECONDS", default=5.0)

# --- Campaigns ----------------------------------------------------------------
POINTS_API_URL = env.str("POINTS_API_URL", default="")
POINTS_API_TOKEN = env.str("POINTS_API_TOKEN", default="")
POINTS_API_TIMEOUT_SECONDS = env.float("POINTS_API_TIMEOUT_SECONDS", default=5.0)
CAMPAIGNS_CATALOG_CHECK_SECONDS = env.float("CAMPAIGNS_CATALOG_CHECK_SECONDS", default=2.0)
CAMPAIGNS_CATALOG_MAX_AGE_SECONDS = env.float("CAMPAIGNS_CATALOG_MAX_AGE_SECONDS", default=300.0)
CAMPAIGNS_SWEEP_AFTER_SECONDS = env.int("CAMPAIGNS_SWEEP_AFTER_SECONDS", default=60)
# A backtest still queued after this long lost its task message (broker down when it was queued): requeued.
CAMPAIGNS_BACKTEST_REQUEUE_AFTER_SECONDS = env.int("CAMPAIGNS_BACKTEST_REQUEUE_AFTER_SECONDS", default=300)
CAMPAIGNS_GRANT_RETRY_MAX_SECONDS = env.int("CAMPAIGNS_GRANT_RETRY_MAX_SECONDS", default=3600)
# A grant the points service refused (a sporadic 503) is retried after this, doubling per attempt.
CAMPAIGNS_GRANT_RETRY_BASE_SECONDS = env.int("CAMPAIGNS_GRANT_RETRY_BASE_SECONDS", default=10)
# Points service circuit breaker: unavailable answers in a row that pause delivery (no attempt charged), and
# the pause (doubling from RETRY to RETRY_MAX seconds) before the next probe.
CAMPAIGNS_POINTS_BREAKER_FAILURES = env.int("CAMPAIGNS_POINTS_BREAKER_FAILURES", default=5)
CAMPAIGNS_POINTS_BREAKER_RETRY_SECONDS = env.int("CAMPAIGNS_POINTS_BREAKER_RETRY_SECONDS", default=5)
CAMPAIGNS_POINTS_BREAKER_RETRY_MAX_SECONDS = env.int("CAMPAIGNS_POINTS_BREAKER_RETRY_MAX_SECONDS", default=30)
CAMPAIGNS_ESTIMATE_MAX_ITEMS = env.int("CAMPAIGNS_ESTIMATE_MAX_ITEMS", default=100)
API_TOKEN_CACHE_SECONDS = env.float("API_TOKEN_CACHE_SECONDS", default=60.0)
API_TOKEN_EPOCH_TIMEOUT_SECONDS = env.float("API_TOKEN_EPOCH_TIMEOUT_SECONDS", default=0.25)
CAMPAIGNS_ESTIMATE_PREPARED = env.bool("CAMPAIGNS_ESTIMATE_PREPARED", default=True)

# --- History ------------------------------------------------------------------
REPAYMENT_API_URL = env.str("REPAYMENT_API_URL", default="")
REPAYMENT_API_TOKEN = env.str("REPAYMENT_API_TOKEN", default="")
REPAYMENT_TIMEOUT_SECONDS = env.float("REPAYMENT_TIMEOUT_SECONDS", default=10.0)
REPAYMENT_MAX_ATTEMPTS = env.int("REPAYMENT_MAX_ATTEMPTS", default=8)
HISTORY_PAGE_SIZE = env.int("HISTORY_PAGE_SIZE", default=20)
HISTORY_PAGE_SIZE_MAX = env.int("HISTORY_PAGE_SIZE_MAX", default=100)

# --- Loyalty ------------------------------------------------------------------
# Customers per transaction when a rules change recomputes every stage.
LOYALTY_RECOMPUTE_BATCH_SIZE = env.int("LOYALTY_RECOMPUTE_BATCH_SIZE", default=500)
# Stage changes returned by GET /api/loyalty/customers/<customer_id>.
LOYALTY_API_RECENT_CHANGES = env.int("LOYALTY_API_RECENT_CHANGES", default=10)

# Four eyes: a re-send, replay or discard of more items than this needs an approver (change request).
CHANGE_REQUEST_MASS_THRESHOLD = env.int("CHANGE_REQUEST_MASS_THRESHOLD", default=100)
# A change of a live campaign is backtested as proposed, in the request, when last month has at most this many lines.
CHANGE_REQUEST_SYNC_BACKTEST_MAX_LINES = env.int("CHANGE_REQUEST_SYNC_BACKTEST_MAX_LINES", default=20000)

# Freeze the loaded application out of the cyclic GC when the WSGI entry point loads (read-serving pools
# on sync workers: estimate, history). Off by default: it slowed the threaded ingestion pool.
WSGI_GC_FREEZE = env.bool("WSGI_GC_FREEZE", default=False)

# --- Metrics (Prometheus, docs/operations.md "Metrics") -------------------------
# Off: counters and histograms are not counted (the push bench's "without metrics"); scrape gauges remain.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
# GET /metrics wants "Authorization: Bearer <METRICS_TOKEN>"; with DEBUG off and no token it answers 401 to all.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="dev-metrics-token" if DEBUG else "")
# prometheus-client's multiprocess folder, shared by the web, workers and beat of one machine; each process
# group cleans the files of dead processes when it starts (mercari_ops/common/metrics/process.py).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics"))
