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
in rounds, the order rotating each round, after a warm-up.  A run lasts until
the last message has left Postfix's queue (the script, on CPU 1, looks at the
queue files every 5 ms), so every run counts all the work of its messages.
The two runs of a round ran seconds apart, so their ratio is taken round by
round; the mean of those ratios counts, with its 95% confidence interval
and the median beside it.  Rounds go on (at least ``--runs``) until the
interval of rdnsgate / own checks is ± 0.025 or narrower, so that the run
tells 5%, or until ``--limit`` minutes have passed; the table says which.
Then a load process (on CPU 1) sends policy requests to the service (CPU 0)
over 32 keep-alive connections and counts requests per second.  Results go to BENCHMARKS.md
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
from dataclasses import dataclass
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
    os.sched_setaffinity(0, {int(LOAD)})  # this script watches the queues from the load's CPU
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
            rounds: dict[str, list[Round]] = {name: [] for name in sides}
            servers = {"rdnsgate": service.pid, "null": null.pid}  # their CPU time per message
            order = list(sides)
            for instance, _port in sides.values():
                instance.wait_emptied()
            deadline = time.monotonic() + args.limit * 60
            while True:
                for name in order:
                    rounds[name].append(one_round(*sides[name], args.messages, servers.get(name)))
                order = order[1:] + order[:1]  # no side always first (or always after the same one)
                mean, half = interval(paired(rounds, "rdnsgate", "builtin"))
                done = len(rounds["builtin"])
                print(f"round {done}: rdnsgate / own checks {mean:.3f}× ± {half:.3f}", flush=True)
                if done >= args.runs and (half <= args.precision or time.monotonic() > deadline):
                    break
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
    section = table(rounds, requests, args, quiet)
    print(section)
    print("every run, msgs/s:", {name: [round(each.rate) for each in values] for name, values in rounds.items()})
    if not args.no_write:
        write_section(MARK, "Policy service: Postfix with and without rdnsgate", section)


@dataclass(frozen=True)
class Round:
    """One side's run of `messages`: from smtp-source's start until the last message has left the queue."""

    rate: float  # msgs/s end to end: received, queued and delivered to the sink
    received: float  # msgs/s while smtp-source ran (until the last message was queued)
    backlog: int  # messages still queued when smtp-source ended
    busy: tuple[float, float]  # the share of the time CPU 0 and CPU 1 were busy
    server: float | None  # the policy server's own CPU seconds per message (None: no policy server)

    @property
    def core(self) -> float:
        """CPU 0's busy seconds per message: what a message costs the servers' core."""
        return self.busy[0] / self.rate


def one_round(instance: PostfixInstance, port: int, messages: int, server: int | None) -> Round:
    """smtp-source's `messages` into `instance`, timed until its queue is empty again.

    A message counts once delivered, not once queued: smtp-source ends with part of its messages still in
    the queue (a tenth to two thirds in the runs measured), and how many differs from round to round (part of
    the swing of the earlier figures)."""
    before, used = cpu_times(), process_cpu(server) if server else 0.0
    start = time.perf_counter()
    received = smtp_source(port, messages, cpus=LOAD)
    backlog = instance.queued()
    instance.wait_emptied()
    elapsed = time.perf_counter() - start
    after = cpu_times()
    return Round(
        rate=messages / elapsed,
        received=received,
        backlog=backlog,
        busy=(busy_share(before, after, SERVERS), busy_share(before, after, LOAD)),
        server=(process_cpu(server) - used) / messages if server else None,
    )


T975: tuple[float, ...] = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14)
T975 += (2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04)  # df 1..30


def interval(values: list[float]) -> tuple[float, float]:
    """The mean of `values` and the half-width of its 95% confidence interval (Student's t)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("inf")
    df = len(values) - 1
    return mean, (T975[df - 1] if df <= len(T975) else 1.96) * statistics.stdev(values) / len(values) ** 0.5


def micros(values: list[float]) -> str:
    """Median (lowest–highest) of seconds, in µs."""
    return f"{statistics.median(values) * 1e6:.0f} µs ({min(values) * 1e6:.0f}–{max(values) * 1e6:.0f})"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def paired(rounds: dict[str, list[Round]], ours: str, theirs: str) -> list[float]:
    """The ratio of two sides' rates, round by round (each pair ran within one round, seconds apart)."""
    return [o.rate / t.rate for o, t in zip(rounds[ours], rounds[theirs], strict=True)]


