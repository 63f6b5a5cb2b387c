"""A terminal emulator (pyte) trailing a TTY's output, and its state as one snapshot.

A client that connects (or reconnects, or fell behind) gets the screen as it is now,
plus a bounded scrollback, as bytes that rebuild it in any xterm-compatible terminal:
a full reset first, so applying a snapshot never duplicates what was on screen.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import defaultdict, deque
from typing import Any

import pyte
from pyte import graphics
from pyte.screens import Char, Margins

log = logging.getLogger(__name__)

HISTORY_LINES = 1000
# Snapshots larger than this lose their oldest scrollback lines.
SNAPSHOT_BUDGET = 512 * 1024

_ALTERNATE = {47, 1047, 1049}
# Private modes pyte records but does not act on, replayed so that the client's cursor
# keys, mouse reporting and bracketed paste match what the program asked for.
_REPLAYED_PRIVATE_MODES = (1, 1000, 1002, 1003, 1005, 1006, 1015, 2004)

_FG = {name: code for code, name in {**graphics.FG_ANSI, **graphics.FG_AIXTERM}.items()}
_BG = {name: code for code, name in {**graphics.BG_ANSI, **graphics.BG_AIXTERM}.items()}
_DEFAULT = Char(" ")


class TerminalScreen(pyte.Screen):
    """pyte's Screen with its own cheap scrollback and the alternate screen.

    pyte's HistoryScreen wraps every call (it parses ``yes`` at ~70 KB/s); keeping the
    lines that scroll off the top in a deque costs next to nothing. They are kept
    rendered, as text with SGR changes: a scrolled-off row never changes again, a
    snapshot then only joins them, and a string is one object the garbage collector
    never scans (a row is a dict of one ``Char`` tuple per cell, and a full scrollback
    of those made each full collection stall the event loop for ~100 ms).
    Full-screen programs (vim, top, less) draw on the alternate screen, which keeps no
    scrollback and is dropped when they exit, as in xterm.
    """

    def __init__(self, columns: int, lines: int, history: int = HISTORY_LINES) -> None:
        self.history: deque[str] = deque(maxlen=history)
        self.saved_main: tuple[Any, Any] | None = None
        super().__init__(columns, lines)

    @property
    def in_alternate(self) -> bool:
        return self.saved_main is not None

    def reset(self) -> None:
        self.saved_main = None
        super().reset()

    def index(self) -> None:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0 and not self.in_alternate:
            self.history.append(render_line(self.buffer[0], self.columns))
        super().index()

    def select_graphic_rendition(self, *attrs: int, private: bool = False, **kwargs: Any) -> None:
        # ``CSI > 4 ; 2 m`` (vim asking for modifyOtherKeys) reaches here as "private";
        # it sets no attribute, and pyte's own method would raise on the keyword.
        if not private:
            super().select_graphic_rendition(*attrs)

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _ALTERNATE.intersection(modes) and not self.in_alternate:
            self.saved_main = (self.buffer, copy.copy(self.cursor))
            self.buffer = defaultdict(self.buffer.default_factory)
            self.dirty.update(range(self.lines))
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _ALTERNATE.intersection(modes) and self.saved_main:
            self.buffer, cursor = self.saved_main
            self.saved_main = None
            if 1049 in modes:
                self.cursor = cursor
                self.ensure_hbounds()
                self.ensure_vbounds()
            self.dirty.update(range(self.lines))
        super().reset_mode(*modes, **kwargs)


def _color(value: str, table: dict[str, int], extended: int) -> list[str]:
    if value == "default":
        return []
    if value in table:
        return [str(table[value])]
    if len(value) == 6:
        try:
            red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            return []
        return [str(extended), "2", str(red), str(green), str(blue)]
    return []


def sgr(char: Char) -> str:
    """The SGR sequence that sets exactly the attributes of ``char``."""
    codes = ["0"]
    codes += ["1"] if char.bold else []
    codes += ["3"] if char.italics else []
    codes += ["4"] if char.underscore else []
    codes += ["5"] if char.blink else []
    codes += ["7"] if char.reverse else []
    codes += ["9"] if char.strikethrough else []
    codes += _color(char.fg, _FG, 38)
    codes += _color(char.bg, _BG, 48)
    return f"\x1b[{';'.join(codes)}m"


def _attrs(char: Char) -> tuple[Any, ...]:
    return char[1:]


_DEFAULT_ATTRS = _attrs(_DEFAULT)


def render_line(row: Any, columns: int) -> str:
    """One screen row as text with SGR changes, trailing blanks trimmed."""
    end = columns
    while end > 0:
        char = row[end - 1]
        if char.data not in (" ", "") or char.bg != "default" or char.reverse:
            break
        end -= 1
    out: list[str] = []
    current = _DEFAULT_ATTRS
    for x in range(end):
        char = row[x]
        if char.data == "":  # the second cell of a wide character
            continue
        attrs = _attrs(char)
        if attrs != current:
            out.append(sgr(char))
            current = attrs
        out.append(char.data)
    if current != _DEFAULT_ATTRS:
        out.append("\x1b[0m")
    return "".join(out)


def render(screen: TerminalScreen, history: bool = True) -> bytes:
    """The whole state as bytes: reset, scrollback, screen, modes, cursor.

    The scrollback and main screen are written as lines and the cursor is placed with
    relative moves, so the result is right even when the client has more rows.
    """
    rows = screen.lines
    main_buffer, main_cursor = screen.saved_main or (screen.buffer, screen.cursor)
    screen_lines = [render_line(main_buffer[y], screen.columns) for y in range(rows)]
    scrollback = list(screen.history) if history else []
    size = sum(len(line) + 2 for line in screen_lines)
    kept: list[str] = []
    for line in reversed(scrollback):
        size += len(line) + 2
        if size > SNAPSHOT_BUDGET:
            break
        kept.append(line)
    kept.reverse()
    out = ["\x1bc"]
    out.append("\r\n".join(kept + screen_lines))
    # After the last line the cursor is on the bottom row; move it to where it belongs.
    up = rows - 1 - main_cursor.y
    out.append(f"\x1b[{up}A" if up > 0 else "")
    out.append(f"\r\x1b[{main_cursor.x}C" if main_cursor.x else "\r")
    if screen.in_alternate:
        out.append("\x1b[?1049h\x1b[H\x1b[2J")
        for y in range(rows):
            line = render_line(screen.buffer[y], screen.columns)
            if line:
                out.append(f"\x1b[{y + 1};1H{line}")
    margins = screen.margins
    if margins and (margins.top, margins.bottom) != (0, rows - 1):
        out.append(f"\x1b[{margins.top + 1};{margins.bottom + 1}r")
    if screen.in_alternate or margins:
        out.append(f"\x1b[{screen.cursor.y + 1};{screen.cursor.x + 1}H")
    for mode in _REPLAYED_PRIVATE_MODES:
        if (mode << 5) in screen.mode:
            out.append(f"\x1b[?{mode}h")
    if pyte.modes.DECAWM not in screen.mode:
        out.append("\x1b[?7l")
    if screen.cursor.hidden:
        out.append("\x1b[?25l")
    if _attrs(screen.cursor.attrs) != _DEFAULT_ATTRS:
        out.append(sgr(screen.cursor.attrs))
    return "".join(out).encode("utf-8")


class Emulator:
    """A screen and the byte stream that drives it."""

    def __init__(self, columns: int = 80, lines: int = 24) -> None:
        self.screen = TerminalScreen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)

    def feed(self, data: bytes) -> None:
        try:
            self.stream.feed(data)
        except Exception:  # noqa: BLE001 - a sequence pyte trips on must not end the terminal
            log.warning("the terminal emulator failed on a sequence; its parser restarts")
            self.stream = pyte.ByteStream(self.screen)

    def resize(self, columns: int, lines: int) -> None:
        self.screen.resize(lines, columns)

    def snapshot(self) -> bytes:
        return render(self.screen)


# Unparsed output the emulator may trail by before it skips ahead to the newest bytes.
EMULATOR_BACKLOG = 64 * 1024
EMULATOR_KEEP = 16 * 1024
# One slice is one to two milliseconds of pyte (~300 bytes a millisecond here): the
# longest the loop waits on an emulator before it serves a keystroke again.
EMULATOR_SLICE = 512
# The share of the event loop's time that the emulators of every terminal together take.
EMULATOR_SHARE = 0.25
# After a skip-ahead the emulator waits until output has calmed down for this long: in a
# flood, what it would eat now is skipped soon after anyway, and the server's CPU is
# better spent sending the flood (docs/benchmarks.md).
FLOOD_PAUSE = 0.2
# A log replay longer than this is cut to its tail (the scrollback is bounded anyway).
REPLAY_KEEP = 128 * 1024


def safe_cut(data: bytes | bytearray, limit: int) -> int:
    """A cut point in ``data[:limit]`` not inside a line, escape or UTF-8 character."""
    window = data[:limit]
    return max(window.rfind(b"\n") + 1, window.rfind(b"\x1b"), 0)


class EmulatorBudget:
    """The event loop time every emulator shares: after a slice that took ``d``
    seconds, no emulator runs for ``d * (1 / share - 1)`` seconds."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.free_at = 0.0

    async def turn(self) -> None:
        """Wait until an emulator may run a slice (at least one pass of the loop)."""
        await asyncio.sleep(0)
        # Checked again after each wait: another emulator's slice may have run meanwhile.
        while (delay := self.free_at - time.monotonic()) > 0:  # noqa: ASYNC110 - a time, not an event
            await asyncio.sleep(delay)

    def spent(self, seconds: float) -> None:
        now = time.monotonic()
        self.free_at = max(self.free_at, now) + seconds * (1 / self.share - 1)


