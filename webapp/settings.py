"""Switchboard settings: every knob is an environment variable, read here and nowhere else.

With nothing set, the embedded default runs: SQLite under the project, the in-memory
channel layer, inference in-process on the bundled SmolLM2 model. Setting DATABASE_URL
and REDIS_URL turns on the production shape.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATABASE_URL = envstr("DATABASE_URL")
REDIS_URL = envstr("REDIS_URL")
# The embedded default is "no DATABASE_URL": one machine, no services.
EMBEDDED = not DATABASE_URL

DEBUG = envbool("DEBUG", EMBEDDED)
# The fallback key only exists so the embedded default starts with no settings;
# production settings refuse to start without SECRET_KEY (see below).
SECRET_KEY = envstr("SECRET_KEY") or "embedded-default-insecure-key-do-not-use-in-production"
if not EMBEDDED and not DEBUG and not envstr("SECRET_KEY"):
    raise RuntimeError("SECRET_KEY must be set when DATABASE_URL is set and DEBUG is off")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver" if EMBEDDED else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

# Localhost-only requests without a key act as the built-in "local" organization.
# Explicit, and never on unless this is the embedded default or someone says so.
DEV_OPEN_ACCESS = envbool("SWITCHBOARD_DEV_OPEN_ACCESS", EMBEDDED and DEBUG)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "webapp",
    "registry",
    "registry.tenancy",
    "inference",
    "inference.workflows",
    "inference.agents",
    "inference.context_window",
    "inference.runtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # NUL in an API path or query value, or a declared body over the cap: a 4xx envelope, no view.
    "webapp.middleware.ApiInputMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # An htmx request from an expired session: HX-Redirect to the login page, not a swapped-in login form.
    "webapp.dashboard.middleware.HtmxLoginRedirectMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so its process_exception sees a view's database or Redis outage first: a 503, not a 500.
    "registry.outages.OutageMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "webapp.asgi.application"

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
                # The dashboard's organization and role, for the nav and owner-only controls.
                "webapp.dashboard.access.dashboard_context",
            ],
        },
    },
]

DATA_DIR = Path(envstr("SWITCHBOARD_DATA_DIR", str(BASE_DIR / "var")))
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)}
    # A database that is down must fail a request in seconds, not after the OS's TCP timeout (minutes).
    # Health checks make each request drop a dead connection and reconnect once it is back: no restart.
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # a SQLite DATABASE_URL has no such option
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
            "connect_timeout", envint("DATABASE_CONNECT_TIMEOUT_S", 2))
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "switchboard.sqlite3",
            # WAL lets the in-process metrics writer and request handlers overlap.
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                        "transaction_mode": "IMMEDIATE"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis clients that only run short commands (quotas, rate limits, the rules version, the cache) give up
# on an unreachable Redis after these many seconds, so a Redis outage is a quick 503, never a hang.
REDIS_CONNECT_TIMEOUT_S = envfloat("REDIS_CONNECT_TIMEOUT_S", 1.0)
REDIS_SOCKET_TIMEOUT_S = envfloat("REDIS_SOCKET_TIMEOUT_S", 2.0)
# While PostgreSQL is unreachable, keys and blocks already in the gateway's caches keep being served
# this many seconds past their normal lifetime (a key revoked meanwhile works as long); 0 turns it off.
DB_OUTAGE_GRACE_S = envfloat("DB_OUTAGE_GRACE_S", 300.0)
# The gateway waits this long at most for a key, block or rules lookup (normally ~1 ms); past it the
# database counts as down, as when it refuses connections.
DB_LOOKUP_TIMEOUT_S = envfloat("DB_LOOKUP_TIMEOUT_S", 3.0)

if REDIS_URL:
    # channels_redis waits for a socket's messages in a 5 s BZPOPMIN (RedisChannelLayer.brpop_timeout),
    # and redis-py's default socket_timeout is 5 s too: whenever the client's timer fired first, the pop
    # raised redis TimeoutError and took a WebSocket down without a close frame. Reads get 10 s more
    # than the pop; keepalive and a ping before reusing an idle connection catch dead ones instead.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5,
                                  "socket_keepalive": True, "health_check_interval": 30}]},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
                                      "socket_timeout": REDIS_SOCKET_TIMEOUT_S}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Failed password logins (dashboard and admin, webapp/login_throttle.py): past the limit within the
# window, the username (from anywhere) or the address (for any username) is refused for the lockout.
# The address gets a higher limit: several people may share one (an office behind one NAT).
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_LIMIT_PER_ADDRESS = envint("LOGIN_FAILURE_LIMIT_PER_ADDRESS", 20)
LOGIN_FAILURE_WINDOW_S = envint("LOGIN_FAILURE_WINDOW_S", 900)
LOGIN_LOCKOUT_S = envint("LOGIN_LOCKOUT_S", 900)
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "registry.auth.ApiKeyAuthentication",
        "registry.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["registry.auth.HasOrganization"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["registry.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "registry.envelope.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": "Block registry, discovery and inference gateway.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page's JS and CSS come from our own static files: no CDN (offline installs work).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every status each operation can answer, and the /v1 gateway (served by consumers, not views).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "webapp.openapi.postprocess"],
}

# Celery: Redis is broker and result store unless CELERY_BROKER_URL says otherwise (RabbitMQ works).
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = envstr("CELERY_RESULT_BACKEND", REDIS_URL or "cache+memory://")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_VISIBILITY_TIMEOUT = envint("CELERY_VISIBILITY_TIMEOUT", 600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # How often a Redis consumer sweeps for messages whose worker died (re-delivery latency).
    "unacked_restore_interval": envint("CELERY_UNACKED_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": envint("CELERY_UNACKED_RESTORE_THROTTLE", 10),
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 540)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 570)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = False
# The workflow sweeper (inference/workflows): approval deadlines, lost nodes. Beat, never countdowns.
CELERY_BEAT_SCHEDULE = {
    "workflows-sweep": {"task": "workflows.sweep", "schedule": envfloat("WORKFLOW_SWEEP_INTERVAL_S", 5.0)},
}

# Inference.
SWITCHBOARD_BUILTIN_BLOCK_ID = "smollm2-135m-instruct"
# The built-in embedding model's block (registry/embeddings.py), served on POST /v1/embeddings.
SWITCHBOARD_EMBEDDING_BLOCK_ID = "embed-minilm-l6"
# The operator's own organization: it holds the built-in model, its public blocks answer to
# unqualified names for every organization, and its owners are the operator (registry/roles.py).
SWITCHBOARD_PLATFORM_ORG = envstr("SWITCHBOARD_PLATFORM_ORG", "local")
LLAMACPP_THREADS = envint("LLAMACPP_THREADS", 2)
LLAMACPP_CONTEXT = envint("LLAMACPP_CONTEXT", 2048)
# The largest `n_ctx` a llamacpp block may ask for (only the operator may set one): the KV cache of
# a model file's one shared instance grows with it (SmolLM2 at 8192: about +300 MB).
LLAMACPP_MAX_CONTEXT = envint("LLAMACPP_MAX_CONTEXT", max(8192, LLAMACPP_CONTEXT))
# Module prefixes a `python` block's class may come from, checked on the dotted path before any
# import (registry/server_code.py). A tenant can never create a python block; this bounds the operator too.
PYTHON_BACKEND_MODULES = envlist("PYTHON_BACKEND_MODULES", "inference.backends.examples")
# An answer that names no max_tokens stops here: a 135M model left to fill its context rambles
# for ~2,000 tokens and half a minute.
LLAMACPP_MAX_TOKENS = envint("LLAMACPP_MAX_TOKENS", 512)
UPSTREAM_TIMEOUT_S = envfloat("UPSTREAM_TIMEOUT_S", 120.0)
UPSTREAM_CONNECT_TIMEOUT_S = envfloat("UPSTREAM_CONNECT_TIMEOUT_S", 5.0)
ENGINE_HEARTBEAT_STALE_S = envfloat("ENGINE_HEARTBEAT_STALE_S", 5.0)
# Egress (registry/egress.py): tenant-defined backends reach public addresses only. CIDRs and host
# names listed here are opened to every block (e.g. "10.0.0.0/8,llm.internal"); empty by default.
EGRESS_ALLOW = envlist("EGRESS_ALLOW", "")
# A /v1 request that already went through this many gateways (X-Switchboard-Hops) is refused with a
# 508 `loop_detected`: a block pointing at a gateway costs at most this many extra requests.
GATEWAY_MAX_HOPS = envint("GATEWAY_MAX_HOPS", 2)
# The serving process's garbage collector (inference/lifespan.py, at ASGI lifespan startup): freeze what
# startup loaded, and collect the youngest generation only after this many net new objects (Python: 700).
SERVER_GC_FREEZE = envbool("SERVER_GC_FREEZE", True)
SERVER_GC_THRESHOLD = envint("SERVER_GC_THRESHOLD", 10_000)

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Health checks come over plain HTTP from the orchestrator.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
}

# Whitenoise serves the static files from where they live (static/ and the apps' static folders,
# the same set collectstatic would copy) in every mode, DEBUG=0 included: `make run`, or uvicorn
# started any other way, needs no collectstatic step, and a volume over STATIC_ROOT hides nothing.
# With DEBUG off it indexes them once at startup (172 files, ~16 ms); files collected into
# STATIC_ROOT (the Docker image does) are served too, the source copy winning.
WHITENOISE_USE_FINDERS = True

# Workers (inference/workers): queued requests write their tokens to a Redis Stream per request.
WORKER_STREAM_FLUSH_MS = envfloat("WORKER_STREAM_FLUSH_MS", 20.0)
WORKER_STREAM_TTL_S = envint("WORKER_STREAM_TTL_S", 3600)
# A queued request whose client went away keeps running this long, so a reconnect can resume it.
QUEUED_RESUME_GRACE_S = envfloat("QUEUED_RESUME_GRACE_S", 10.0)
# A queued request's executor renews this lease while it runs; a duplicate delivery waits it out.
WORKER_LEASE_S = envfloat("WORKER_LEASE_S", 5.0)
# Queued requests for one GPU node enqueued in the same instant travel as one Celery task, up to
# this many: Celery's consumer takes ~2 ms per message here, so 64 messages start over ~130 ms.
WORKER_DISPATCH_BATCH = envint("WORKER_DISPATCH_BATCH", 16)
ENGINE_HEARTBEAT_S = envfloat("ENGINE_HEARTBEAT_S", 1.0)
ENGINE_START_TIMEOUT_S = envfloat("ENGINE_START_TIMEOUT_S", 900.0)
# Workflows (inference/workflows, docs/workflows.md): nodes run as Celery tasks when Redis is configured,
# else on a thread pool in the serving process (the embedded default), with the same database records.
WORKFLOW_EXECUTOR = envstr("WORKFLOW_EXECUTOR", "celery" if REDIS_URL else "inprocess")
WORKFLOW_QUEUE = envstr("WORKFLOW_QUEUE", "default")
WORKFLOW_INPROCESS_WORKERS = envint("WORKFLOW_INPROCESS_WORKERS", 8)
# A running node renews its lease every heartbeat (and sees a cancel then); a node whose lease ran out
# (its worker died) is given to another executor by the sweeper.
WORKFLOW_HEARTBEAT_S = envfloat("WORKFLOW_HEARTBEAT_S", 0.5)
WORKFLOW_LEASE_S = envfloat("WORKFLOW_LEASE_S", 30.0)
WORKFLOW_SWEEP_INTERVAL_S = envfloat("WORKFLOW_SWEEP_INTERVAL_S", 5.0)
# A Celery task that finishes a node runs one child it made ready itself (services.node_run_chain), rather
# than through the broker, while the task is younger than the budget; its siblings go through the broker.
WORKFLOW_INLINE_CHILD = envbool("WORKFLOW_INLINE_CHILD", True)
WORKFLOW_INLINE_BUDGET_S = envfloat("WORKFLOW_INLINE_BUDGET_S", 60.0)
# An open live feed of a run (SSE or WebSocket) reads its new events this often.
WORKFLOW_EVENTS_POLL_S = envfloat("WORKFLOW_EVENTS_POLL_S", 0.2)
# A chat request held for approval (a policy's approval_required) reads its decision at most this often.
GATEWAY_APPROVAL_POLL_S = envfloat("GATEWAY_APPROVAL_POLL_S", 1.0)
# The context window API (inference/context_window): the most messages one session keeps.
CONTEXT_SESSION_MAX_MESSAGES = envint("CONTEXT_SESSION_MAX_MESSAGES", 2000)

# The low-level Runtime (inference/runtime, docs/runtime.md): how many components an organization keeps,
# how many rows one vector store holds and how wide its vectors may be; whether the `http_request`
# operator exists at all (each organization still needs its RuntimeAccess flag, set by the operator),
# its timeout and the most of an answer it reads.
RUNTIME_MAX_COMPONENTS = envint("RUNTIME_MAX_COMPONENTS", 64)
RUNTIME_VECTOR_STORE_MAX_ROWS = envint("RUNTIME_VECTOR_STORE_MAX_ROWS", 100_000)
RUNTIME_VECTOR_MAX_DIMENSION = envint("RUNTIME_VECTOR_MAX_DIMENSION", 4096)
# Rows a vector store's query holds in memory at once (at 4,096 dimensions, 5,000 rows are 80 MB).
RUNTIME_VECTOR_SCAN_ROWS = envint("RUNTIME_VECTOR_SCAN_ROWS", 5000)
RUNTIME_HTTP_REQUEST = envbool("RUNTIME_HTTP_REQUEST", True)
RUNTIME_HTTP_TIMEOUT_S = envfloat("RUNTIME_HTTP_TIMEOUT_S", 30.0)
RUNTIME_HTTP_MAX_BYTES = envint("RUNTIME_HTTP_MAX_BYTES", 1_048_576)
# The embedded default has no beat: its serving process runs the sweeper on a thread.
WORKFLOW_SWEEPER_THREAD = envbool("WORKFLOW_SWEEPER_THREAD", WORKFLOW_EXECUTOR == "inprocess" and EMBEDDED)

# Bad input (registry/jsonsafe.py, registry/parsers.py, webapp/middleware.py, the gateway's consumers).
# Largest REST API body (/api, /discovery); bigger ones are a 413 envelope.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("API_MAX_BODY_BYTES", 2_621_440)
# Largest /v1 request body; bigger ones are an OpenAI-shaped 413, refused while it is still arriving.
GATEWAY_MAX_BODY_BYTES = envint("GATEWAY_MAX_BODY_BYTES", 8 * 1024 * 1024)
# Deepest JSON nesting accepted in any request body (the query language itself nests 10 levels at most).
SWITCHBOARD_MAX_JSON_DEPTH = envint("SWITCHBOARD_MAX_JSON_DEPTH", 64)

# Similarity search and embeddings (registry/similarity; docs/registry-api.md, docs/planning.md).
# PyTorch threads the embedding model may use in one process (all-MiniLM-L6-v2 on CPU).
EMBEDDING_THREADS = envint("EMBEDDING_THREADS", 1)
# Who embeds a block after a write: "celery" (the task registry.embed_blocks; default with REDIS_URL),
# "thread" (a daemon thread in the writing process; the embedded default) or "off" (searches embed on
# demand and `manage.py embed_blocks` catches up).
EMBEDDINGS_DISPATCH = envstr("EMBEDDINGS_DISPATCH", "celery" if REDIS_URL else "thread")
if EMBEDDINGS_DISPATCH not in ("celery", "thread", "off"):
    raise RuntimeError("EMBEDDINGS_DISPATCH must be celery, thread or off")
# A search first embeds up to this many of its candidates whose embedding is pending (0: none).
SIMILARITY_EMBED_ON_DEMAND_MAX = envint("SIMILARITY_EMBED_ON_DEMAND_MAX", 64)
# Below this cosine similarity of the best hit, no block fits the task (the API's `abstain`; the planner's
# 404 no_fitting_model). Calibrated on the calibration half of tests/registry/fixtures/relevance.json
# (tests/registry/test_similarity.py checks it is what that calibration gives): see docs/planning.md.
SIMILARITY_MIN_SCORE = envfloat("SIMILARITY_MIN_SCORE", 0.2342)
# Task embeddings kept per process (LRU), so a repeated prompt is embedded once.
SIMILARITY_QUERY_CACHE_SIZE = envint("SIMILARITY_QUERY_CACHE_SIZE", 1024)
# pgvector's HNSW search breadth (hnsw.ef_search, at least the number of results asked for).
SIMILARITY_HNSW_EF_SEARCH = envint("SIMILARITY_HNSW_EF_SEARCH", 400)
# The hybrid policy fuses each list's best this many (or the results asked for, if more) with RRF's k.
SIMILARITY_HYBRID_DEPTH = envint("SIMILARITY_HYBRID_DEPTH", 50)
SIMILARITY_RRF_K = envint("SIMILARITY_RRF_K", 60)
# The performance policy: score = similarity - LATENCY_WEIGHT * p50/(p50 + LATENCY_REF_MS)
# - ERROR_WEIGHT * error rate, from the block metrics over the window (1m, 5m, 1h or 24h).
SIMILARITY_PERFORMANCE_WINDOW = envstr("SIMILARITY_PERFORMANCE_WINDOW", "1h")
SIMILARITY_PERFORMANCE_LATENCY_WEIGHT = envfloat("SIMILARITY_PERFORMANCE_LATENCY_WEIGHT", 0.02)
SIMILARITY_PERFORMANCE_ERROR_WEIGHT = envfloat("SIMILARITY_PERFORMANCE_ERROR_WEIGHT", 0.05)
SIMILARITY_PERFORMANCE_LATENCY_REF_MS = envfloat("SIMILARITY_PERFORMANCE_LATENCY_REF_MS", 1000.0)

# Request log and the operator's metrics (inference/request_log.py, docs/metrics.md).
# Request log rows older than this many days are deleted (the gateway's flusher, hourly, and
# `manage.py prune_request_log`).
REQUEST_LOG_RETENTION_DAYS = envint("REQUEST_LOG_RETENTION_DAYS", 7)
if REQUEST_LOG_RETENTION_DAYS < 1:
    raise RuntimeError("REQUEST_LOG_RETENTION_DAYS must be at least 1")
# GET /metrics (Prometheus text format) answers a request carrying `Authorization: Bearer <METRICS_TOKEN>`,
# or one from an address inside METRICS_ALLOW_NETWORKS (CIDRs, e.g. "10.0.0.0/8,127.0.0.1/32").
# Neither set: /metrics is a 404.
METRICS_TOKEN = envstr("METRICS_TOKEN")
METRICS_ALLOW_NETWORKS = envlist("METRICS_ALLOW_NETWORKS", "")
for _cidr in METRICS_ALLOW_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise RuntimeError(f"METRICS_ALLOW_NETWORKS: {_cidr!r} is not a network (e.g. 10.0.0.0/8)") from None
