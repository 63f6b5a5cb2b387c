"""Snapshots: what a client that joins late or reconnects is sent, rebuilt in an emulator."""

import asyncio

from terminals.screen import Emulator


def _replay(snapshot: bytes, cols: int = 40, rows: int = 10) -> Emulator:
    copy = Emulator(cols, rows)
    copy.feed(snapshot)
    return copy


def test_a_snapshot_rebuilds_the_screen_and_the_cursor():
    emulator = Emulator(40, 10)
    emulator.feed(b"one\r\n\x1b[31mtwo\x1b[0m\r\n$ ls")
    copy = _replay(emulator.snapshot())
    assert copy.screen.display == emulator.screen.display
    assert (copy.screen.cursor.x, copy.screen.cursor.y) == (4, 2)
    assert copy.screen.buffer[1][0].fg == "red"


def test_a_snapshot_starts_with_a_reset_and_carries_each_line_once():
    emulator = Emulator(40, 10)
    emulator.feed(b"".join(b"line-%d\r\n" % n for n in range(30)))
    snapshot = emulator.snapshot()
    assert snapshot.startswith(b"\x1bc")
    for n in range(30):
        assert snapshot.count(b"line-%d\r\n" % n) == 1


def test_the_scrollback_is_bounded():
    emulator = Emulator(40, 10)
    emulator.feed(b"".join(b"line-%d\r\n" % n for n in range(3000)))
    assert len(emulator.screen.history) == 1000
    assert b"line-100\r" not in emulator.snapshot()


def test_the_alternate_screen_is_restored_when_a_program_exits():
    emulator = Emulator(40, 10)
    emulator.feed(b"before\r\n$ vim\r\n\x1b[?1049h\x1b[H\x1b[2Jeditor\x1b[>4;2m")
    assert b"\x1b[?1049h" in emulator.snapshot()
    emulator.feed(b"\x1b[?1049l$ ")
    assert emulator.screen.display[0].rstrip() == "before"
    assert "editor" not in "".join(emulator.screen.display)


def test_modes_a_program_set_are_replayed():
    emulator = Emulator(40, 10)
    emulator.feed(b"\x1b[?2004h\x1b[?1h\x1b[?25l")
    snapshot = emulator.snapshot()
    assert b"\x1b[?2004h" in snapshot
    assert b"\x1b[?1h" in snapshot
    assert b"\x1b[?25l" in snapshot


def test_a_sequence_pyte_cannot_parse_does_not_stop_the_emulator():
    emulator = Emulator(40, 10)
    emulator.feed(b"\x1b[?5W\x1b[>1;2;3xok")
    emulator.feed(b"\r\nstill")
    assert "still" in "".join(emulator.screen.display)


async def test_joins_share_one_render_until_the_emulator_eats_more():
    from terminals.screen import TrailingScreen

    screen = TrailingScreen(40, 10)
    await screen.replay(bytearray(b"".join(b"line-%d\r\n" % n for n in range(30)) + b"$ "))
    first = screen.snapshot()
    rendered = screen._rendered
    assert all(screen.snapshot() == first for _ in range(30))
    assert screen._rendered is rendered  # rendered once for all of them
    screen.take(b"ls\r\nfile\r\n")
    assert screen.snapshot() == first + b"ls\r\nfile\r\n"  # the bytes it has not eaten
    assert screen._feed_slice()
    assert screen._rendered is None
    assert _replay(screen.snapshot()).screen.display == screen.emulator.screen.display


async def test_in_a_flood_the_emulator_skips_ahead_and_rests_until_it_calms_down():
    from terminals.screen import EMULATOR_BACKLOG, FLOOD_PAUSE, TrailingScreen

    screen = TrailingScreen(40, 10)
    for n in range(3000):
        screen.take(b"flood-line-%d\r\n" % n)
    assert len(screen.pending) <= EMULATOR_BACKLOG
    assert screen.received == sum(len(b"flood-line-%d\r\n" % n) for n in range(3000))
    assert screen.snapshot().endswith(b"flood-line-2999\r\n")
    task = asyncio.create_task(screen.run())
    try:
        await asyncio.sleep(FLOOD_PAUSE / 4)
        assert screen.pending  # resting: nothing eaten right after the skip
        for _ in range(400):  # then it eats the tail (bounded: 400 x 50 ms)
            if not screen.pending:
                break
            await asyncio.sleep(0.05)
        assert not screen.pending
        assert "flood-line-2999" in "\n".join(screen.emulator.screen.display)
    finally:
        task.cancel()
