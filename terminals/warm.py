"""Terminals opened ahead: the hub of a node a page is about to show, started while the
page loads (a Start that hands out a hot session opens on node1's terminal)."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from terminals import hub as hubs

log = logging.getLogger(__name__)

# How long a hub opened ahead waits for its first terminal before it is closed.
WARM_FOR = 30.0

# Hubs being opened ahead in this process; a reference keeps each task alive to its end.
_warming: set[asyncio.Task[None]] = set()


def soon(container_id: str) -> None:
    """Start the node's hub in the background, so the page's terminal joins one already
    attached, its screen replayed from the log; closed after WARM_FOR seconds when no
    terminal joined it. Never raises: a terminal that follows meets any error itself."""
    task = asyncio.get_running_loop().create_task(
        _warm(container_id), context=contextvars.Context()
    )
    _warming.add(task)
    task.add_done_callback(_warming.discard)


async def _warm(container_id: str) -> None:
    try:
        hub = await hubs.get_hub(container_id)
    except Exception as exc:  # noqa: BLE001 - in the background; the terminal reports it
        log.info("could not open the terminal of %s ahead: %s", container_id[:12], exc)
        return
    try:
        await asyncio.sleep(WARM_FOR)
    finally:
        if not hub.clients and not hub.closed:
            await hub.close()
