"""Typed helpers that read settings from the environment.

A bad value raises ImproperlyConfigured naming the variable, so a typo stops the process
at start instead of surfacing as odd behaviour later.
"""

import os
import re

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|m|h|d)\s*$")


def envstr(name: str, default: str) -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def envfloat(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_duration(raw: str) -> float:
    """Seconds in a duration like ``90``, ``30s``, ``15m``, ``4h`` or ``250ms``."""
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(raw)
    return float(match.group(1)) * _UNITS[match.group(2)]


def envduration(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        seconds = parse_duration(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a duration like 30s, 15m or 4h, not {raw!r}"
        ) from None
    if seconds <= 0:
        raise ImproperlyConfigured(f"{name} must be longer than zero")
    return seconds


def parse_size(raw: str) -> int:
    """Bytes in a size like ``1g``, ``512m``, ``64MiB`` or ``1048576`` (powers of 1024)."""
    match = _SIZE.match(raw)
    if not match:
        raise ValueError(raw)
    unit = (match.group(2) or "b").lower()[0]
    factor = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[unit]
    return int(float(match.group(1)) * factor)


def envsize(name: str, default: str) -> int:
    raw = os.environ.get(name, default)
    try:
        return parse_size(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a size like 512m or 1g, not {raw!r}") from None


def parse_rate(raw: str) -> tuple[int, float]:
    """``(count, period_seconds)`` for a rate like ``30/h``."""
    match = _RATE.match(raw)
    if not match:
        raise ValueError(raw)
    return int(match.group(1)), float(_UNITS[match.group(2)])


def envrate(name: str, default: str) -> tuple[int, float]:
    raw = os.environ.get(name, default)
    try:
        return parse_rate(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a rate like 30/h, not {raw!r}") from None


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default).strip().lower()
    if raw not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw
