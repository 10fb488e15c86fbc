"""``make run``: ``rdnsgate serve`` (gateway, web app, monitor), resolving through a demo DNS server on loopback.

Starts knotd on 127.0.0.1:5300 (another free port if that one is taken) with
the example zones of the test suite — RFC 5737/3849 addresses, RFC 2606
names, and loopback clients 127.0.10.x: .1 well configured, .2 without PTR,
.3 with a PTR that does not lead back — watches two of them in the fleet,
then runs ``rdnsgate serve`` with the embedded defaults (Maildir and SQLite
under ./var/): the gateway on 127.0.0.1:2525 accepting mail for example.net,
the web app on http://127.0.0.1:8080, the monitor; until Ctrl-C.  No other
DNS server is asked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.data.zones import zones  # noqa: E402
from tests.harness.knot import KnotServer, free_port  # noqa: E402

DNS_PORT = 5300
LISTEN = "127.0.0.1:2525"
WEB = "127.0.0.1:8080"
FLEET = (("127.0.10.1", "good1.example.org", "demo-good"), ("127.0.10.3", "mismatch3.example.org", "demo-mismatch"))


def _port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", DNS_PORT))
        except OSError:
            return free_port()
    return DNS_PORT


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="rdnsgate-demo-dns-") as tmp,
        KnotServer(Path(tmp), zones(), port=_port()) as knot,
    ):
        rdnsgate = [sys.executable, "-m", "rdnsgate"]
        for ip, helo, label in FLEET:
            subprocess.run([*rdnsgate, "fleet", "add", ip, "--helo", helo, "--label", label], check=True)
        print(
            f"demo DNS (knotd, example zones) on {knot.nameserver}\n"
            f"gateway on {LISTEN}, mail for example.net into ./var/mail/new; web app on http://{WEB}/\n"
            "try, in another terminal:\n"
            f"  swaks --server {LISTEN} --local-interface 127.0.10.1 --helo good1.example.org "
            "--from bob@example.org --to alice@example.net\n"
            f"  swaks --server {LISTEN} --local-interface 127.0.10.2 --helo good1.example.org "
            "--from bob@example.org --to alice@example.net\n"
            f"  open http://{WEB}/check?ip=127.0.10.2 (the link in that refusal)\n"
            "  .venv/bin/rdnsgate admin set-password   # then log in at /servers, /whitelist, /decisions\n"
            f"  .venv/bin/rdnsgate check 127.0.10.3 --nameserver {knot.nameserver}\n"
            "  .venv/bin/rdnsgate decisions --since 1h\n",
            flush=True,
        )
        command = [
            *rdnsgate,
            "serve",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # a demo on loopback ports: nothing to drop to
            "--listen",
            LISTEN,
            "--web-listen",
            WEB,
            "--public-url",
            f"http://{WEB}",
            "--nameserver",
            knot.nameserver,
            "--relay-domain",
            "example.net",
        ]
        # The demo DNS serves only the example zones: the resolver guard's canary is one of their names
        # (the defaults, this host's name and the root SOA, are not there).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RDNSGATE_DNS_CANARIES": "good1.example.org"}
        # rdnsgate in a process group of its own, so that a Ctrl-C reaches it once, from here: Ctrl-C, SIGTERM
        # and SIGHUP (a closed terminal, a process manager) alike give it a SIGINT, and it drains (a second
        # one cuts the drain short); then knotd stops and its directory goes. Before, a SIGTERM ended the demo
        # at once and left rdnsgate and knotd running on their ports.
        child = subprocess.Popen(command, env=env, process_group=0)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupted)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
