"""Benchmark: Postfix with its own reject_unknown_* checks vs Postfix asking rdnsgate's policy service.

In a network namespace of its own (Postfix resolves through resolv.conf):
knotd on 127.0.0.1:53, smtp-sink, ``rdnsgate serve policy`` (profile
postfix), a null policy server (answers ``DUNNO`` at once: the cost of the
policy round trip itself, written here) and three throw-away Postfix
instances: one with the built-in checks, one with ``check_policy_service``
-> rdnsgate and its own checks off, one asking the null server.

Placement, so that runs can be compared: the servers (Postfix, knotd, the
policy services) share CPU 0, the load (``smtp-source``) and the sink CPU 1.
``smtp-source -s 20 -l 1024`` (one connection per message) drives the three
in rounds, the order rotating each round, after a warm-up; the median of the
rounds counts, with the lowest and highest beside it.  Then a load process
(on CPU 1) sends policy requests to the service (CPU 0) over 32 keep-alive
connections and counts requests per second.  Results go to BENCHMARKS.md
between the policy markers.

    make bench-policy            # as root
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Quiet,
    busy_share,
    cpu_times,
    in_memory,
    need_root,
    process_cpu,
    run_in_netns,
    wait_until_quiet,
    write_section,
)
from bench.gateway_vs_postfix import smtp_source, zones  # noqa: E402
from tests.harness.knot import KnotServer  # noqa: E402
from tests.harness.postfix import PostfixInstance  # noqa: E402
from tests.harness.smtp import wait_port  # noqa: E402

MARK = "policy-benchmark"
ENDPOINT = "inet:127.0.0.1:10040"
NULL_ENDPOINT = "check_policy_service inet:127.0.0.1:10041"
SINK, POLICY, NULL, BUILTIN, DELEGATED, TO_NULL = 2600, 10040, 10041, 2601, 2602, 2603
SERVERS, LOAD = "0", "1"  # CPUs
CHECKS = (
    "reject_unknown_reverse_client_hostname, reject_unknown_client_hostname, reject_invalid_helo_hostname, "
    "reject_non_fqdn_helo_hostname, reject_unknown_helo_hostname, reject_non_fqdn_sender, "
    "reject_unknown_sender_domain, reject_unauth_destination"
)


def request(instance: int, rcpt: int) -> bytes:
    return (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=127.0.0.1\n"
        "client_name=client.bench.example\nhelo_name=client.bench.example\nsender=sender@bench.example\n"
        f"recipient=r{rcpt}@bench.example\ninstance=bench.{instance}\n\n"
    ).encode()


async def load(port: int, seconds: float, connections: int, per_session: int = 10) -> float:
    """Requests per second over `connections` keep-alive connections, one request outstanding each.

    Every `per_session` requests start a new Postfix session (a new ``instance``).
    """
    stop = time.perf_counter() + seconds
    counts = [0] * connections

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = index * 1_000_000
        while time.perf_counter() < stop:
            writer.write(request(session + counts[index] // per_session, counts[index] % per_session))
            answer = await reader.readuntil(b"\n\n")
            if not answer.startswith(b"action=DUNNO"):
                raise SystemExit(f"unexpected answer {answer!r}")
            counts[index] += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(connections)))
    return sum(counts) / (time.perf_counter() - start)


async def null_server(port: int) -> None:
    """A policy server that answers DUNNO to every request at once: the round trip and nothing else."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\n\n")
                writer.write(b"action=DUNNO\n\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command]


def inside(args: argparse.Namespace) -> None:
    if args.load:
        import uvloop

        print(uvloop.run(load(POLICY, args.seconds, 32, args.per_session)))
        return
    if args.null:
        import uvloop

        uvloop.run(null_server(NULL))
        return
    quiet = wait_until_quiet(args.wait)
    with in_memory("rdnsgate-bench-policy-") as work:
        knot = KnotServer(work / "knot", zones(), address="127.0.0.1", port=53).start()
        assert knot.proc is not None
        subprocess.run(["taskset", "-a", "-p", "-c", SERVERS, str(knot.proc.pid)], check=True, capture_output=True)
        sink = subprocess.Popen(
            pinned(LOAD, ["smtp-sink", "-u", "nobody", f"127.0.0.1:{SINK}", "1000"]), stdout=subprocess.DEVNULL
        )
        config = work / "rdnsgate.toml"
        config.write_text(
            '[dns]\nnameservers = ["127.0.0.1:53"]\ncanaries = ["client.bench.example"]\n'
            f'[policy]\nlisten = ["127.0.0.1:{POLICY}"]\nprofile = "postfix"\n'
            f'[storage]\nurl = "sqlite:///{work / "rdnsgate.db"}"\n'
        )
        service = subprocess.Popen(
            pinned(
                SERVERS, [sys.executable, "-m", "rdnsgate", "serve", "policy", "--allow-root", "--config", str(config)]
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "policy.log", "wb"),  # noqa: SIM115 - the child's; closed when it exits
        )
        null = subprocess.Popen(pinned(SERVERS, [sys.executable, __file__, "--inside", "--null"]))
        common = {"relayhost": f"[127.0.0.1]:{SINK}", "relay_domains": "bench.example", "smtpd_helo_required": "yes"}
        builtin = PostfixInstance(work / "pf-builtin", BUILTIN, {**common, "smtpd_recipient_restrictions": CHECKS})
        delegated = PostfixInstance(
            work / "pf-policy",
            DELEGATED,
            {**common, "smtpd_recipient_restrictions": f"reject_unauth_destination, check_policy_service {ENDPOINT}"},
        )
        to_null = PostfixInstance(
            work / "pf-null",
            TO_NULL,
            {**common, "smtpd_recipient_restrictions": f"reject_unauth_destination, {NULL_ENDPOINT}"},
        )
        sides = {"builtin": (builtin, BUILTIN), "rdnsgate": (delegated, DELEGATED), "null": (to_null, TO_NULL)}
        try:
            wait_port("127.0.0.1", SINK)
            wait_port("127.0.0.1", POLICY, timeout=20)
            wait_port("127.0.0.1", NULL, timeout=20)
            for instance, port in sides.values():
                instance.start(cpus=SERVERS)
                wait_port("127.0.0.1", port)
                smtp_source(port, 300, cpus=LOAD)  # warm-up: caches, processes, connections
            rates: dict[str, list[float]] = {name: [] for name in sides}
            busy: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            servers = {"rdnsgate": service.pid, "null": null.pid}  # their CPU time per message
            per_message: dict[str, list[float]] = {name: [] for name in servers}
            order = list(sides)
            for instance, _port in sides.values():
                instance.wait_delivered()
            for _ in range(args.runs):
                for name in order:
                    before, used = cpu_times(), {side: process_cpu(pid) for side, pid in servers.items()}
                    rates[name].append(smtp_source(sides[name][1], args.messages, cpus=LOAD))
                    after = cpu_times()
                    if name in servers:
                        per_message[name].append((process_cpu(servers[name]) - used[name]) / args.messages)
                    busy[name].append((busy_share(before, after, SERVERS), busy_share(before, after, LOAD)))
                    # smtp-source counts a message once it is queued: let it be delivered before the next run,
                    # or that delivery competes with the next run (the swing of earlier versions of this benchmark)
                    sides[name][0].wait_delivered()
                order = order[1:] + order[:1]  # no side always first (or always after the same one)
            for instance, _port in sides.values():
                if "reject:" in instance.log():
                    raise SystemExit(f"refusals during the benchmark in {instance.workdir}")
            # The service alone: it is on CPU 0 already, the load generator goes on CPU 1.
            requests = {}
            for per_session in (10**9, 10, 1):
                loader = subprocess.run(
                    [
                        "taskset",
                        "-c",
                        LOAD,
                        sys.executable,
                        __file__,
                        "--inside",
                        "--load",
                        "--seconds",
                        str(args.seconds),
                        "--per-session",
                        str(per_session),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                if loader.returncode != 0:
                    raise SystemExit(f"load generator failed: {loader.stderr[-2000:]}")
                requests[per_session] = float(loader.stdout.strip().splitlines()[-1])
        finally:
            for instance, _port in sides.values():
                instance.stop()
            service.terminate()
            service.wait(20)
            null.terminate()
            null.wait(20)
            sink.terminate()
            sink.wait(10)
            knot.stop()
    section = table(rates, busy, per_message, requests, args, quiet)
    print(section)
    print("every run, msgs/s:", {name: [round(rate) for rate in values] for name, values in rates.items()})
    if not args.no_write:
        write_section(MARK, "Policy service: Postfix with and without rdnsgate", section)


def cpus(shares: list[tuple[float, float]]) -> str:
    """The median share of the time each CPU was busy during a side's runs, as two table cells."""
    return " | ".join(f"{statistics.median(share[cpu] for share in shares):.0%}" for cpu in (0, 1))


def micros(values: list[float]) -> str:
    """Median (lowest–highest) of seconds, in µs."""
    return f"{statistics.median(values) * 1e6:.0f} µs ({min(values) * 1e6:.0f}–{max(values) * 1e6:.0f})"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def servers_per_message(rates: list[float], shares: list[tuple[float, float]]) -> list[float]:
    """CPU 0's busy time per message, round by round, in seconds: what a side costs the servers' core."""
    return [share[0] / rate for rate, share in zip(rates, shares, strict=True)]


def table(
    rates: dict[str, list[float]],
    busy: dict[str, list[tuple[float, float]]],
    per_message: dict[str, list[float]],
    requests: dict[int, float],
    args: argparse.Namespace,
    quiet: Quiet,
) -> str:
    ours_theirs = [o / t for o, t in zip(rates["rdnsgate"], rates["builtin"], strict=True)]
    ours_null = [o / n for o, n in zip(rates["rdnsgate"], rates["null"], strict=True)]
    null_theirs = [n / t for n, t in zip(rates["null"], rates["builtin"], strict=True)]
    core = {name: servers_per_message(rates[name], busy[name]) for name in rates}
    own = statistics.median(per_message["rdnsgate"]) - statistics.median(per_message["null"])

    def ratios(values: list[float]) -> str:
        return f"**{statistics.median(values):.2f}×** ({', '.join(f'{value:.2f}' for value in values)})"

    return "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores with `make bench-policy` "
            f"({quiet.words()}): "
            f"`smtp-source -s 20 -m {args.messages} -l 1024`, one connection per message, next hop `smtp-sink`; "
            f"{args.runs} rounds of the three Postfix instances, the order rotating, after a warm-up. "
            "Servers (Postfix, knotd, policy services) on CPU 0, load and sink on CPU 1. "
            "Median (lowest–highest) msgs/s:",
            "",
            "| Postfix 3.7 | msgs/s | CPU 0 (servers) busy | CPU 1 (load) busy | CPU 0 per message |",
            "|---|---:|---:|---:|---:|",
            f"| with its own `reject_unknown_*` checks | {spread(rates['builtin'])} | {cpus(busy['builtin'])} "
            f"| {micros(core['builtin'])} |",
            "| with `check_policy_service` → rdnsgate (profile postfix), own checks off "
            f"| {spread(rates['rdnsgate'])} | {cpus(busy['rdnsgate'])} "
            f"| {micros(core['rdnsgate'])} |",
            "| with `check_policy_service` → a null server (`DUNNO` at once) "
            f"| {spread(rates['null'])} | {cpus(busy['null'])} | {micros(core['null'])} |",
            "",
            "CPU time of the policy server itself per message (user + system, all its threads, from /proc): "
            f"rdnsgate {micros(per_message['rdnsgate'])}, the null server {micros(per_message['null'])}. "
            f"rdnsgate's own CPU beyond the null server's is {own * 1e6:.0f} µs a message, "
            f"{own / statistics.median(core['builtin']):.1%} of CPU 0's time per message with Postfix's "
            "own checks "
            "(the cost the service itself adds to the servers' core, without its effect on the others).",
            "",
            "| ratio, round by round | median (each round) |",
            "|---|---|",
            f"| with rdnsgate / with its own checks | {ratios(ours_theirs)} |",
            f"| with rdnsgate / with the null server | {ratios(ours_null)} |",
            f"| with the null server / with its own checks | {ratios(null_theirs)} |",
            "",
            "The policy service alone on CPU 0, 32 keep-alive connections with one request outstanding on each "
            f"(the load generator on CPU 1), {args.seconds:.0f} s each:",
            "",
            "| requests | requests/s |",
            "|---|---:|",
            f"| within evaluated sessions (protocol, cache, reply) | **{requests[10**9]:,.0f}** |",
            f"| a new Postfix session every 10 requests | {requests[10]:,.0f} |",
            f"| a new Postfix session every request (report shared, decision record each) | {requests[1]:,.0f} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a quiet machine at most")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--null", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--per-session", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return
    need_root("the benchmark makes a network namespace and starts Postfix")
    forwarded = ["--runs", str(args.runs), "--messages", str(args.messages), "--seconds", str(args.seconds)]
    forwarded += ["--wait", str(args.wait)]
    run_in_netns("rdnsgate-bench-policy", __file__, forwarded + (["--no-write"] if args.no_write else []))


if __name__ == "__main__":
    main()
