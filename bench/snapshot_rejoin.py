"""What 30 clients rejoining one terminal at once (a server restart) cost the event loop.

    .venv/bin/python bench/snapshot_rejoin.py              # 30 clients, 5 rounds
    .venv/bin/python bench/snapshot_rejoin.py --clients 60

Each joining client is given the hub's snapshot synchronously (Hub.join), so the
renders of a join storm run back to back on the event loop every terminal shares. The
screen is the worst case: the largest size a client may ask for (500x200), a full
scrollback of coloured lines, a snapshot near its 512 KiB budget. Measured in the same
run: a render per client (before the cache) and TrailingScreen's cached snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from terminals.screen import HISTORY_LINES, TrailingScreen  # noqa: E402

COLS, ROWS = 500, 200


def _line(n: int) -> bytes:
    words = b" ".join(b"\x1b[3%dmword%d\x1b[0m" % (n % 7 + 1, i) for i in range(60))
    return b"%06d " % n + words[: COLS - 10] + b"\r\n"


async def _screen() -> TrailingScreen:
    screen = TrailingScreen(COLS, ROWS)
    screen.emulator.resize(COLS, ROWS)
    await screen.replay(bytearray(b"".join(_line(n) for n in range(HISTORY_LINES + ROWS))))
    # The replay keeps only its 128 KiB tail; feed the rest straight to fill the history.
    for n in range(HISTORY_LINES + ROWS):
        screen.emulator.feed(_line(n))
    screen.emulator.feed(b"\x1b[1;32mtrainee@node1\x1b[0m:~$ ")
    return screen


def measure(clients: int, rounds: int) -> dict[str, object]:
    screen = asyncio.run(_screen())
    size = len(screen.snapshot())
    uncached, cached = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(clients):
            screen.emulator.snapshot()
        uncached.append(time.perf_counter() - started)
        screen._rendered = None  # a fresh screen: the first join renders
        started = time.perf_counter()
        for _ in range(clients):
            screen.snapshot()
        cached.append(time.perf_counter() - started)
    before, after = statistics.median(uncached), statistics.median(cached)
    return {
        "clients": clients,
        "snapshot_kib": size // 1024,
        "render_each_ms": before * 1000,
        "cached_ms": after * 1000,
        "ratio": before / after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.clients, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
