"""The registry /metrics serves: the database's series and this process's own."""

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector

from metrics.collector import DatabaseCollector

REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())
ProcessCollector(registry=REGISTRY)

WEBSOCKETS_OPEN = Gauge(
    "pwd_websockets_open",
    "Websockets open in the process that answered, per kind (terminal, events, compat).",
    ["kind"],
    registry=REGISTRY,
)
