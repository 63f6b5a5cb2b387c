"""The suite's live server: :mod:`pwd_site.testing`'s, its instance named after this run.

``live_server(tmp_path, **env)`` keeps the database (``db.sqlite3``) and the logs in
``tmp_path``; the server labels what it makes ``<this run's instance>-<8 hex>`` and removes
all of it when the block ends.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from pwd_site.testing import ROOT, Instance, LiveServer, free_port
from pwd_site.testing import live_server as _live_server

__all__ = ["ROOT", "Instance", "LiveServer", "free_port", "live_server"]


@contextlib.contextmanager
def live_server(tmp_path: Path, **extra_env: str) -> Iterator[LiveServer]:
    with _live_server(tmp_path, prefix=settings.PWD_INSTANCE, **extra_env) as server:
        yield server
