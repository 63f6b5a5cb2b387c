"""Whether nodes are isolated from the host, and what the app does when they are not.

At start the app runs :func:`engine.escape_check` once: a probe node tries, from
inside and with the node profile, the known routes to the host (a cgroup v1
``release_agent``, ``core_pattern``, the node's own cgroup limits, the kernel log). With
``PWD_PRODUCTION=true`` a profile that lets any of them through stops the process,
unless the operator has said that only trusted people get nodes
(``PWD_TRUSTED_USERS_ONLY=true``). In development it runs, with a warning in the log and
on every page.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from sessions_app import engine

log = logging.getLogger(__name__)

UNSAFE_MESSAGE = (
    "Nodes are NOT isolated from this host: root in a node can become root on the host "
    "({routes}). Give nodes a user namespace (dockerd --userns-remap=default, or Sysbox; "
    "see docs/security.md)."
)


@dataclass
class Verdict:
    """What the escape check found. ``checked`` is False until it has run."""

    checked: bool = False
    profile: str = ""
    open_routes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def isolated(self) -> bool:
        return self.checked and not self.open_routes

    @property
    def warning(self) -> str:
        """A sentence for operators and pages; empty when nodes are isolated."""
        if not self.checked or self.isolated:
            return ""
        return UNSAFE_MESSAGE.format(routes=", ".join(self.open_routes))


_verdict = Verdict()
_lock = threading.Lock()


def verdict() -> Verdict:
    """The last result of :func:`check` in this process (not checked yet: ``checked`` False)."""
    return _verdict


def check() -> Verdict:
    """Run the escape check against the engine now and remember the result."""
    global _verdict
    with _lock:
        try:
            found = engine.escape_check()
        except engine.EngineError as exc:
            result = Verdict(error=str(exc))
        else:
            result = Verdict(True, engine.profile().name, found)
        _verdict = result
    return result


def refusal(result: Verdict) -> str:
    """Why a production process must not start with ``result``; empty when it may."""
    if not settings.PRODUCTION or settings.PWD_TRUSTED_USERS_ONLY:
        return ""
    if result.error:
        return f"PWD_PRODUCTION: the node escape check could not run: {result.error}"
    if result.open_routes:
        return (
            "PWD_PRODUCTION refuses to start: "
            + result.warning
            + " Set PWD_TRUSTED_USERS_ONLY=true only if everyone who can reach this "
            "installation may have root on this host."
        )
    return ""


def enforce_at_start() -> None:
    """Check isolation as a process starts.

    In production the check runs before anything is served, and an unsafe profile raises
    ImproperlyConfigured. Elsewhere it runs on a thread and only warns.
    """
    if settings.PRODUCTION:
        result = check()
        reason = refusal(result)
        if reason:
            raise ImproperlyConfigured(reason)
        _report(result)
        return

    def in_background() -> None:
        _report(check())

    threading.Thread(target=in_background, name="pwd-escape-check", daemon=True).start()


def context(request: object) -> dict[str, str]:
    """Template context processor: the isolation warning every page shows, if any."""
    return {"isolation_warning": _verdict.warning}


def _report(result: Verdict) -> None:
    if result.error:
        log.warning("could not check node isolation: %s", result.error)
    elif result.open_routes:
        if settings.PWD_TRUSTED_USERS_ONLY:
            log.warning("PWD_TRUSTED_USERS_ONLY: %s", result.warning)
        else:
            log.warning("%s", result.warning)
    else:
        log.info("node isolation: the %s profile held every escape check", result.profile)
