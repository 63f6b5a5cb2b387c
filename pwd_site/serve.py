"""Run daphne the way pwd needs it: ``python -m pwd_site.serve``.

Takes daphne's own arguments, and changes two things. Daphne's access log writes every
request path, and pwd's paths carry the session id (the credential); this writes them
through :func:`pwd_site.redact.redact`. And a request body over PWD_MAX_BODY is refused
while it arrives, not after daphne has stored it (:class:`pwd_site.bodylimit.LimitedRequest`).
Run daphne without ``--proxy-headers``: the app works out the client address itself
from PWD_TRUSTED_PROXIES (daphne would believe any client's X-Forwarded-For).
"""

import sys
from typing import Any

from daphne import cli, http_protocol
from daphne.access import AccessLogGenerator

from pwd_site.bodylimit import LimitedRequest
from pwd_site.redact import redact


class RedactedAccessLog(AccessLogGenerator):
    def write_entry(self, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        super().write_entry(host, date, redact(request), *args, **kwargs)
        # Each line at once: stdout into a file or a pipe is block-buffered, and a crash
        # would lose the last requests, the ones that explain it.
        self.stream.flush()


def main(argv: list[str] | None = None) -> None:
    # daphne's CLI builds its access logger, and its HTTP factory each request, from
    # these module-level names.
    cli.AccessLogGenerator = RedactedAccessLog  # type: ignore[misc]
    http_protocol.WebRequest = LimitedRequest  # type: ignore[misc]
    cli.CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
