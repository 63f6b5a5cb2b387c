"""Run daphne with an access log that keeps session ids out: ``python -m pwd_site.serve``.

Takes daphne's own arguments. Daphne's access log writes every request path, and pwd's
paths carry the session id (the credential); this writes them through
:func:`pwd_site.redact.redact`. Run daphne without ``--proxy-headers``: the app works
out the client address itself from PWD_TRUSTED_PROXIES (daphne would believe any
client's X-Forwarded-For).
"""

import sys
from typing import Any

from daphne import cli
from daphne.access import AccessLogGenerator

from pwd_site.redact import redact


class RedactedAccessLog(AccessLogGenerator):
    def write_entry(self, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        super().write_entry(host, date, redact(request), *args, **kwargs)


def main(argv: list[str] | None = None) -> None:
    # daphne's CLI builds its access logger from this module-level name.
    cli.AccessLogGenerator = RedactedAccessLog  # type: ignore[misc]
    cli.CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
