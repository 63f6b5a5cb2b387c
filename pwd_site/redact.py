"""Keep session ids out of logs: the id is the credential of a session.

Ids are 32 URL-safe base64 characters (``sessions_app.models.new_session_id``). In any
path a log line carries, in whatever form (``/P/<id>/``, ``..%2F<id>``, ``//p//<id>``,
percent-encoded once or twice), every run of 20 or more such characters is cut to its
first six, as ``Session.short_id`` is. Matching by shape rather than by route keeps a
path the router never heard of from slipping through. Used by the logging
configuration (every record) and by the daphne access log (pwd_site.serve).
"""

import logging
import re
from urllib.parse import unquote

SHORT = 6
# Shorter than any session id, longer than the words of the app's own paths.
MIN_ID = 20
# Encoded twice (``%252F``) is as far as a client's mangling plausibly goes; a bound
# keeps a crafted ``%25252525...`` from costing more.
DECODE_ROUNDS = 3
_TOKEN = re.compile(r"\S+")
_ID_LIKE = re.compile(r"[A-Za-z0-9_-]{" + str(MIN_ID) + r",}")


def _decoded(token: str) -> str:
    for _ in range(DECODE_ROUNDS):
        decoded = unquote(token)
        if decoded == token:
            break
        token = decoded
    return token


def _redact_token(match: re.Match[str]) -> str:
    token = match.group()
    decoded = _decoded(token)
    if "/" not in decoded and "\\" not in decoded:
        return token
    cleaned = _ID_LIKE.sub(lambda m: m.group()[:SHORT] + "...", decoded)
    # An untouched path is logged as it came, percent-encoding and all.
    return token if cleaned == decoded else cleaned


def redact(text: str) -> str:
    """``text`` with every id-like run in a path cut to its first characters."""
    return _TOKEN.sub(_redact_token, text)


class RedactSessionIds(logging.Filter):
    """A logging filter that rewrites each record's message with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
