"""The policy service's own work per request, in one process and without sockets.

The service's answer to the benchmark's requests (bench/policy_vs_postfix.py:
client 127.0.0.1 named client.bench.example, profile postfix, a SQLite
store), asked by calling `PolicyService.answer` on parsed requests the way a
connection does, against one knotd on a free loopback port: once within one
Postfix session (the same ``instance``), once with a new session every
request (the report shared, a decision record and its log line each, the log
to /dev/null).  Set against the live figures of `make bench-policy` (the same
requests over 32 connections), the difference is what the socket round trip
costs.  The records stay queued while a run lasts (the queue holds them all)
and are written between runs: the store's writes are not in these figures
(BENCHMARKS.md, "Decision log", has them).

    .venv/bin/python bench/policy_inproc.py [--requests 30000] [--runs 3] [--profile]

``--profile`` prints cProfile's busiest functions of the last run of new
sessions (its timings then include cProfile's own cost).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_vs_postfix import zones  # noqa: E402
from bench.policy_vs_postfix import request  # noqa: E402
from tests.harness.knot import KnotServer, free_port  # noqa: E402


async def measure(
    work: Path, port: int, count: int, runs: int, profile: cProfile.Profile | None = None
) -> dict[str, list[float]]:
    from rdnsgate.config import load_settings
    from rdnsgate.frontends.policy_server import PolicyRunner, RequestParser
    from rdnsgate.runtime import Runtime

    config = work / "rdnsgate.toml"
    config.write_text(
        f'[dns]\nnameservers = ["127.0.0.1:{port}"]\n[policy]\nprofile = "postfix"\n'
        f'[storage]\nurl = "sqlite:///{work / "rdnsgate.db"}"\ndecision_queue = {2 * (count + 100)}\n'
    )
    runtime = await Runtime.open(load_settings(config))
    service = PolicyRunner(runtime).service
    parser = RequestParser()
    results: dict[str, list[float]] = {}
    try:
        for run in range(runs):
            for name, per_session in (("within one session", 10**9), ("a new session every request", 1)):
                wires = [request(index // per_session, index % per_session) for index in range(count + 100)]
                for wire in wires[:100]:  # warm-up: the report, the memos
                    for item in parser.feed(wire):
                        await service.answer(item)
                profiled = profile if per_session == 1 and run == runs - 1 else None
                if profiled is not None:
                    profiled.enable()
                began = time.perf_counter()
                for wire in wires[100:]:
                    for item in parser.feed(wire):
                        answer = await service.answer(item)
                        if answer != "DUNNO":
                            raise SystemExit(f"unexpected answer {answer!r}")
                results.setdefault(name, []).append((time.perf_counter() - began) / count * 1e6)
                if profiled is not None:
                    profiled.disable()
                while runtime.decisions.backlog:  # the queued records are written before the next run
                    await asyncio.sleep(0.1)
                if runtime.decisions.dropped:
                    raise SystemExit(f"{runtime.decisions.dropped} decision records dropped")
    finally:
        await runtime.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the last run of new sessions")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    import uvloop

    from rdnsgate.logs import configure_logging

    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115 - the log lines go nowhere
    configure_logging()  # the handler keeps the stream it was made with
    sys.stderr = stderr
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rdnsgate-policy-inproc-") as tmp:
        port = free_port("127.0.0.1")
        with KnotServer(Path(tmp) / "knot", zones(), address="127.0.0.1", port=port):
            results = uvloop.run(measure(Path(tmp), port, args.requests, args.runs, profile))
    print(f"{args.requests:,} requests a run, in process; load average {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")  # fmt: skip
    print("| requests | µs per request (each run) | requests/s, best run |")
    print("|---|---|---:|")
    for name, micros in results.items():
        each = ", ".join(f"{value:.1f}" for value in micros)
        print(f"| {name} | {each} | {1e6 / min(micros):,.0f} |")
    if profile is not None:
        stats = pstats.Stats(profile)
        calls = stats.total_calls / args.requests
        print(f"\ncProfile, the last run of new sessions: {calls:.0f} function calls a request (Python and C)")
        stats.sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
