"""The series /metrics exports from the database, read at scrape time: the same from
whichever process answers."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from metrics import tally
from metrics.models import Count
from sessions_app import capacity, engine
from sessions_app.models import Node, PoolNode, Session

log = logging.getLogger(__name__)
HOST = engine.LOCAL_HOST


def _per_status(name: str, doc: str, counts: dict[str, int], statuses: list[str]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["host", "status"])
    for status in statuses:
        family.add_metric([HOST, status], counts.get(status, 0))
    return family


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._sessions_and_nodes()
        yield from self._capacity()
        yield from self._counts()

    def _sessions_and_nodes(self) -> Iterator[Metric]:
        sessions = GaugeMetricFamily("pwd_sessions_active", "Active sessions.")
        sessions.add_metric([], Session.objects.active().count())
        yield sessions
        yield GaugeMetricFamily(
            "pwd_sessions_limit", "PWD_MAX_SESSIONS.", value=settings.PWD_MAX_SESSIONS
        )
        yield _per_status(
            "pwd_nodes",
            "Session nodes in use, per host and status.",
            capacity.by_status(Node.objects.exclude(status=Node.Status.GONE)),
            [Node.Status.STARTING, Node.Status.RUNNING],
        )
        yield GaugeMetricFamily(
            "pwd_nodes_limit", "PWD_MAX_TOTAL_NODES.", value=settings.PWD_MAX_TOTAL_NODES
        )
        yield _per_status(
            "pwd_pool_nodes",
            "Warm pool nodes not yet a session's, per host and status.",
            capacity.by_status(PoolNode.objects.exclude(status=PoolNode.Status.TAKEN)),
            [s for s in PoolNode.Status.values if s != PoolNode.Status.TAKEN],
        )

    def _capacity(self) -> Iterator[Metric]:
        try:
            room = capacity.room()
        except engine.EngineError as exc:
            log.warning("metrics: no capacity series, the engine does not answer: %s", exc)
            return
        free = GaugeMetricFamily(
            "pwd_capacity_nodes_free",
            "More nodes that fit now (the node cap and the hosts' memory).",
        )
        free.add_metric([], room.nodes_free)
        yield free
        memory = GaugeMetricFamily(
            "pwd_host_memory_available_bytes",
            "Memory the host has for new nodes.",
            labels=["host"],
        )
        for host in room.hosts:
            if host.memory_available is not None:
                memory.add_metric([host.name], host.memory_available)
        yield memory

    def _counts(self) -> Iterator[Metric]:
        rows = list(Count.objects.all())
        values = {(row.name, row.host, row.label): row.value for row in rows}
        moved = {(row.name, row.host, row.label): row.updated_at for row in rows}

        for name, what in ((tally.REAPER_PASSES, "reaper"), (tally.KEEPER_PASSES, "keeper")):
            passes = CounterMetricFamily(
                f"pwd_{what}_passes",
                f"Passes of the {what}, per outcome (failed: a step or the pass failed).",
                labels=["outcome"],
            )
            last = GaugeMetricFamily(
                f"pwd_{what}_last_pass_timestamp_seconds",
                f"When the {what} last counted a pass, per outcome (Unix time, within seconds).",
                labels=["outcome"],
            )
            for outcome in tally.OUTCOMES:
                passes.add_metric([outcome], values.get((name, "", outcome), 0.0))
                when = moved.get((name, "", outcome))
                if when is not None:
                    last.add_metric([outcome], when.timestamp())
            yield passes
            yield last
        yield CounterMetricFamily(
            "pwd_reaper_pass_errors",
            "Steps of reaper passes that failed.",
            value=values.get((tally.REAPER_PASS_ERRORS, "", ""), 0.0),
        )

        errors = CounterMetricFamily(
            "pwd_engine_errors",
            "Engine errors, per host and kind (unavailable, node_start, refused).",
            labels=["host", "kind"],
        )
        hosts = {HOST} | {host for name, host, _ in values if name == tally.ENGINE_ERRORS}
        for host in sorted(hosts):
            for kind in tally.ERROR_KINDS:
                errors.add_metric([host, kind], values.get((tally.ENGINE_ERRORS, host, kind), 0))
        yield errors

        adds = HistogramMetricFamily(
            "pwd_add_node_seconds",
            "Seconds from an add-node call to its answer, per host (successful adds).",
            labels=["host"],
        )
        hosts = {HOST} | {host for name, host, _ in values if name == tally.ADD_NODE}
        bounds = [*(str(b) for b in tally.ADD_NODE_BUCKETS), tally.INF]
        for host in sorted(hosts):
            cumulative, buckets = 0.0, []
            for bound in bounds:
                cumulative += values.get((tally.ADD_NODE, host, bound), 0)
                buckets.append((floatToGoString(float(bound)), cumulative))
            adds.add_metric([host], buckets, values.get((tally.ADD_NODE_SUM, host, ""), 0.0))
        yield adds
