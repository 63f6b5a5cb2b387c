"""Run the pwd benchmarks and write docs/benchmarks.md and bench/results/latest.json.

    .venv/bin/python bench/run.py            # the full run (tens of minutes, 200 nodes)
    .venv/bin/python bench/run.py --quick    # tiny counts, a minute or so
    .venv/bin/python bench/run.py --quick --out /tmp/b   # write both files there
    .venv/bin/python bench/run.py --only pool-add --trials 5   # one phase, printed only
    .venv/bin/python bench/run.py --only flood --echoes 300   # echo next to 3 floods

Needs the Docker engine (swarm active) and the node image, like `make run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, report  # noqa: E402

MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, for a smoke test")
    parser.add_argument("--out", type=Path, help="write both outputs to this directory")
    parser.add_argument("--trials", type=int, help="add-node trials of each kind (10)")
    parser.add_argument("--burst", type=int, help="trainees starting at once (20)")
    parser.add_argument("--mib", type=int, help="MiB of terminal output (64)")
    parser.add_argument("--echoes", type=int, help="keystrokes for the echo latency (200)")
    parser.add_argument("--terms", type=int, help="terminals open at once (200)")
    parser.add_argument("--term-sessions", type=int, help="sessions they are spread over (40)")
    parser.add_argument("--type-seconds", type=float, help="how long they type (30)")
    parser.add_argument(
        "--only",
        choices=sorted(PHASES),
        help="run this phase alone and print its numbers (the report files are left alone;"
        " with --out, the numbers go to DIR/partial.json)",
    )
    parser.add_argument(
        "--no-prepare",
        action="store_true",
        help="measure the pool with PWD_POOL_PREPARE=false (no attach ahead)",
    )
    args = parser.parse_args(argv)
    defaults = (
        {"trials": 1, "burst": 2, "mib": 1, "echoes": 10, "terms": 2, "term_sessions": 1}
        | {"type_seconds": 3.0}
        if args.quick
        else {"trials": 10, "burst": 20, "mib": 64, "echoes": 200, "terms": 200}
        | {"term_sessions": 40, "type_seconds": 30.0}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _only_pool_add(environment: harness.Environment, args: argparse.Namespace, servers: list):
    from bench import measure as m

    prepare = not args.no_prepare
    say(f"add node from the pool (PWD_POOL_SIZE=2, prepare {prepare}), {args.trials}x2")
    server = harness.Server(environment, pool_size=2, prepare=prepare).start()
    servers.append(server)
    if not server.wait_for_pool():
        raise RuntimeError("the pool did not fill")
    warm = m.add_nodes(server, args.trials)
    return {
        "add_node_pool_p50_s": m.percentile(warm.first, 0.5),
        "add_node_pool_next_p50_s": m.percentile(warm.next, 0.5),
        "add_node_pool_first_after_start_s": m.median(warm.first_after_start),
        "add_node_errors": len(warm.errors),
        "errors_sample": warm.errors[:10],
    }, [
        ("add node, pool, node1", m.summary(warm.first)),
        ("add node, pool, node2", m.summary(warm.next)),
    ]


def _only_burst(environment: harness.Environment, args: argparse.Namespace, servers: list):
    from bench import measure as m

    prepare = not args.no_prepare
    say(f"burst: {args.burst} trainees press Start at once (PWD_POOL_SIZE=2, prepare {prepare})")
    server = harness.Server(environment, pool_size=2, prepare=prepare).start()
    servers.append(server)
    if not server.wait_for_pool():
        raise RuntimeError("the pool did not fill")
    m.add_nodes(server, 0)  # the server's first add (profile probe), untimed
    server.wait_for_pool()
    time.sleep(1)
    burst = m.burst(server, args.burst)
    _end_sessions(server, burst.sessions)
    return {
        "burst_clients": args.burst,
        "burst20_ready_s": burst.ready_s,
        "burst20_errors": len(burst.errors),
        "burst20_p50_s": m.percentile(burst.per_client_s, 0.5),
        "errors_sample": burst.errors[:10],
    }, [(f"burst of {args.burst}, per trainee", m.summary(burst.per_client_s))]


def _only_flood(environment: harness.Environment, args: argparse.Namespace, servers: list):
    from bench import measure as m

    floods = 3
    say(f"echo and /healthz next to {floods} floods with clients that never ack, {args.echoes}x")
    server = harness.Server(environment, pool_size=0).start()
    servers.append(server)
    nodes, session_ids, errors = m.start_nodes(server, floods + 1, 1)
    if errors:
        raise RuntimeError(f"could not add the nodes: {errors}")
    echo_node = nodes[floods]
    container = m.node_container_ids(session_ids)[(session_ids[floods], echo_node["name"])]
    flood = asyncio.run(
        m.flood_next_door(server, nodes[:floods], echo_node, container, args.echoes)
    )
    _end_sessions(server, session_ids)
    ms = 1000.0
    return {
        "flood_terminals": flood.floods,
        "flood_echo_quiet_p50_ms": m.percentile(flood.quiet_echo, 0.5) * ms,
        "flood_echo_quiet_p95_ms": m.percentile(flood.quiet_echo, 0.95) * ms,
        "flood_echo_p50_ms": m.percentile(flood.flood_echo, 0.5) * ms,
        "flood_echo_p95_ms": m.percentile(flood.flood_echo, 0.95) * ms,
        "flood_echo_direct_p50_ms": m.percentile(flood.direct_flood_echo, 0.5) * ms,
        "flood_echo_direct_p95_ms": m.percentile(flood.direct_flood_echo, 0.95) * ms,
        "flood_healthz_quiet_p50_ms": m.percentile(flood.quiet_healthz, 0.5) * ms,
        "flood_healthz_p50_ms": m.percentile(flood.flood_healthz, 0.5) * ms,
        "flood_healthz_p95_ms": m.percentile(flood.flood_healthz, 0.95) * ms,
        "flood_output_mib": flood.flood_mib,
        "flood_server_cpu_percent": flood.cpu_percent,
    }, [
        ("echo, quiet", m.summary(flood.quiet_echo)),
        (f"echo, next to {floods} floods", m.summary(flood.flood_echo)),
        (f"echo, direct attach, next to {floods} floods", m.summary(flood.direct_flood_echo)),
        ("/healthz, quiet", m.summary(flood.quiet_healthz)),
        (f"/healthz, next to {floods} floods", m.summary(flood.flood_healthz)),
    ]


# Phases that --only runs alone: each returns its numbers and its table rows.
PHASES = {"pool-add": _only_pool_add, "burst": _only_burst, "flood": _only_flood}


def run_only(args: argparse.Namespace) -> int:
    environment = harness.Environment()
    with cleaned_up(environment) as servers:
        numbers, rows = PHASES[args.only](environment, args, servers)
    for label, stats in rows:
        print(
            f"    {label}: n {stats['n']}, p50 {stats['p50']:.3f} s, p95 {stats['p95']:.3f} s,"
            f" min {stats['min']:.3f} s, max {stats['max']:.3f} s"
        )
    for key, value in numbers.items():
        print(f"    {key} = {value}")
    if args.out:
        report.write_json(args.out / "partial.json", {"only": args.only, **numbers})
    return 0


@contextlib.contextmanager
def cleaned_up(environment: harness.Environment) -> Iterator[list[harness.Server]]:
    """Servers started in the block are stopped and everything made is removed, at any
    end; on a failure the servers' logs are shown first (they go with the clean-up)."""
    servers: list[harness.Server] = []
    try:
        yield servers
    except BaseException:
        for server in servers:
            for process in server.processes:
                print(f"--- {process.name} log (last lines)\n{process.tail()}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()
        say("removing everything the bench created")
        environment.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only:
        return run_only(args)
    out_json = (args.out or harness.ROOT / "bench" / "results") / "latest.json"
    out_md = (args.out or harness.ROOT / "docs") / "benchmarks.md"
    started_wall, started = datetime.now(UTC), time.monotonic()
    environment = harness.Environment()
    from bench import measure as m  # needs Django set up by Environment

    r: dict = {
        "quick": args.quick,
        "started_at": started_wall.isoformat(timespec="seconds"),
        "instance": environment.instance,
    }
    tables: list = []
    with cleaned_up(environment) as servers:
        r["machine"] = harness.machine()
        say(f"machine: {r['machine']['cpus']} CPUs, instance {environment.instance}")

        say(f"floor: bare docker run + wait for the inner engine, {args.trials}x")
        m.floor_once(-1)  # warm the image and page cache, untimed
        floor = [m.floor_once(i) for i in range(args.trials)]

        say(f"add node, cold (PWD_POOL_SIZE=0), {args.trials}x2")
        cold_server = harness.Server(environment, pool_size=0).start()
        servers.append(cold_server)
        cold = m.add_nodes(cold_server, args.trials)
        cold_server.stop()

        say(f"overlay attach by the engine alone, {args.trials}x2")
        connect_first, connect_next = m.overlay_connect(min(args.trials, 5))

        say(f"add node from the pool (PWD_POOL_SIZE=2), {args.trials}x2")
        server = harness.Server(environment, pool_size=2).start()
        servers.append(server)
        if not server.wait_for_pool():
            raise RuntimeError("the pool did not fill")
        warm = m.add_nodes(server, args.trials)

        say(f"burst: {args.burst} trainees press Start at once")
        server.wait_for_pool()
        time.sleep(1)
        burst = m.burst(server, args.burst)
        _end_sessions(server, burst.sessions)

        say(f"one terminal: {args.mib} MiB and {args.echoes} keystrokes, direct then websocket")
        session = server.create_session()
        status, node = server.add_node(session["id"])
        if status != 201:
            raise RuntimeError(f"could not add a node: {status} {node}")
        container_id = m.node_container_ids([session["id"]])[(session["id"], node["name"])]
        term = asyncio.run(m.one_terminal(server, node, container_id, args.mib, args.echoes))
        server.end_session(session["id"])

        per_session = max(1, args.terms // args.term_sessions)
        say(f"many terminals: starting {args.term_sessions} sessions x {per_session} nodes")
        nodes, session_ids, start_errors = m.start_nodes(server, args.term_sessions, per_session)
        say(f"{len(nodes)} nodes up ({len(start_errors)} errors); letting them go idle")
        time.sleep(10 if not args.quick else 2)
        ids = list(m.node_container_ids(session_ids).values())
        memory = m.idle_node_memory(ids[:20])
        say(f"many terminals: {len(nodes)} websockets typing for {args.type_seconds:.0f} s")
        many = asyncio.run(m.many_terminals(server, nodes, args.type_seconds))
        _end_sessions(server, session_ids)
        server.stop()

        big = None
        if not args.quick:
            # The same burst with a pool as big as the class: what a workshop host can
            # set PWD_POOL_SIZE to. Last, so no other keeper shares the pool table.
            say(f"burst again with PWD_POOL_SIZE={args.burst}")
            big_server = harness.Server(environment, pool_size=args.burst).start()
            servers.append(big_server)
            if big_server.wait_for_pool(timeout=600):
                time.sleep(2)
                big = m.burst(big_server, args.burst)
                _end_sessions(big_server, big.sessions)
            big_server.stop()

        ms = 1000.0
        direct_mib_s = term.direct_bytes / MIB / term.direct_s
        ws_mib_s = term.ws_bytes / MIB / term.ws_s
        r |= {
            "add_node_floor_p50_s": m.percentile(floor, 0.5),
            "add_node_floor_p95_s": m.percentile(floor, 0.95),
            "add_node_cold_p50_s": m.percentile(cold.first, 0.5),
            "add_node_cold_p95_s": m.percentile(cold.first, 0.95),
            "add_node_cold_next_p50_s": m.percentile(cold.next, 0.5),
            "add_node_cold_ratio": m.percentile(cold.first, 0.5) / m.percentile(floor, 0.5),
            "add_node_pool_p50_s": m.percentile(warm.first, 0.5),
            "add_node_pool_p95_s": m.percentile(warm.first, 0.95),
            "add_node_pool_next_p50_s": m.percentile(warm.next, 0.5),
            "add_node_errors": len(cold.errors) + len(warm.errors),
            "add_node_cold_first_after_start_s": m.median(cold.first_after_start),
            "add_node_pool_first_after_start_s": m.median(warm.first_after_start),
            "overlay_connect_first_p50_s": m.percentile(connect_first, 0.5),
            "overlay_connect_next_p50_s": m.percentile(connect_next, 0.5),
            "burst_clients": args.burst,
            "burst20_ready_s": burst.ready_s,
            "burst20_errors": len(burst.errors),
            "burst20_p50_s": m.percentile(burst.per_client_s, 0.5),
            "burst20_big_pool_ready_s": big.ready_s if big else float("nan"),
            "burst20_big_pool_errors": len(big.errors) if big else 0,
            "term_mib": args.mib,
            "term_ws_s": term.ws_s,
            "term_direct_s": term.direct_s,
            "term_throughput_mib_s": ws_mib_s,
            "term_direct_throughput_mib_s": direct_mib_s,
            "term_throughput_ratio": ws_mib_s / direct_mib_s,
            "echo_p50_ms": m.percentile(term.ws_echo, 0.5) * ms,
            "echo_p95_ms": m.percentile(term.ws_echo, 0.95) * ms,
            "echo_direct_p50_ms": m.percentile(term.direct_echo, 0.5) * ms,
            "echo_direct_p95_ms": m.percentile(term.direct_echo, 0.95) * ms,
            "echo_overhead_p50_ms": (
                m.percentile(term.ws_echo, 0.5) - m.percentile(term.direct_echo, 0.5)
            )
            * ms,
            "many_terminals": args.terms,
            "many_sessions": args.term_sessions,
            "many_opened": many.opened,
            "many_errors": len(many.errors) + len(start_errors),
            "many_seconds": many.seconds,
            "echo_p50_200_terms_ms": m.percentile(many.echo, 0.5) * ms,
            "echo_p95_200_terms_ms": m.percentile(many.echo, 0.95) * ms,
            "server_cpu_percent_200_terms": many.cpu_percent,
            "server_rss_before_mib": many.rss_before / MIB,
            "server_rss_after_mib": many.rss_after / MIB,
            "server_rss_per_terminal_kib": (many.rss_after - many.rss_before)
            / max(1, many.opened)
            / 1024,
            "idle_node_mib": m.median(memory) / MIB,
            "idle_node_max_mib": max(memory, default=float("nan")) / MIB,
            "idle_node_samples": len(memory),
            "errors_sample": (cold.errors + warm.errors + burst.errors + many.errors)[:10]
            + start_errors[:5],
        }
        tables = [
            ("add node, floor (docker run + inner engine)", m.summary(floor), "s", 1),
            ("add node, cold, node1", m.summary(cold.first), "s", 1),
            ("add node, cold, node2", m.summary(cold.next), "s", 1),
            ("add node, pool, node1", m.summary(warm.first), "s", 1),
            ("add node, pool, node2", m.summary(warm.next), "s", 1),
            ("overlay attach, first on network", m.summary(connect_first), "s", 1),
            ("overlay attach, second on network", m.summary(connect_next), "s", 1),
            (f"burst of {args.burst}, per trainee", m.summary(burst.per_client_s), "s", 1),
            (
                f"burst of {args.burst}, pool of {args.burst}, per trainee",
                m.summary(big.per_client_s if big else []),
                "s",
                1,
            ),
            ("echo, direct attach", m.summary(term.direct_echo), "ms", ms),
            ("echo, websocket", m.summary(term.ws_echo), "ms", ms),
            (f"echo, {args.terms} terminals typing", m.summary(many.echo), "ms", ms),
        ]
    r["duration_s"] = time.monotonic() - started
    r["targets_met"] = report.verdicts(r)
    report.write_json(out_json, r)
    report.write_markdown(out_md, r, {"tables": tables})
    say(f"wrote {out_md} and {out_json}")
    for key, met in r["targets_met"].items():
        print(f"    {'met   ' if met else 'MISSED'} {key} = {r[key]:.3f}")
    return 0


def _end_sessions(server: harness.Server, session_ids: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(server.end_session, session_ids))


if __name__ == "__main__":
    sys.exit(main())
