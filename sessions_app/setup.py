"""Swarm setups: an empty session's nodes started at once from a template or a plan,
formed into a swarm and given their commands, each step announced as a session event.

The nodes come from :func:`services.add_node` (warm pool or cold), so a setup is a set
of ordinary adds; what is ours is the swarm on top of them and undoing a setup that
fails part way. Events (docs/protocol.md): ``setup.progress``, then ``setup.done`` or
``setup.failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings

from sessions_app import engine, events, services
from sessions_app.errors import ApiError, BadRequest, Conflict, NotFound
from sessions_app.models import Node, Session

log = logging.getLogger(__name__)

MANAGER, WORKER, NO_ROLE = "manager", "worker", "none"
ROLES = (MANAGER, WORKER, NO_ROLE)
TEMPLATES: dict[str, tuple[str, ...]] = {
    "1-manager-1-worker": (MANAGER, WORKER),
    "3-managers-2-workers": (MANAGER,) * 3 + (WORKER,) * 2,
    "5-managers": (MANAGER,) * 5,
}
# Seconds one swarm command (init, join-token, join, node ls) may take in a node, and
# one of the plan's own commands.
SWARM_COMMAND_TIMEOUT = 60
RUN_TIMEOUT = 120
# Readiness: `docker node ls` on the first manager, every READY_POLL_INTERVAL seconds,
# at most READY_POLLS times and READY_TIMEOUT seconds.
READY_FORMAT = "{{.Hostname}} {{.Status}} {{.ManagerStatus}}"
READY_POLL_INTERVAL = 0.5
READY_POLLS = 240
READY_TIMEOUT = 90.0
# A claim older than this was left by a process that died during its setup.
CLAIM_STALE_AFTER = timedelta(minutes=30)
# How much of a failed command's output its error quotes.
OUTPUT_TAIL = 400

T = TypeVar("T")
# Setups under way; shielded from a client that hangs up, so kept referenced here.
_running: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class PlannedNode:
    """One node of a plan: its swarm role and the argvs it runs once the swarm is up."""

    role: str
    run: tuple[tuple[str, ...], ...] = ()


class SetupFailed(ApiError):
    """Forming the swarm failed (a swarm command, or readiness); the setup was undone."""

    status = 502
    code = "setup_failed"


class CommandFailed(ApiError):
    """One of the plan's own commands failed (the client's, so not a 5xx); undone."""

    status = 409
    code = "command_failed"


def template_plan(name: str) -> list[PlannedNode]:
    """The plan of template ``name``; BadRequest ``unknown_template`` for another name."""
    roles = TEMPLATES.get(name)
    if roles is None:
        names = ", ".join(TEMPLATES)
        raise BadRequest(f"There is no template {name!r}; use one of: {names}.", "unknown_template")
    return [PlannedNode(role) for role in roles]


async def set_up(session: Session, plan: list[PlannedNode]) -> list[Node]:
    """Start the plan's nodes (``node1`` is the plan's first), form their swarm, run
    their commands; return the session's nodes once ``docker node ls`` on the first
    manager shows each swarm node Ready in its planned role.

    Raises Conflict ``node_limit_reached`` when the plan has more nodes than the session
    may have, ``session_not_empty`` when it has nodes, ``setup_in_progress`` while
    another setup runs; on a failure part way (a node that did not start, a quota,
    SetupFailed, CommandFailed), the error, after every node this setup made is removed.
    A client that hangs up does not stop it half-way: it finishes or is undone.
    """
    if len(plan) > session.max_nodes:
        raise Conflict(
            f"The plan has {len(plan)} nodes; this session may have {session.max_nodes}.",
            "node_limit_reached",
        )
    if not await sync_to_async(session.claim_setup)(CLAIM_STALE_AFTER):
        raise await _refusal(session)
    task = asyncio.ensure_future(_Setup(session, plan).run())
    _running.add(task)
    task.add_done_callback(_forget)
    return await asyncio.shield(task)


def _forget(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a client that left is not told, the log is


async def _refusal(session: Session) -> ApiError:
    if not await Session.objects.active().filter(pk=session.pk).aexists():
        return NotFound(services.SESSION_NOT_FOUND, "session_not_found")
    if await session.nodes.aexists():
        return Conflict(
            "This session already has nodes; a template needs an empty session. "
            "Remove its nodes first.",
            "session_not_empty",
        )
    return Conflict("A setup is already under way on this session.", "setup_in_progress")


class _Setup:
    """One setup's run: the nodes it made so far, its progress events, its clean-up."""

    def __init__(self, session: Session, plan: list[PlannedNode]) -> None:
        self.session = session
        self.plan = plan
        self.made: list[Node] = []

    async def run(self) -> list[Node]:
        started = time.monotonic()
        try:
            members = list(zip(await self.start_nodes(), self.plan, strict=True))
            managers = [node for node, planned in members if planned.role == MANAGER]
            swarm = [(node, planned.role) for node, planned in members if planned.role != NO_ROLE]
            if managers:
                await self.form_swarm(managers, [n for n, role in swarm if role == WORKER])
                await self.wait_until_ready(managers[0], swarm)
            await self.run_commands(members)
        except BaseException as exc:
            await self.undo(exc)
            raise
        finally:
            await sync_to_async(self.session.release_setup)()
        roles = [{"name": node.name, "role": planned.role} for node, planned in members]
        seconds = round(time.monotonic() - started, 3)
        await self.publish("setup.done", nodes=roles, seconds=seconds)
        return await services.session_nodes(self.session)

    async def publish(self, kind: str, **fields: Any) -> None:
        await events.publish(self.session.id, {"type": kind, **fields})

    async def progress(self, step: str, done: int, of: int, node: str | None) -> None:
        await self.publish("setup.progress", step=step, done=done, of=of, node=node)

    async def start_nodes(self) -> list[Node]:
        """Every planned node at once; the nodes in name order (node1 first)."""
        image = settings.PWD_NODE_IMAGE

        async def one() -> None:
            node = await services.add_node(self.session, image)
            self.made.append(node)
            await self.progress("nodes", len(self.made), len(self.plan), node.name)

        await self.progress("nodes", 0, len(self.plan), None)
        await _all(one() for _ in self.plan)
        return sorted(self.made, key=lambda node: node.number)

    async def form_swarm(self, managers: list[Node], workers: list[Node]) -> None:
        """The first manager inits the swarm; every other node joins at once. A manager
        whose join fails (raft can refuse one of several at once) leaves what it half
        joined and joins again, alone, once the others are done."""
        first, of = managers[0], len(managers) + len(workers)
        await self.progress("swarm", 0, of, None)
        await self.command(first, ["docker", "swarm", "init", "--advertise-addr", first.ip])
        joined = [first]
        await self.progress("swarm", 1, of, first.name)
        roles = (MANAGER, WORKER)
        listed = await _all(
            self.command(first, ["docker", "swarm", "join-token", "-q", role]) for role in roles
        )
        tokens = {role: output.strip() for role, output in zip(roles, listed, strict=True)}

        async def join(node: Node, role: str) -> None:
            argv = ["docker", "swarm", "join", "--token", tokens[role]]
            argv += ["--advertise-addr", node.ip, f"{first.ip}:2377"]
            shown = f"docker swarm join --token <{role} token> {first.ip}:2377"
            await self.command(node, argv, shown=shown)
            joined.append(node)
            await self.progress("swarm", len(joined), of, node.name)

        refused: list[Node] = []

        async def manager(node: Node) -> None:
            try:
                await join(node, MANAGER)
            except SetupFailed:
                refused.append(node)

        await _all([*(manager(node) for node in managers[1:]), *(join(n, WORKER) for n in workers)])
        for node in refused:
            log.info("setup of %s: %s joins again, alone", self.session, node.name)
            with contextlib.suppress(SetupFailed):
                await self.command(node, ["docker", "swarm", "leave", "--force"])
            await join(node, MANAGER)

    async def wait_until_ready(self, first: Node, swarm: list[tuple[Node, str]]) -> None:
        wanted = {node.hostname: role == MANAGER for node, role in swarm}
        deadline = time.monotonic() + READY_TIMEOUT
        shown, output = -1, ""
        for _ in range(READY_POLLS):
            output = await self.command(first, ["docker", "node", "ls", "--format", READY_FORMAT])
            ready = ready_as_planned(output, wanted)
            if len(ready) != shown:
                shown = len(ready)
                await self.progress("ready", shown, len(wanted), None)
            if len(ready) == len(wanted) or time.monotonic() > deadline:
                break
            await asyncio.sleep(READY_POLL_INTERVAL)
        if shown != len(wanted):
            listed = "; ".join(output.strip().splitlines()) or "nothing"
            raise SetupFailed(
                f"The swarm did not show every node Ready in its role within "
                f"{READY_TIMEOUT:.0f} s; {first.name} lists: {listed}."
            )

    async def run_commands(self, members: list[tuple[Node, PlannedNode]]) -> None:
        """Each node's commands in order; the nodes side by side."""
        total, done = sum(len(planned.run) for _, planned in members), 0
        if not total:
            return
        await self.progress("run", 0, total, None)

        async def commands_of(node: Node, planned: PlannedNode) -> None:
            nonlocal done
            for argv in planned.run:
                await self.command(node, list(argv), RUN_TIMEOUT, failure=CommandFailed)
                done += 1
                await self.progress("run", done, total, node.name)

        await _all(commands_of(node, planned) for node, planned in members)

    async def command(
        self,
        node: Node,
        argv: list[str],
        seconds: int = SWARM_COMMAND_TIMEOUT,
        shown: str | None = None,
        failure: type[ApiError] = SetupFailed,
    ) -> str:
        """The output of ``argv`` run in ``node``; ``failure`` unless it exits 0."""
        shown = shown or shlex.join(argv)
        try:
            result = await engine.run_exec(
                engine.exec_in_node,
                node.container_id,
                argv,
                seconds,
                settings.PWD_EXEC_MAX_OUTPUT,
            )
        except engine.NodeGone:
            raise SetupFailed(f"{node.name} is gone: its container was removed.") from None
        if result.timed_out:
            raise failure(f"{node.name}: `{shown}` did not finish within {seconds} s.")
        if result.exit_code != 0:
            tail = result.output.strip()[-OUTPUT_TAIL:] or "no output"
            raise failure(f"{node.name}: `{shown}` exited with {result.exit_code}: {tail}")
        return result.output

    async def undo(self, exc: BaseException) -> None:
        """Remove the nodes this setup made and say why it failed."""
        for node in self.made:
            try:
                await services.remove_node(self.session, node.name)
            except (ApiError, engine.EngineError) as error:
                log.warning("setup of %s: could not remove %s: %s", self.session, node.name, error)
        code, message = error_of(exc)
        await self.publish("setup.failed", error={"code": code, "message": message})


async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await every call to its end (none is left running), then raise the first error."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def ready_as_planned(listing: str, wanted: dict[str, bool]) -> set[str]:
    """The hostnames of ``wanted`` (hostname -> is a manager) that the ``docker node ls``
    listing shows Ready, as a manager (Leader or Reachable) exactly when planned so."""
    ready = set()
    for line in listing.splitlines():
        hostname, status, manager_status = [*line.split(), "", ""][:3]
        if hostname not in wanted or status != "Ready":
            continue
        if (manager_status in ("Leader", "Reachable")) == wanted[hostname]:
            ready.add(hostname)
    return ready


def error_of(exc: BaseException) -> tuple[str, str]:
    """The error code and message the API answers for ``exc``."""
    if isinstance(exc, ApiError):
        return exc.code, exc.message
    if isinstance(exc, engine.EngineUnavailable):
        return "engine_unavailable", str(exc)
    if isinstance(exc, engine.NodeStartError):
        return "node_start_failed", str(exc)
    if isinstance(exc, engine.EngineError):
        return "engine_error", str(exc)
    with contextlib.suppress(Exception):
        log.error("setup failed unexpectedly", exc_info=exc)
    return "internal_error", "Something went wrong on our side."
