"""Keep session ids out of logs: the id is the credential of a session.

Paths that carry one (``/api/sessions/<id>/``, ``/p/<id>/``, ``/ws/sessions/<id>/``)
are cut to the id's first six characters, as ``Session.short_id`` is. Used by the
logging configuration (every record) and by the daphne access log (pwd_site.serve).
"""

import logging
import re

SHORT = 6
_PATH_ID = re.compile(
    r"(/(?:api/sessions|ws/sessions|p)/)([A-Za-z0-9_-]{" + str(SHORT) + r"})[A-Za-z0-9_%-]*"
)


def redact(text: str) -> str:
    """``text`` with every session id in a path cut to its first characters."""
    return _PATH_ID.sub(r"\1\2...", text)


class RedactSessionIds(logging.Filter):
    """A logging filter that rewrites each record's message with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
