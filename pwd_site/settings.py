"""Settings for pwd, read from the environment (see docs/configuration.md).

Development defaults are safe on a laptop: SQLite, in-memory channel layer, DEBUG off
unless asked for. Every PWD_* variable is listed in .env.example and
docs/configuration.md; tests/test_configuration.py fails when one is not.
"""

import ipaddress
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from pwd_site.env import (
    envbool,
    envchoice,
    envduration,
    envfloat,
    envint,
    envlist,
    envrate,
    envsize,
    envstr,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"
# Production behind a TLS-terminating proxy: secure cookies, HSTS, HTTPS redirect, and
# a refusal to start with development values (see docs/security.md).
PRODUCTION = envbool("PWD_PRODUCTION", False)
DEBUG = envbool("PWD_DEBUG", False)
SECRET_KEY = envstr("PWD_SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = envlist("PWD_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
# Extra origins allowed to open websockets and call the API from a browser (exact
# scheme://host[:port] values); the app's own host is always allowed.
PWD_TRUSTED_ORIGINS = envlist("PWD_TRUSTED_ORIGINS", [])
CSRF_TRUSTED_ORIGINS = PWD_TRUSTED_ORIGINS
# Documentation sites that embed pwd: exact ``scheme://host[:port]`` origins, never a
# suffix. They get CORS with credentials on the embed and Play with Docker routes, may
# frame the embed pages, and may open their websockets (docs/embed.md, docs/compat.md).
PWD_EMBED_ORIGINS = envlist("PWD_EMBED_ORIGINS", [])
# The API takes the embed script's calls (native embed, static/pwd/embed.js) as well.
CORS_ALLOWED_ORIGINS = envlist("PWD_CORS_ORIGINS", []) + PWD_EMBED_ORIGINS
# Hosts a Play with Docker upload (``?url=``) may fetch from, exact names; empty: none.
PWD_COMPAT_UPLOAD_HOSTS = envlist("PWD_COMPAT_UPLOAD_HOSTS", [])
# The largest request body the server takes at all; a bigger one is refused with 413
# before it is read (pwd_site/bodylimit.py). The API's own cap on its JSON is lower.
PWD_MAX_BODY = envsize("PWD_MAX_BODY", "1m")
# The largest upload into a node (its files together, POST .../files/; 413 past it). Only
# that request's body may pass PWD_MAX_BODY, by this much and its multipart framing.
PWD_MAX_UPLOAD = envsize("PWD_MAX_UPLOAD", "100m")

INSTALLED_APPS = [
    "daphne",
    # Instructors are Django users; operators use the admin (docs/workshops.md).
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Failed logins throttled per user name and address.
    "axes",
    "channels",
    # The API; its static files are the interactive docs' (/api/docs/).
    "ninja",
    "sessions_app",
    "terminals",
    "front",
    "pwd_compat",
    "workshops",
    "metrics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside everything that answers by itself (static files, the API's JSON errors and
    # refusals), so that every response carries X-Frame-Options.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pwd_site.security.SecurityHeadersMiddleware",
    # Before the rest so that Django's own 404/500 pages under /api/ become JSON errors.
    "sessions_app.middleware.ApiMiddleware",
    "pwd_site.staticfiles.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as django-axes asks: it turns a lockout into the "too many attempts" answer.
    "axes.middleware.AxesMiddleware",
]

# Workshops (docs/workshops.md): seats are made from creation, or this long before
# starts_at, PWD_WORKSHOP_PARALLELISM at once by `manage.py workshops`; a seat whose
# making takes longer than PWD_WORKSHOP_SEAT_TIMEOUT is taken over by another pass.
PWD_WORKSHOP_PREPARE_BEFORE = envduration("PWD_WORKSHOP_PREPARE_BEFORE", "30m")
PWD_WORKSHOP_PARALLELISM = envint("PWD_WORKSHOP_PARALLELISM", 4, minimum=1)
PWD_WORKSHOP_SEAT_TIMEOUT = envduration("PWD_WORKSHOP_SEAT_TIMEOUT", "10m")
# A failed seat is tried again after PWD_WORKSHOP_RETRY_DELAY, PWD_WORKSHOP_RETRIES times.
PWD_WORKSHOP_RETRIES = envint("PWD_WORKSHOP_RETRIES", 3, minimum=0)
PWD_WORKSHOP_RETRY_DELAY = envduration("PWD_WORKSHOP_RETRY_DELAY", "20s")
PWD_WORKSHOP_MAX_SEATS = envint("PWD_WORKSHOP_MAX_SEATS", 200, minimum=1)
PWD_WORKSHOP_MAX_LENGTH = envduration("PWD_WORKSHOP_MAX_LENGTH", "12h")
# How much "extend all" adds to a workshop's end each time.
PWD_WORKSHOP_EXTEND = envduration("PWD_WORKSHOP_EXTEND", "30m")

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/workshops/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Failed logins: after PWD_LOGIN_ATTEMPTS for one user name from one address, that pair
# is refused (429) for PWD_LOGIN_COOLOFF; a success resets the count.
PWD_LOGIN_ATTEMPTS = envint("PWD_LOGIN_ATTEMPTS", 5, minimum=1)
PWD_LOGIN_COOLOFF = envduration("PWD_LOGIN_COOLOFF", "15m")
AXES_FAILURE_LIMIT = PWD_LOGIN_ATTEMPTS
AXES_COOLOFF_TIME = PWD_LOGIN_COOLOFF / 3600  # hours, as django-axes counts
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "sessions_app.quotas.client_address"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "pwd_site.urls"
ASGI_APPLICATION = "pwd_site.asgi.application"

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
                "sessions_app.isolation.context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock at BEGIN, so two requests racing for the
    # last node slot are serialised instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = envstr("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py reads with a 5 s socket timeout by default, as long as the layer's
            # blocking pop waits for a message: a reply a moment late (a busy machine)
            # then fails the listener. Reads wait longer than a pop can (a socket_timeout
            # in REDIS_URL's query still wins).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise warns about a missing STATIC_ROOT when collectstatic has not run (make run,
# tests); the folder is gitignored and filled by collectstatic in the app image.
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/xterm", BASE_DIR / "node_modules" / "@xterm" / "xterm"),
    ("vendor/xterm-addon-fit", BASE_DIR / "node_modules" / "@xterm" / "addon-fit"),
    ("vendor/xterm-addon-webgl", BASE_DIR / "node_modules" / "@xterm" / "addon-webgl"),
]
# Serve straight from the finders when collectstatic has not run (make run, tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Session ids are credentials: every record (django.request's "Not Found: /p/<id>/"
    # too) has them cut to their first characters before it is written.
    "filters": {"redact": {"()": "pwd_site.redact.RedactSessionIds"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": envstr("PWD_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "docker": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # The port proxy's client would log every proxied request at INFO.
        "httpx": {"level": "WARNING"},
    },
}

# --- pwd ------------------------------------------------------------------------------
# Every object the app creates on the engine carries pwd.instance=<this>, so two pwd
# installations (or two test runs) can share one engine without reaping each other.
PWD_INSTANCE = envstr("PWD_INSTANCE", "pwd")
PWD_NODE_IMAGE = envstr("PWD_NODE_IMAGE", "pwd-node")
PWD_NODE_IMAGES = envlist("PWD_NODE_IMAGES", [PWD_NODE_IMAGE])
# auto: userns when the engine remaps users, else probe once at start whether
# --privileged works, else explicit capabilities.
PWD_NODE_PROFILE = envchoice(
    "PWD_NODE_PROFILE", "auto", ("auto", "userns", "sysbox", "privileged", "caps")
)
# Production refuses a node profile that fails the escape checks unless the operator
# says that everyone who can reach the installation may have root on the host.
PWD_TRUSTED_USERS_ONLY = envbool("PWD_TRUSTED_USERS_ONLY", False)
# The OCI runtime of nodes with the sysbox profile (DinD without privileged containers).
PWD_SYSBOX_RUNTIME = envstr("PWD_SYSBOX_RUNTIME", "sysbox-runc")
# Per-node limits, enforced by the engine.
PWD_NODE_MEMORY = envsize("PWD_NODE_MEMORY", "1g")
PWD_NODE_SWAP = envsize("PWD_NODE_SWAP", "1g")
PWD_NODE_CPUS = envfloat("PWD_NODE_CPUS", 1.0, minimum=0.01)
PWD_NODE_PIDS = envint("PWD_NODE_PIDS", 1000, minimum=64)
PWD_NODE_LOG_SIZE = envsize("PWD_NODE_LOG_SIZE", "1m")
# Disk per node: a sparse ext4 image holding everything the node writes (its root
# filesystem's changes and the inner engine's data); 0: no disk of its own (uncapped).
PWD_NODE_DISK = envsize("PWD_NODE_DISK", "10g")
# Where node disk images are made and mounted on the engine host.
PWD_DISK_DIR = envstr("PWD_DISK_DIR", "/var/lib/pwd/disks")
PWD_MAX_NODES = envint("PWD_MAX_NODES", 5, minimum=1)
PWD_SESSION_LIFETIME = envduration("PWD_SESSION_LIFETIME", "4h")
PWD_IDLE_TIMEOUT = envduration("PWD_IDLE_TIMEOUT", "30m")
PWD_EXPIRY_WARNING = envduration("PWD_EXPIRY_WARNING", "2m")
PWD_REAP_INTERVAL = envduration("PWD_REAP_INTERVAL", "5s")
# How long ending a session or removing a node waits for the engine before answering;
# what is not removed by then goes on in the background (and the reaper's) anyway.
PWD_REMOVAL_WAIT = envduration("PWD_REMOVAL_WAIT", "10s")
# How often viewers get each node's CPU and memory (node.stats); the engine samples
# every second, so below 1s changes nothing.
PWD_STATS_INTERVAL = envduration("PWD_STATS_INTERVAL", "3s")
PWD_NODE_START_TIMEOUT = envduration("PWD_NODE_START_TIMEOUT", "60s")
PWD_EXEC_MAX_OUTPUT = envsize("PWD_EXEC_MAX_OUTPUT", "1m")
PWD_POOL_SIZE = envint("PWD_POOL_SIZE", 2, minimum=0)
# Under churn the keeper grows the pool to the observed rate of takes, up to PWD_POOL_MAX
# ready nodes and as many as PWD_POOL_MEMORY holds at the nodes' measured idle memory.
PWD_POOL_MAX = envint("PWD_POOL_MAX", 8, minimum=0)
PWD_POOL_MEMORY = envsize("PWD_POOL_MEMORY", "2g")
# Attach ahead: each session keeps one pool node on its network, already named as its
# next node, so an add hands it out without an engine round trip (only with a pool).
PWD_POOL_PREPARE = envbool("PWD_POOL_PREPARE", True)
# Hot sessions: whole sessions (network, node1, shell waiting) the keeper holds for the
# landing page's Start to take (sessions_app.hot); 0 turns them off.
PWD_POOL_SESSIONS = envint("PWD_POOL_SESSIONS", 2, minimum=0)
# Capabilities taken away from every node even when the engine would grant them; loading
# kernel modules from a node is how the public Play with Docker service was escaped.
PWD_NODE_CAP_DROP = envlist("PWD_NODE_CAP_DROP", ["SYS_MODULE"])
# Threads for blocking engine calls; a class starting at once must not queue on one thread.
PWD_ENGINE_THREADS = envint("PWD_ENGINE_THREADS", 32, minimum=2)
# The exec API has threads of its own (a command holds one for up to 10 minutes), and
# one session runs at most PWD_EXEC_PER_SESSION at once in a web process; its further
# execs wait for their turn, so no session's commands delay another's.
PWD_EXEC_THREADS = envint("PWD_EXEC_THREADS", 32, minimum=1)
PWD_EXEC_PER_SESSION = envint("PWD_EXEC_PER_SESSION", 4, minimum=1)

# --- abuse controls ---------------------------------------------------------------------
# Sessions one client address may create per period (a sliding window over the session
# rows, so it holds across processes). A class of 30 behind one NAT starting at once,
# and starting again after a mistake, stays under 60 an hour.
PWD_SESSIONS_PER_IP = envrate("PWD_SESSIONS_PER_IP", "60/h")
# Installation-wide caps; past them new sessions or nodes get 429 with Retry-After.
PWD_MAX_SESSIONS = envint("PWD_MAX_SESSIONS", 100, minimum=1)
PWD_MAX_TOTAL_NODES = envint("PWD_MAX_TOTAL_NODES", 100, minimum=1)
# Per client address, active sessions and their nodes: a class of 30 behind one NAT,
# each trainee with a spare session and two nodes on average, fits; one address cannot
# take the whole installation.
PWD_MAX_SESSIONS_PER_CLIENT = envint("PWD_MAX_SESSIONS_PER_CLIENT", 40, minimum=1)
PWD_MAX_NODES_PER_CLIENT = envint("PWD_MAX_NODES_PER_CLIENT", 60, minimum=1)
# Embedded terminals (front/embed.py): a class behind one NAT reads the same docs page, so
# an address gets a larger creation rate there (counted per embedding origin); one popular
# page (origin) may hold at most this many active sessions and nodes.
PWD_EMBED_SESSIONS_PER_IP = envrate("PWD_EMBED_SESSIONS_PER_IP", "300/h")
PWD_EMBED_SESSIONS_PER_ORIGIN = envint("PWD_EMBED_SESSIONS_PER_ORIGIN", 50, minimum=1)
PWD_EMBED_NODES_PER_ORIGIN = envint("PWD_EMBED_NODES_PER_ORIGIN", 60, minimum=1)
# Addresses (or networks) of reverse proxies whose X-Forwarded-For is believed; empty:
# the peer address is the client (daphne runs without --proxy-headers).
PWD_TRUSTED_PROXIES = envlist("PWD_TRUSTED_PROXIES", [])
# Addresses or networks that may read /metrics and /api/capacity/ (docs/operations.md).
PWD_METRICS_ALLOW = envlist("PWD_METRICS_ALLOW", ["127.0.0.0/8", "::1"])
for _network in PWD_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"PWD_METRICS_ALLOW: {_network!r} is no address") from None

