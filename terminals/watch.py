"""A wall's watch on a node's shared terminal: it keeps the hub attached and reads its
screen as text, never typing, never resizing, never holding the program back."""

from __future__ import annotations

from sessions_app.engine import EngineError, NodeGone
from terminals import hub as hubs


class Watch:
    """Joined to a hub as a client that takes its output as fast as it comes (the
    output itself is thrown away: the wall reads the emulator's screen instead), so the
    trainee's terminal is paced by the trainee's own browser only."""

    def __init__(self, hub: hubs.Hub) -> None:
        self.hub = hub
        self.gone = False
        self.shown = -1  # the emulator offset of the screen last sent
        self.client = hub.join(self._discard, self._ignore, self._on_gone)
        self.client.ack(0)  # an acknowledging client: no read-rate pacing for it

    @classmethod
    async def open(cls, container_id: str) -> Watch | None:
        """A watch on the container's terminal, or None when the node is gone or the
        engine fails (the wall shows the seat without a screen and tries again)."""
        try:
            return cls(await hubs.get_hub(container_id))
        except (NodeGone, EngineError):
            return None

    async def _discard(self, data: bytes) -> None:
        # Acknowledged as sent, so the window never closes on a watch.
        self.client.ack(self.client.sent + len(data))

    async def _ignore(self, message: dict[str, object]) -> None:
        return None

    def _on_gone(self) -> None:
        self.gone = True

    def changed(self) -> bool:
        return not self.gone and self.hub.screen.fed != self.shown

    def read(self) -> dict[str, object]:
        """The screen now, and mark it as shown."""
        self.shown = self.hub.screen.fed
        cols, rows = self.hub.size
        return {"lines": self.hub.screen.text(), "cols": cols, "rows": rows}

    def close(self) -> None:
        if not self.gone:
            self.client.leave()
        self.gone = True
