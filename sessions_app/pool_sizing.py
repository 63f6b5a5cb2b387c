"""How many ready nodes the keeper keeps, and how many it starts at once.

The pool keeps PWD_POOL_SIZE nodes, plus what the observed rate of takes empties during
one node start (Little's law: takes per second times start seconds are the nodes taken
while a refill boots), within PWD_POOL_MAX and the memory budget PWD_POOL_MEMORY. Starts
run as many at once as the engine has CPUs (an inner dockerd boot is CPU-bound; more at
once only makes each slower), two at least.
"""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from sessions_app import engine
from sessions_app.models import PoolNode

log = logging.getLogger(__name__)

# Takes are counted over this much of the recent past (a claimed row lives longer: the
# keeper drops it CLAIM_GRACE after its node went); the pool is back to PWD_POOL_SIZE
# this long after the last take.
RATE_WINDOW = timedelta(seconds=45)
# A node start until one is measured, seconds (seen 2-6 s on a loaded 2-core machine).
START_SECONDS = 4.0
# Idle memory of a pool node until one is measured (seen ~40 MiB).
NODE_MEMORY = 64 * 1024**2
MEMORY_EVERY = 60.0
MEMORY_SAMPLE = 3
MIN_PARALLELISM = 2


def engine_cpus() -> int:
    """CPUs of the engine's host (the CPU count here when the engine does not say)."""
    try:
        return int(engine.client().info().get("NCPU") or 0) or (os.cpu_count() or 1)
    except Exception:  # noqa: BLE001 - a sizing hint, never a reason to fail a pass
        return os.cpu_count() or 1


class PoolSizer:
    """The keeper's target: ``minimum`` plus the demand, within ``maximum`` and the
    memory budget. ``fixed`` pins it to ``minimum`` (a keeper given an explicit size)."""

    def __init__(self, minimum: int, fixed: bool = False) -> None:
        self.minimum = minimum
        self.fixed = fixed
        self.start_seconds = START_SECONDS
        self.node_memory = NODE_MEMORY
        self._memory_read_at = -math.inf

    @property
    def maximum(self) -> int:
        if self.fixed:
            return self.minimum
        by_memory = settings.PWD_POOL_MEMORY // max(1, self.node_memory)
        return max(self.minimum, min(settings.PWD_POOL_MAX, by_memory))

    def started(self, seconds: float) -> None:
        """Record one node start's duration (a moving average of the recent ones)."""
        self.start_seconds = 0.7 * self.start_seconds + 0.3 * seconds

    def take_rate(self, now: datetime | None = None) -> float:
        """Pool nodes taken (by an add or an attach ahead) per second, recently."""
        now = now or timezone.now()
        taken = (
            PoolNode.objects.filter(claimed_at__gte=now - RATE_WINDOW)
            .exclude(status=PoolNode.Status.RETIRING)
            .count()
        )
        return taken / RATE_WINDOW.total_seconds()

    def target(self, now: datetime | None = None) -> int:
        """Ready nodes to keep now."""
        if self.fixed or self.minimum == 0:
            return self.minimum
        self._measure_memory()
        demand = math.ceil(self.take_rate(now) * self.start_seconds)
        return min(self.maximum, self.minimum + demand)

    def _measure_memory(self) -> None:
        if time.monotonic() - self._memory_read_at < MEMORY_EVERY:
            return
        self._memory_read_at = time.monotonic()
        ids = PoolNode.objects.ready().values_list("container_id", flat=True)[:MEMORY_SAMPLE]
        try:
            used = [engine.memory_usage(container_id) for container_id in ids]
        except engine.EngineError as exc:
            log.info("could not read pool nodes' memory: %s", exc)
            return
        if any(used):
            self.node_memory = max(used)


def parallelism() -> int:
    """Node starts the keeper runs at once."""
    return max(MIN_PARALLELISM, engine_cpus())