# --- port URLs: <token>-<node>-<port>.<PWD_PORTS_DOMAIN> (sessions_app/ports.py) -----------
# A different site from the app's (see docs/security.md): a page a trainee serves there
# must get none of the app's cookies and be a foreign origin to its API.
PWD_PORTS_DOMAIN = envstr("PWD_PORTS_DOMAIN", "localhost").strip().strip(".").lower()
PWD_PORTS_SCHEME = envchoice(
    "PWD_PORTS_SCHEME", "https" if PRODUCTION else "http", ("http", "https")
)
# 0: the port this server listens on (right without a proxy in front).
PWD_PORTS_PORT = envint("PWD_PORTS_PORT", 0, minimum=0)
if not re.fullmatch(
    r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", PWD_PORTS_DOMAIN
):
    raise ImproperlyConfigured(f"PWD_PORTS_DOMAIN must be a DNS name, not {PWD_PORTS_DOMAIN!r}")
# Every name under localhost is a site of its own; any other domain must be outside the
# app's host names (and not theirs under it), or a port URL would share the app's site.
for _host in ALLOWED_HOSTS if PWD_PORTS_DOMAIN != "localhost" else []:
    _host = _host.lstrip(".").lower()
    if (
        _host == "*"
        or _host == PWD_PORTS_DOMAIN
        or PWD_PORTS_DOMAIN.endswith("." + _host)
        or _host.endswith("." + PWD_PORTS_DOMAIN)
    ):
        raise ImproperlyConfigured(
            f"PWD_PORTS_DOMAIN {PWD_PORTS_DOMAIN!r} must be a different site from the app's "
            f"host {_host!r} (PWD_ALLOWED_HOSTS): use a domain of its own"
        )

# --- web security -------------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("PWD_DEBUG must be false when PWD_PRODUCTION is true")
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "PWD_SECRET_KEY must be set to a random value of 50 characters or more "
            "when PWD_PRODUCTION is true"
        )
    # TLS ends at the proxy, which must set X-Forwarded-Proto (and strip a client's).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Health checks come from the proxy or the orchestrator over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = envint("PWD_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
