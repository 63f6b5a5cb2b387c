"""The seat provisioner (``manage.py workshops``): makes every seat's session, network
and nodes (with the template's swarm formed) before trainees join.

A pass claims seats with a conditional UPDATE (waiting, failed and due a retry, or left
provisioning by a process that died), at most PWD_WORKSHOP_PARALLELISM at once, so
several provisioners never make one seat twice. A seat's session has the workshop's end
as its fixed end (``Session.ends_at``), not the anonymous idle timeout. A seat that fails
has what it made removed, and is tried again after PWD_WORKSHOP_RETRY_DELAY, up to
PWD_WORKSHOP_RETRIES times; the dashboard shows why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import F
from django.utils import timezone

from sessions_app import engine, services, setup
from sessions_app.errors import ApiError
from sessions_app.models import Session
from workshops.models import Seat, Workshop

log = logging.getLogger(__name__)


def claim(limit: int, now: datetime | None = None) -> list[Seat]:
    """Claim up to ``limit`` seats to make now, oldest workshops first."""
    now = now or timezone.now()
    candidates = (
        Seat.objects.claimable(now)
        .filter(workshop__in=Workshop.objects.to_prepare(now))
        .order_by("workshop__created_at", "number")
        .values_list("pk", "status", "claimed_at")[: limit * 4]
    )
    claimed: list[Seat] = []
    for pk, status, claimed_at in candidates:
        if len(claimed) == limit:
            break
        updated = Seat.objects.filter(pk=pk, status=status, claimed_at=claimed_at).update(
            status=Seat.Status.PROVISIONING, claimed_at=now, error=""
        )
        if updated:
            claimed.append(Seat.objects.select_related("workshop", "session").get(pk=pk))
    return claimed


def recycle_lost(now: datetime | None = None) -> int:
    """Ready seats whose session ended underneath (a node died, an operator removed it)
    are made again; a taken seat keeps its trainee and their ended session."""
    now = now or timezone.now()
    lost = Seat.objects.filter(status=Seat.Status.READY, workshop__in=Workshop.objects.running())
    lost = lost.exclude(session__in=Session.objects.active(now))
    return lost.update(status=Seat.Status.WAITING, session=None, ready_at=None)


class Provisioner:
    """Makes seats, ``parallelism`` at once. Safe to run in several processes."""

    def __init__(self, parallelism: int | None = None) -> None:
        self.parallelism = parallelism or settings.PWD_WORKSHOP_PARALLELISM

    async def run_once(self) -> int:
        """One pass; returns how many seats became ready."""
        await sync_to_async(recycle_lost)()
        seats = await sync_to_async(claim)(self.parallelism)
        if not seats:
            return 0
        results = await asyncio.gather(*(self.make(seat) for seat in seats))
        return sum(results)

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("workshop pass failed")
            finally:
                await sync_to_async(close_old_connections)()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def make(self, seat: Seat) -> bool:
        workshop = seat.workshop
        session: Session | None = None
        try:
            if seat.session_id:
                # Left by a pass that died: start again from nothing.
                await _end_quietly(seat.session)
            session = await services.create_session("")
            session.ends_at = workshop.ends_at
            await session.asave(update_fields=["ends_at"])
            await Seat.objects.filter(pk=seat.pk).aupdate(session=session)
            if workshop.template:
                await setup.set_up(session, setup.template_plan(workshop.template))
            else:
                # Every add is waited for, so none is still starting when a failure
                # ends the session.
                added = await asyncio.gather(
                    *(
                        services.add_node(session, workshop.image)
                        for _ in range(workshop.nodes_per_seat)
                    ),
                    return_exceptions=True,
                )
                failures = [r for r in added if isinstance(r, BaseException)]
                if failures:
                    raise failures[0]
        except (ApiError, engine.EngineError, OSError) as exc:
            await self._failed(seat, session, exc)
            return False
        except Exception as exc:
            log.exception("seat %s of %s", seat.number, workshop.pk)
            await self._failed(seat, session, exc)
            return False
        updated = await Seat.objects.filter(
            pk=seat.pk, status=Seat.Status.PROVISIONING, claimed_at=seat.claimed_at
        ).aupdate(status=Seat.Status.READY, ready_at=timezone.now(), attempts=0)
        if not updated:
            # The workshop ended, or another pass took the seat over: ours is not needed.
            await _end_quietly(session)
            return False
        log.info("seat %d of workshop %s is ready", seat.number, workshop.pk)
        return True

    async def _failed(self, seat: Seat, session: Session | None, exc: BaseException) -> None:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        log.warning("seat %d of workshop %s failed: %s", seat.number, seat.workshop_id, message)
        if session is not None:
            await _end_quietly(session)
        attempts = seat.attempts + 1
        retry_at = None
        if attempts <= settings.PWD_WORKSHOP_RETRIES:
            retry_at = timezone.now() + timedelta(seconds=settings.PWD_WORKSHOP_RETRY_DELAY)
        await Seat.objects.filter(pk=seat.pk, claimed_at=seat.claimed_at).aupdate(
            status=Seat.Status.FAILED,
            session=None,
            attempts=F("attempts") + 1,
            error=message[:500],
            retry_at=retry_at,
        )


async def _end_quietly(session: Session | None) -> None:
    if session is None:
        return
    try:
        await services.end_session(session, reason="seat_remade")
    except Exception as exc:  # noqa: BLE001 - the reaper removes what is left
        log.warning("could not end %s: %s", session, exc)
