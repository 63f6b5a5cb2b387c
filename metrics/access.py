"""Who may read /metrics and /api/capacity/: addresses in PWD_METRICS_ALLOW (and, for
capacity, staff users). Both reveal load, never a session id or an address."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from sessions_app import quotas


def address_allowed(request: HttpRequest) -> bool:
    """Whether the client's address (quotas.client_address: the peer's, or behind a
    trusted proxy the one it forwards) is in PWD_METRICS_ALLOW."""
    try:
        address = ipaddress.ip_address(quotas.client_address(request).strip("[]"))
    except ValueError:
        return False
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    mapped = getattr(address, "ipv4_mapped", None)
    candidates = [address, mapped] if mapped else [address]
    networks = [ipaddress.ip_network(value, strict=False) for value in settings.PWD_METRICS_ALLOW]
    return any(candidate in network for candidate in candidates for network in networks)


async def may_see_capacity(request: HttpRequest) -> bool:
    if address_allowed(request):
        return True
    user = await request.auser()
    return bool(user.is_active and user.is_staff)
