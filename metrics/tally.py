"""Counts any process keeps: recorded in memory at once, added to the database in the
background, so every process's counts meet there (metrics.models.Count).

Recording never waits on the database and is safe from any thread or the event loop
(an engine error may be made on either). A daemon thread adds what was recorded every
FLUSH_INTERVAL seconds (not to an in-memory database) and at exit; /metrics adds its own
process's first. What a
process recorded in its last seconds before it was killed is lost.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from sessions_app import engine

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 2.0

REAPER_PASSES = "reaper_passes"
REAPER_PASS_ERRORS = "reaper_pass_errors"
KEEPER_PASSES = "keeper_passes"
ENGINE_ERRORS = "engine_errors"
# The add-node histogram: one series per bucket (label: its upper bound, not
# cumulative; /metrics sums them up) and one for the sum of the seconds.
ADD_NODE = "add_node_seconds"
ADD_NODE_SUM = "add_node_seconds_sum"
ADD_NODE_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
INF = "+Inf"
# Kinds of engine error, by the engine's one error family.
ERROR_KINDS = ("unavailable", "node_start", "refused")
OUTCOMES = ("ok", "failed")

Series = tuple[str, str, str]  # name, host, label
P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_pending: defaultdict[Series, float] = defaultdict(float)
_flusher: threading.Thread | None = None
_failing = False


def add(name: str, amount: float = 1.0, host: str = "", label: str = "") -> None:
    """Add ``amount`` to the series; it reaches the database within seconds."""
    global _flusher
    with _lock:
        _pending[(name, host, label)] += amount
        if _flusher is None:
            counted_in = _database_name()
            _flusher = threading.Thread(
                target=_flush_forever, args=(counted_in,), name="pwd-metrics", daemon=True
            )
            _flusher.start()
            atexit.register(_flush_in, counted_in)


def bucket_label(seconds: float) -> str:
    """The add-node bucket ``seconds`` falls in: the smallest bound it does not pass."""
    index = bisect.bisect_left(ADD_NODE_BUCKETS, seconds)
    return str(ADD_NODE_BUCKETS[index]) if index < len(ADD_NODE_BUCKETS) else INF


def observe_add_node(seconds: float, host: str = engine.LOCAL_HOST) -> None:
    add(ADD_NODE, 1, host, bucket_label(seconds))
    add(ADD_NODE_SUM, seconds, host)


def times_node_adds(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Observe how long each add that succeeds takes, from its call to its answer."""

    @functools.wraps(func)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.monotonic()
        result = await func(*args, **kwargs)
        observe_add_node(time.monotonic() - started)
        return result

    return timed


def reaper_pass(errors: int) -> None:
    """A reaper pass done; ``errors``: its steps that failed (the pass is "failed")."""
    add(REAPER_PASSES, label="failed" if errors else "ok")
    add(REAPER_PASS_ERRORS, errors)


def keeper_pass(ok: bool) -> None:
    add(KEEPER_PASSES, label="ok" if ok else "failed")


def engine_error(exc: engine.EngineError) -> None:
    """Count an engine error as the engine package makes it (engine.error_listeners).

    A node that is gone is the trainee's doing, not the engine's: not counted.
    """
    if isinstance(exc, engine.NodeGone):
        return
    if isinstance(exc, engine.EngineUnavailable):
        kind = "unavailable"
    elif isinstance(exc, engine.NodeStartError):
        kind = "node_start"
    else:
        kind = "refused"
    add(ENGINE_ERRORS, 1, engine.LOCAL_HOST, kind)


def flush() -> bool:
    """Add what this process recorded to the database (sync). False when the database
    refused; the counts are kept for the next try."""
    global _failing
    with _lock:
        batch = dict(_pending)
        _pending.clear()
    if not batch:
        return True
    try:
        _write(batch)
    except Exception as exc:  # noqa: BLE001 - metrics must never break the work they count
        with _lock:
            for series, amount in batch.items():
                _pending[series] += amount
        if not _failing:
            log.warning("metrics: could not write the counts (kept for the next try): %s", exc)
        _failing = True
        return False
    _failing = False
    return True


def _write(batch: dict[Series, float]) -> None:
    from django.db import IntegrityError, transaction
    from django.db.models import F
    from django.utils import timezone

    from metrics.models import Count

    now = timezone.now()
    with transaction.atomic():
        for (name, host, label), amount in batch.items():
            series = Count.objects.filter(name=name, host=host, label=label)
            if series.update(value=F("value") + amount, updated_at=now):
                continue
            try:
                with transaction.atomic():
                    Count.objects.create(
                        name=name, host=host, label=label, value=amount, updated_at=now
                    )
            except IntegrityError:  # another process made the row first
                series.update(value=F("value") + amount, updated_at=now)


def _database_name() -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


def _private_database() -> bool:
    """An in-memory database (the test suite's) is this process's alone: nobody else
    reads it, /metrics adds the counts when it answers, and writing to it from another
    thread races the tests' own use (SQLite's shared cache fails at once, unwaited)."""
    from django.db import connection

    return connection.vendor == "sqlite" and connection.is_in_memory_db()


def _flush_in(counted_in: str) -> None:
    """Flush, unless the database is private or another than the one counted in (the
    test suite's, torn down: its counts do not go to the database named after it)."""
    if _database_name() == counted_in and not _private_database():
        flush()


def _flush_forever(counted_in: str) -> None:
    from django.db import connections

    while True:
        time.sleep(FLUSH_INTERVAL)
        _flush_in(counted_in)
        # This thread's own connection: nothing else closes it.
        connections.close_all()