def verdict(values: list[float]) -> str:
    """A table row's cells: the mean ratio with its 95% interval, the median, every round."""
    mean, half = interval(values)
    return (
        f"**{mean:.3f}×** ± {half:.3f} | {statistics.median(values):.2f}× "
        f"| {', '.join(f'{value:.2f}' for value in values)}"
    )


def table(rounds: dict[str, list[Round]], requests: dict[int, float], args: argparse.Namespace, quiet: Quiet) -> str:
    def row(name: str, label: str) -> str:
        these = rounds[name]
        return (
            f"| {label} | {spread([each.rate for each in these])} | {spread([each.received for each in these])} "
            f"| {statistics.median(each.backlog for each in these):,.0f} "
            f"| {statistics.median(each.busy[0] for each in these):.0%} "
            f"| {statistics.median(each.busy[1] for each in these):.0%} | {micros([each.core for each in these])} |"
        )

    served = {name: [each.server for each in rounds[name] if each.server is not None] for name in ("rdnsgate", "null")}
    own = statistics.median(served["rdnsgate"]) - statistics.median(served["null"])
    halves = [interval(paired(rounds, *pair))[1] for pair in (("rdnsgate", "builtin"), ("rdnsgate", "null"))]
    return "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores with `make bench-policy` "
            f"({quiet.words()}): "
            f"`smtp-source -s 20 -m {args.messages} -l 1024`, one connection per message, next hop `smtp-sink`; "
            f"{len(rounds['builtin'])} rounds of the three Postfix instances, the order rotating, after a warm-up "
            f"(at least {args.runs}, then until rdnsgate / own checks was known to ± {args.precision} "
            f"or {args.limit:.0f} minutes had passed). "
            "A run lasts from smtp-source's start until the last message has left Postfix's queue. "
            "Servers (Postfix, knotd, policy services) on CPU 0, load and sink on CPU 1. "
            "Median (lowest–highest) of the rounds:",
            "",
            "| Postfix 3.7 | msgs/s, end to end | msgs/s while smtp-source ran | still queued then "
            "| CPU 0 (servers) busy | CPU 1 (load) busy | CPU 0 per message |",
            "|---|---:|---:|---:|---:|---:|---:|",
            row("builtin", "with its own `reject_unknown_*` checks"),
            row("rdnsgate", "with `check_policy_service` → rdnsgate (profile postfix), own checks off"),
            row("null", "with `check_policy_service` → a null server (`DUNNO` at once)"),
            "",
            "CPU time of the policy server itself per message (user + system, all its threads, from /proc): "
            f"rdnsgate {micros(served['rdnsgate'])}, the null server {micros(served['null'])}. "
            f"rdnsgate's own CPU beyond the null server's is {own * 1e6:.0f} µs a message, "
            f"{own / statistics.median(each.core for each in rounds['builtin']):.1%} of CPU 0's time per message "
            "with Postfix's own checks (the cost the service itself adds to the servers' core, without its effect "
            "on the others).",
            "",
            "| msgs/s end to end, ratio of the two runs in each round | mean ± 95% interval | median | each round |",
            "|---|---|---|---|",
            f"| with rdnsgate / with its own checks | {verdict(paired(rounds, 'rdnsgate', 'builtin'))} |",
            f"| with rdnsgate / with the null server | {verdict(paired(rounds, 'rdnsgate', 'null'))} |",
            f"| with the null server / with its own checks | {verdict(paired(rounds, 'null', 'builtin'))} |",
            "",
            f"This run tells 5% against Postfix's own checks: {'yes' if halves[0] <= args.precision else 'no'} "
            f"(its interval is ± {halves[0]:.3f}; telling 5% takes ± 0.025 at most); the interval against the "
            f"null server is ± {halves[1]:.3f}.",
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
    parser.add_argument("--runs", type=int, default=10, help="rounds at least (default 10)")
    parser.add_argument(
        "--precision",
        type=float,
        default=0.025,
        help="go on until the 95%% interval of rdnsgate / own checks is this narrow (default ± 0.025: it tells 5%%)",
    )
    parser.add_argument("--limit", type=float, default=15.0, help="minutes of rounds at most (default 15)")
    parser.add_argument("--messages", type=int, default=1500)
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
    forwarded += ["--precision", str(args.precision), "--limit", str(args.limit)]
    forwarded += ["--wait", str(args.wait)]
    run_in_netns("rdnsgate-bench-policy", __file__, forwarded + (["--no-write"] if args.no_write else []))


if __name__ == "__main__":
    main()
