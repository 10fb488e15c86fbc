"""Benchmark: Postfix with its own reject_unknown_* checks vs Postfix asking rdnsgate's policy service.

In a network namespace of its own (Postfix resolves through resolv.conf):
knotd on 127.0.0.1:53, smtp-sink, ``rdnsgate serve policy`` (profile
postfix) pinned to one core, and two throw-away Postfix instances — one with
the built-in checks, one with ``check_policy_service`` and its own checks off.
``smtp-source -s 20 -l 1024`` (one connection per message) drives both,
alternating, best of the runs; then a load process (on the other core) sends
policy requests over 32 keep-alive connections, ten RCPTs per Postfix session
as Postfix would, and counts requests per second.  Results go to
BENCHMARKS.md between the policy markers.

    make bench-policy            # as root
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import need_root, run_in_netns, write_section  # noqa: E402
from bench.gateway_vs_postfix import smtp_source, zones  # noqa: E402
from tests.harness.knot import KnotServer  # noqa: E402
from tests.harness.postfix import PostfixInstance  # noqa: E402
from tests.harness.smtp import wait_port  # noqa: E402

MARK = "policy-benchmark"
ENDPOINT = "inet:127.0.0.1:10040"
SINK, POLICY, BUILTIN, DELEGATED = 2600, 10040, 2601, 2602
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


def inside(args: argparse.Namespace) -> None:
    if args.load:
        import uvloop

        print(uvloop.run(load(POLICY, args.seconds, 32, args.per_session)))
        return
    with tempfile.TemporaryDirectory(prefix="rdnsgate-bench-policy-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        knot = KnotServer(work / "knot", zones(), address="127.0.0.1", port=53).start()
        sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{SINK}", "1000"], stdout=subprocess.DEVNULL)
        config = work / "rdnsgate.toml"
        config.write_text(
            f'[dns]\nnameservers = ["127.0.0.1:53"]\n[policy]\nlisten = ["127.0.0.1:{POLICY}"]\nprofile = "postfix"\n'
            f'[storage]\nurl = "sqlite:///{work / "rdnsgate.db"}"\n'
        )
        service = subprocess.Popen(
            [sys.executable, "-m", "rdnsgate", "serve", "policy", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        common = {"relayhost": f"[127.0.0.1]:{SINK}", "relay_domains": "bench.example", "smtpd_helo_required": "yes"}
        builtin = PostfixInstance(work / "pf-builtin", BUILTIN, {**common, "smtpd_recipient_restrictions": CHECKS})
        delegated = PostfixInstance(
            work / "pf-policy",
            DELEGATED,
            {**common, "smtpd_recipient_restrictions": f"reject_unauth_destination, check_policy_service {ENDPOINT}"},
        )
        try:
            wait_port("127.0.0.1", SINK)
            wait_port("127.0.0.1", POLICY, timeout=20)
            builtin.start()
            delegated.start()
            wait_port("127.0.0.1", BUILTIN)
            wait_port("127.0.0.1", DELEGATED)
            smtp_source(BUILTIN, 200)
            smtp_source(DELEGATED, 200)
            theirs, ours = [], []
            for _ in range(args.runs):
                theirs.append(smtp_source(BUILTIN, args.messages))
                ours.append(smtp_source(DELEGATED, args.messages))
            for instance in (builtin, delegated):
                if "reject:" in instance.log():
                    raise SystemExit(f"refusals during the benchmark in {instance.workdir}")
            # "On one core": the service (all its threads) on CPU 0, the load generator on CPU 1.
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(service.pid)], check=True, capture_output=True)
            rates = {}
            for per_session in (10**9, 10):
                loader = subprocess.run(
                    [
                        "taskset",
                        "-c",
                        "1",
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
                rates[per_session] = float(loader.stdout.strip().splitlines()[-1])
        finally:
            builtin.stop()
            delegated.stop()
            service.terminate()
            service.wait(20)
            sink.terminate()
            sink.wait(10)
            knot.stop()
    best_theirs, best_ours = max(theirs), max(ours)
    section = "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores with `make bench-policy`: "
            f"`smtp-source -s 20 -m {args.messages} -l 1024`, one connection per message, best of {args.runs} "
            "alternating runs after a warm-up, next hop `smtp-sink` for both.",
            "",
            "| Postfix 3.7 | msgs/s |",
            "|---|---:|",
            f"| with its own `reject_unknown_*` checks | {best_theirs:,.0f} |",
            f"| with `check_policy_service` → rdnsgate (profile postfix), own checks off | {best_ours:,.0f} |",
            f"| **throughput with rdnsgate / without** | **{best_ours / best_theirs:.2f}×** |",
            "",
            "The policy service alone, pinned to one core, 32 keep-alive connections with one request outstanding "
            f"on each (the load generator on the other core), {args.seconds:.0f} s each:",
            "",
            "| requests | requests/s |",
            "|---|---:|",
            f"| within evaluated sessions (protocol, cache, reply) | **{rates[10**9]:,.0f}** |",
            f"| a new Postfix session every 10 requests (evaluation + decision record each) | {rates[10]:,.0f} |",
        ]
    )
    print(section)
    if not args.no_write:
        write_section(MARK, "Policy service: Postfix with and without rdnsgate", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--per-session", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return
    need_root("the benchmark makes a network namespace and starts Postfix")
    forwarded = ["--runs", str(args.runs), "--messages", str(args.messages), "--seconds", str(args.seconds)]
    run_in_netns("rdnsgate-bench-policy", __file__, forwarded + (["--no-write"] if args.no_write else []))


if __name__ == "__main__":
    main()
