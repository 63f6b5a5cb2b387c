"""``manage.py workshops``: make workshops' seats before trainees join, until SIGTERM."""

import asyncio
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from workshops.provision import Provisioner

log = logging.getLogger("workshops.provision")


class Command(BaseCommand):
    help = "Make every workshop's seats (sessions, networks, nodes) ahead of its trainees."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds between passes (default 1)"
        )
        parser.add_argument(
            "--parallelism",
            type=int,
            default=None,
            help="seats made at once (default PWD_WORKSHOP_PARALLELISM)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        provisioner = Provisioner(options["parallelism"])
        if options["once"]:
            ready = asyncio.run(provisioner.run_once())
            self.stdout.write(f"{ready} seat(s) ready")
            return
        asyncio.run(self._serve(provisioner, options["interval"]))

    async def _serve(self, provisioner: Provisioner, interval: float) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Seats being made finish (or are undone); waiting ones stay for the next run.
            loop.add_signal_handler(signum, stop.set)
        log.info("workshop provisioner: %d seat(s) at once", provisioner.parallelism)
        await provisioner.run_forever(stop, interval)
