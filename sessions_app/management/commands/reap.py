"""``manage.py reap``: end expired sessions and reconcile the engine with the database."""

import signal
from typing import Any

from django.core.management.base import BaseCommand

from sessions_app.reaper import Reaper


class Command(BaseCommand):
    help = (
        "End sessions past their lifetime or idle limit, remove what they left on the "
        "engine, and remove labelled objects the database does not account for. One pass "
        "at start, then one every PWD_REAP_INTERVAL seconds until SIGTERM or SIGINT."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="run one pass and exit")
        parser.add_argument("--interval", type=float, default=None, help="seconds between passes")

    def handle(
        self, *args: Any, once: bool = False, interval: float | None = None, **options: Any
    ) -> None:
        reaper = Reaper(interval)
        if once:
            report = reaper.run_once()
            if report.errors:
                self.stderr.write("\n".join(report.errors))
            return

        def stop(signum: int, frame: Any) -> None:
            reaper.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        reaper.run_forever()
