"""PWD's session websocket against the native terminal websocket, same node, same run:
keystroke echo latency and output throughput.

    .venv/bin/python bench/compat.py                      # 200 echoes, 3 x 16 MiB each way
    .venv/bin/python bench/compat.py --echoes 60 --mib 4 --rounds 2   # quicker
    .venv/bin/python bench/compat.py --out /tmp/c         # write compat.json and the section there

One server without a pool, one session, one node. Each round drives the native terminal
(acknowledging its output, as the session page does), the native terminal without
acknowledgements, and then a PWD socket (which never acknowledges: the SDK does not)
with the same commands. The section between the
``compat`` markers in docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench import terminal as terms  # noqa: E402
from bench.profiles import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- compat:begin -->", "<!-- compat:end -->"


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


class CompatTerminal:
    """One instance's terminal over PWD's session websocket (the SDK's frames)."""

    def __init__(self, ws: websockets.ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name

    @classmethod
    async def open(cls, url: str, name: str) -> CompatTerminal:
        ws = await websockets.connect(
            url, max_size=None, compression=None, ping_interval=None, open_timeout=60
        )
        return cls(ws, name)

    async def send(self, data: str) -> None:
        await self.ws.send(json.dumps({"name": "instance terminal in", "args": [self.name, data]}))

    async def recv(self) -> bytes:
        while True:
            message = json.loads(await self.ws.recv())
            args = message.get("args") or []
            if message.get("name") == "instance terminal out" and args[0] == self.name:
                return args[1].encode()

    async def close(self) -> None:
        await self.ws.close()


async def _round(
    native_url: str, compat_url: str, echoes: int, mib: int
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in ("native", "native_no_acks", "compat"):
        if kind != "compat":
            term: terms.Terminal = await terms.WebsocketTerminal.open(
                native_url, acks=kind == "native"
            )
        else:
            term = await CompatTerminal.open(compat_url, "node1")
        try:
            await terms.ready_shell(term)
            echo = await terms.echo_latencies(term, echoes)
            total, seconds = await terms.throughput(term, mib)
        finally:
            await term.close()
        out[kind] = {"echo_ms": [e * 1000 for e in echo], "mib_s": total / seconds / 2**20}
    return out


def measure(environment: harness.Environment, args: argparse.Namespace) -> dict[str, Any]:
    server = harness.Server(environment, pool_size=0, prepare=False).start()
    try:
        session = server.create_session()
        status, node = server.add_node(session["id"])
        if status != 201:
            raise RuntimeError(f"add node gave {status}: {node}")
        native_url = server.terminal_url(node)
        compat_url = f"{server.ws_base}/sessions/{session['id']}/ws/"
        rounds = []
        for index in range(args.rounds):
            say(f"round {index + 1}/{args.rounds}: {args.echoes} echoes, {args.mib} MiB each way")
            rounds.append(asyncio.run(_round(native_url, compat_url, args.echoes, args.mib)))
        server.end_session(session["id"])
    finally:
        server.stop()
    median = statistics.median

    def echoes(kind: str) -> list[float]:
        return [e for r in rounds for e in r[kind]["echo_ms"]]

    native_mib = median(r["native"]["mib_s"] for r in rounds)
    no_acks_mib = median(r["native_no_acks"]["mib_s"] for r in rounds)
    compat_mib = median(r["compat"]["mib_s"] for r in rounds)
    return {
        "echo_native_p50_ms": median(echoes("native")),
        "echo_compat_p50_ms": median(echoes("compat")),
        "echo_added_ms": median(echoes("compat")) - median(echoes("native")),
        "throughput_native_mib_s": native_mib,
        "throughput_compat_mib_s": compat_mib,
        "throughput_ratio": compat_mib / native_mib,
        "throughput_native_no_acks_mib_s": no_acks_mib,
        "throughput_ratio_no_acks": compat_mib / no_acks_mib,
        "rounds": rounds,
        "args": vars(args) | {"out": str(args.out) if args.out else None},
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": list(harness.os.getloadavg()),
        "machine": platform.platform(),
    }


def section(result: dict[str, Any], command: str) -> str:
    ok = lambda good: "met" if good else "**not met**"  # noqa: E731
    load = ", ".join(f"{value:.1f}" for value in result["load"])
    return "\n".join(
        [
            BEGIN,
            "## Play with Docker websocket against the native terminal",
            "",
            f"`{command}`, {result['when']}, load average {load} (a shared 2-core machine "
            "with other engineers' tests running: absolute numbers are noisy, the ratio is "
            "the figure). Same node, same run, native first in each round; the native "
            "client acknowledges as the page does, the PWD client never does (as the SDK).",
            "",
            "| | native | PWD socket | | target |",
            "|---|---|---|---|---|",
            f"| echo p50 | {result['echo_native_p50_ms']:.2f} ms | "
            f"{result['echo_compat_p50_ms']:.2f} ms | +{result['echo_added_ms']:.2f} ms | "
            f"<= +2 ms: {ok(result['echo_added_ms'] <= 2)} |",
            f"| throughput (median of rounds) | {result['throughput_native_mib_s']:.2f} MiB/s | "
            f"{result['throughput_compat_mib_s']:.2f} MiB/s | {result['throughput_ratio']:.2f}x "
            f"| >= 0.7x: {ok(result['throughput_ratio'] >= 0.7)} |",
            f"| throughput against a native client that does not acknowledge either | "
            f"{result['throughput_native_no_acks_mib_s']:.2f} MiB/s | "
            f"{result['throughput_compat_mib_s']:.2f} MiB/s | "
            f"{result['throughput_ratio_no_acks']:.2f}x | |",
            "",
            "A client that never acknowledges is paced by the hub's read rate "
            "(`HUB_READ_RATE`, 1 MiB/s, terminals/hub.py): nothing else bounds what daphne "
            "buffers for it. The SDK has no acknowledgement, so a PWD socket gets that rate; "
            "against a native client under the same rule the PWD framing (JSON, 1 KiB "
            "pieces) is the difference.",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--echoes", type=int, default=200)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write compat.json and the section here")
    args = parser.parse_args(argv)
    environment = harness.Environment()
    try:
        result = measure(environment, args)
    finally:
        say("removing everything the bench created")
        environment.cleanup()
    command = "python bench/compat.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    text = section(result, command)
    print(text)
    out = args.out or ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compat.json").write_text(json.dumps(result, indent=2) + "\n")
    target = (args.out / "benchmarks.md") if args.out else ROOT / "docs" / "benchmarks.md"
    write_section(text, target, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
