"""A node's output as PWD sends it: text (bad UTF-8 becomes U+FFFD), in frames of at
most FRAME_BYTES bytes, never split inside a character, also across reads."""

from __future__ import annotations

import codecs

FRAME_BYTES = 1024


class OutputText:
    """Turns one terminal's byte stream into PWD's ``instance terminal out`` strings."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def pieces(self, data: bytes) -> list[str]:
        """The text of ``data`` (what completes a character held from before included),
        in pieces of at most FRAME_BYTES bytes of UTF-8 each."""
        return split_text(self._decoder.decode(data))


def split_text(text: str, limit: int = FRAME_BYTES) -> list[str]:
    if not text:
        return []
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return [text]
    pieces, start = [], 0
    while start < len(raw):
        end = min(start + limit, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        pieces.append(raw[start:end].decode("utf-8"))
        start = end
    return pieces