_budget = EmulatorBudget(EMULATOR_SHARE)


class TrailingScreen:
    """An emulator that trails a byte stream without ever sitting on its path.

    ``take`` only appends; :meth:`run` (a task) eats complete lines (cut after a
    newline or before an escape) in slices, within the shared budget. A snapshot is
    the emulator's rendered state followed by the bytes it has not eaten yet, so
    snapshot + later bytes is always the whole stream. Past EMULATOR_BACKLOG it skips
    ahead to the newest output instead of falling further behind, and rests until the
    flood is over.
    """

    def __init__(self, columns: int, lines: int) -> None:
        self.emulator = Emulator(columns, lines)
        self.pending = bytearray()
        self.fed = 0  # absolute offset the emulator has eaten up to
        self._resizes: deque[tuple[int, int, int]] = deque()  # (offset, cols, rows)
        self._wake = asyncio.Event()
        self._skipped_at = -FLOOD_PAUSE
        # The rendered state, reused until the emulator changes: clients rejoining at
        # once (a server restart) share one render instead of each stalling the loop.
        self._rendered: bytes | None = None

    @property
    def received(self) -> int:
        """Bytes of the stream taken so far (eaten or pending)."""
        return self.fed + len(self.pending)

    def text(self) -> list[str]:
        """The screen's lines as plain text, as far as the emulator has eaten (a
        thumbnail's view: it may trail the stream by what is still pending)."""
        return [line.rstrip() for line in self.emulator.screen.display]

    def snapshot(self) -> bytes:
        """The emulator's state plus the bytes it has not eaten: the stream so far."""
        if self._rendered is None:
            self._rendered = self.emulator.snapshot()
        return self._rendered + bytes(self.pending)

    async def replay(self, data: bytearray) -> None:
        """Eat a log replay's tail, a slice per pass of the loop; keep its unfinished end."""
        if len(data) > REPLAY_KEEP:
            start = len(data) - REPLAY_KEEP
            newline = data.find(b"\n", start)
            del data[: newline + 1 if newline >= 0 else start]
        cut = safe_cut(data, len(data))
        for offset in range(0, cut, EMULATOR_SLICE):
            self._feed(bytes(data[offset : min(offset + EMULATOR_SLICE, cut)]))
            await asyncio.sleep(0)
        self.pending = data[cut:]
        self.fed = cut

    def take(self, data: bytes) -> None:
        """Append output; the emulator gets to it on its own time."""
        self.pending += data
        if len(self.pending) > EMULATOR_BACKLOG:
            self._skip_ahead()
        self._wake.set()

    def resize(self, columns: int, lines: int) -> None:
        """The TTY changes size after the bytes taken so far."""
        self._resizes.append((self.received, columns, lines))
        self._wake.set()

    async def run(self) -> None:
        """Trail the stream until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending or self._resizes:
                while (calm := self._skipped_at + FLOOD_PAUSE - time.monotonic()) > 0:  # noqa: ASYNC110 - a time
                    await asyncio.sleep(calm)
                # The turn comes first: while it waits, output arrives (and a skip-ahead
                # may drop the oldest), so the slice is cut from what is there after.
                await _budget.turn()
                if not self._feed_slice():
                    break

    def _apply_resizes(self) -> None:
        while self._resizes and self._resizes[0][0] <= self.fed:
            _, columns, lines = self._resizes.popleft()
            self.emulator.resize(columns, lines)
            self._rendered = None

    def _feed(self, chunk: bytes) -> None:
        self.emulator.feed(chunk)
        self._rendered = None

    def _skip_ahead(self) -> None:
        drop = len(self.pending) - EMULATOR_KEEP
        newline = self.pending.find(b"\n", drop)
        drop = newline + 1 if 0 <= newline < len(self.pending) - 1 else drop
        del self.pending[:drop]
        self.fed += drop
        self._skipped_at = time.monotonic()
        self._apply_resizes()

    def _feed_slice(self) -> bool:
        """Apply the resizes that are due and feed the emulator one slice. Returns False
        when there is nothing it can eat yet (no complete line, no escape to cut at)."""
        self._apply_resizes()
        limit = min(len(self.pending), EMULATOR_SLICE)
        if self._resizes:
            limit = min(limit, self._resizes[0][0] - self.fed)
        at_marker = bool(self._resizes) and limit == self._resizes[0][0] - self.fed
        cut = limit if at_marker else safe_cut(self.pending, limit)
        if cut <= 0 and len(self.pending) > EMULATOR_KEEP:
            cut = limit  # no safe point in a long run: take it as it is
        if cut <= 0:
            return False
        chunk = bytes(self.pending[:cut])
        del self.pending[:cut]
        self.fed += cut
        started = time.monotonic()
        self._feed(chunk)
        _budget.spent(time.monotonic() - started)
        return True
