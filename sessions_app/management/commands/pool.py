"""``manage.py pool``: keep PWD_POOL_SIZE warm nodes and PWD_POOL_SESSIONS hot sessions
ready until SIGTERM or SIGINT."""

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from sessions_app.hot_keeper import HotKeeper

log = logging.getLogger("sessions_app.keeper")


class Command(BaseCommand):
    help = "Keep PWD_POOL_SIZE pre-started nodes ready for sessions to take."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds between passes (default 1)"
        )
        parser.add_argument(
            "--size", type=int, default=None, help="nodes to keep (default PWD_POOL_SIZE)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        keeper = HotKeeper(size=options["size"])
        try:
            if options["once"]:
                started = keeper.run_once()
                self.stdout.write(f"started {started} pool node(s)")
                return
            stop = threading.Event()

            def request_stop(signum: int, frame: object) -> None:
                # Finish the pass in progress (a node start takes a second or two) and
                # leave the ready nodes for the next keeper; they are labelled and rowed.
                stop.set()

            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
            log.info("pool keeper: keeping %d node(s) of %s", keeper.size, settings.PWD_NODE_IMAGE)
            keeper.run_forever(stop, options["interval"])
        finally:
            keeper.close()
