from ninja import Field, Schema


class Host(Schema):
    name: str = Field(examples=["local"])
    nodes: int = Field(description="Session nodes in use on this host")
    pool_nodes: int = Field(description="Warm pool nodes not yet a session's")
    memory_total: int = Field(description="Bytes (the engine's MemTotal)")
    memory_available: int | None = Field(
        description="Bytes new nodes may take now; null when the engine is remote"
    )
    nodes_that_fit: int = Field(description="More nodes of PWD_NODE_MEMORY its memory holds")


class Nodes(Schema):
    used: int
    free: int = Field(description="More nodes that fit: under the cap and in memory")
    limit: int = Field(description="PWD_MAX_TOTAL_NODES")
    node_memory: int = Field(description="PWD_NODE_MEMORY, bytes")
    by_status: dict[str, int]
    bound: str = Field(description="What limits free: nodes (the cap) or memory")


class Sessions(Schema):
    active: int
    free: int
    limit: int = Field(description="PWD_MAX_SESSIONS")


class Seats(Schema):
    nodes_per_seat: int
    fit: int = Field(description="More seats (sessions of nodes_per_seat nodes) that fit now")


class Capacity(Schema):
    hosts: list[Host]
    nodes: Nodes
    sessions: Sessions
    seats: Seats
