"""Abuse controls: who is the client, and may it have another session or node.

The counts come from the database (session and node rows), so the limits hold across
any number of web processes. Each check runs inside the transaction that then inserts
the row: SQLite's IMMEDIATE transactions serialise them, on PostgreSQL an advisory lock
does, so two requests cannot both take the last place.
"""

import hashlib
import hmac
import ipaddress
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest

from front import wording
from sessions_app.errors import TooManyRequests
from sessions_app.models import Node, PoolNode, Session

# How long a client turned away at capacity is asked to wait: sessions end and nodes
# are removed all the time, so soon is worth a try.
CAPACITY_RETRY_AFTER = 60
_LOCK_KEY = 0x707764  # "pwd"


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(value, strict=False) for value in values]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str:
    """The client's address: the peer's, or behind a trusted proxy its X-Forwarded-For.

    X-Forwarded-For is read right to left, skipping the trusted proxies' own entries;
    the first other address is the client. Entries further left were written by the
    client itself and are ignored, so a client cannot choose its own address.
    """
    peer = request.META.get("REMOTE_ADDR", "") or ""
    proxies = _networks(settings.PWD_TRUSTED_PROXIES)
    peer_address = _address(peer)
    if not proxies or peer_address is None or not any(peer_address in n for n in proxies):
        return peer
    hops = [hop for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        if not any(address in n for n in proxies):
            return str(address)
    return peer


def client_key(address: str) -> str:
    """A keyed hash naming the client for the rate limit (addresses are not stored).

    An IPv6 client usually holds a whole /64, so the /64 is what is counted.
    """
    parsed = _address(address)
    if parsed is None:
        return ""
    if parsed.version == 6 and parsed.ipv4_mapped is None:
        name = str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    else:
        name = str(parsed.ipv4_mapped or parsed) if parsed.version == 6 else str(parsed)
    secret = settings.SECRET_KEY.encode()
    return hmac.new(secret, name.encode(), hashlib.sha256).hexdigest()[:32]


# Keys of sessions started through an embed: EMBED_MARK, the origin's hash, the address's.
EMBED_MARK = "~"
_ORIGIN_HASH = 11


def _keyed_hash(text: str, length: int) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), text.encode(), hashlib.sha256).hexdigest()[
        :length
    ]


def embed_key(origin: str, address: str) -> str:
    """The key of a session an embed on ``origin`` starts for ``address`` (32 characters,
    never a hex key of :func:`client_key`): counted per origin and address together, and
    per origin alone (:func:`origin_prefix`)."""
    client = client_key(address) or "-"
    rest = 32 - len(EMBED_MARK) - _ORIGIN_HASH
    return origin_prefix(origin) + _keyed_hash(client, rest)


def origin_prefix(origin: str) -> str:
    """What every embed key of ``origin`` starts with."""
    return EMBED_MARK + _keyed_hash(origin.strip().lower().rstrip("/"), _ORIGIN_HASH)


def _serialise() -> None:
    """Make concurrent quota checks take turns (call inside a transaction)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])


def check_new_session(key: str, now: datetime) -> None:
    """Raise TooManyRequests when the installation or this client may not start one.

    Call inside the transaction that creates the session row.
    """
    _serialise()
    if Session.objects.active(now).count() >= settings.PWD_MAX_SESSIONS:
        raise TooManyRequests(
            "pwd is at capacity: every session place is taken.",
            "at_capacity",
            retry_after=CAPACITY_RETRY_AFTER,
        )
    limit, period = settings.PWD_SESSIONS_PER_IP
    if not key:
        return
    if key.startswith(EMBED_MARK):
        limit, period = settings.PWD_EMBED_SESSIONS_PER_IP
        budget = settings.PWD_EMBED_SESSIONS_PER_ORIGIN
        prefix = key[: len(EMBED_MARK) + _ORIGIN_HASH]
        if Session.objects.active(now).filter(client_key__startswith=prefix).count() >= budget:
            raise TooManyRequests(
                f"The pages of this site already run {budget} sessions; try again soon.",
                "origin_limit",
                retry_after=CAPACITY_RETRY_AFTER,
            )
    own = settings.PWD_MAX_SESSIONS_PER_CLIENT
    if Session.objects.active(now).filter(client_key=key).count() >= own:
        raise TooManyRequests(
            f"Your address already has {own} sessions running; end one (or let it expire) first.",
            "client_limit",
            retry_after=CAPACITY_RETRY_AFTER,
        )
    recent = list(
        Session.objects.filter(client_key=key, created_at__gt=now - timedelta(seconds=period))
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) >= limit:
        # The oldest of the last `limit` sessions leaves the window first.
        wait = (recent[-1] + timedelta(seconds=period) - now).total_seconds()
        raise TooManyRequests(
            f"Too many sessions started from your address ({limit} per {wording.per(period)}).",
            "rate_limited",
            retry_after=max(1, math.ceil(wait)),
        )


def _nodes() -> QuerySet[Node]:
    return Node.objects.exclude(status=Node.Status.GONE).filter(session__held_at__isnull=True)


def nodes_in_use() -> int:
    """The nodes PWD_MAX_TOTAL_NODES limits: node rows not gone (starting and running,
    also of ended sessions whose containers the reaper has not removed yet).

    Pool nodes are not among them, ready or attached ahead: PWD_POOL_SIZE bounds each
    kind, and one attached ahead becomes a node only through an add, which counts it
    then. Nor are the nodes of held sessions (PWD_POOL_SESSIONS bounds them; a Start
    that takes one is checked as an add). Both the cold and the pool path ask this.
    """
    return _nodes().count()


def check_new_node(key: str = "") -> None:
    """Raise TooManyRequests when the installation runs PWD_MAX_TOTAL_NODES nodes
    (:func:`nodes_in_use`), or the sessions of client ``key`` (the session's creator;
    empty: not counted) run PWD_MAX_NODES_PER_CLIENT.

    Call inside the transaction that inserts the row.
    """
    _serialise()
    if nodes_in_use() >= settings.PWD_MAX_TOTAL_NODES:
        raise TooManyRequests(
            "pwd is at capacity: it runs as many nodes as it may.",
            "at_capacity",
            retry_after=CAPACITY_RETRY_AFTER,
        )
    if key.startswith(EMBED_MARK):
        budget = settings.PWD_EMBED_NODES_PER_ORIGIN
        prefix = key[: len(EMBED_MARK) + _ORIGIN_HASH]
        if _nodes().filter(session__client_key__startswith=prefix).count() >= budget:
            raise TooManyRequests(
                f"The pages of this site already run {budget} nodes; try again soon.",
                "origin_limit",
                retry_after=CAPACITY_RETRY_AFTER,
            )
    own = settings.PWD_MAX_NODES_PER_CLIENT
    if key and _nodes().filter(session__client_key=key).count() >= own:
        raise TooManyRequests(
            f"The sessions started from your address already run {own} nodes; remove one first.",
            "client_limit",
            retry_after=CAPACITY_RETRY_AFTER,
        )


def may_prepare_node() -> bool:
    """Whether a pool node may be attached ahead for a session now: fewer than
    PWD_POOL_SIZE are, and one more stays within PWD_MAX_TOTAL_NODES counted with
    :func:`nodes_in_use` (each one attached ahead is a node in waiting, and none is
    attached at the cap). Call inside the transaction that claims it."""
    _serialise()
    attached = PoolNode.objects.attached_ahead().count()
    if attached >= settings.PWD_POOL_SIZE:
        return False
    return nodes_in_use() + attached < settings.PWD_MAX_TOTAL_NODES
