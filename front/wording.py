"""How the pages word durations, sizes and a node's limits."""

from typing import Any

from django.conf import settings


def _count(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


_UNITS = (("hour", 3600), ("minute", 60))


def duration(seconds: float) -> str:
    """An exact duration in its largest whole unit: ``4 hours``, ``30 minutes``, ``90 seconds``."""
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return _count(int(seconds // size), unit)
    return _count(int(seconds), "second")


def per(seconds: float) -> str:
    """A rate's period, as in "2 per …": the bare unit for exactly one (``day``,
    ``hour``, ``minute``), else the :func:`duration` (``30 minutes``, ``90 seconds``)."""
    for unit, size in (("day", 86400), *_UNITS):
        if seconds == size:
            return unit
    return duration(seconds)


def wait(seconds: float) -> str:
    """A rough wait for "try again in …": ``a minute`` up to 90 s, else whole minutes."""
    if seconds <= 90:
        return "a minute"
    return _count(round(seconds / 60), "minute")


def size(count: int) -> str:
    """A size in powers of 1024: ``1 GiB``, ``1.5 GiB``, ``512 MiB``."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= factor:
            return f"{count / factor:g} {unit}"
    return f"{count} bytes"


def limits() -> dict[str, Any]:
    """What one node and one session may use, worded for the pages; "" for no limit."""
    return {
        "memory": size(settings.PWD_NODE_MEMORY),
        "swap": size(settings.PWD_NODE_SWAP) if settings.PWD_NODE_SWAP else "",
        "cpus": f"{settings.PWD_NODE_CPUS:g}",
        "pids": settings.PWD_NODE_PIDS,
        "disk": size(settings.PWD_NODE_DISK) if settings.PWD_NODE_DISK else "",
        "lifetime": duration(settings.PWD_SESSION_LIFETIME),
        "idle": duration(settings.PWD_IDLE_TIMEOUT),
    }
