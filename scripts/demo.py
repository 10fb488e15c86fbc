"""``make run`` until the gateway exists: rdnsgate check against a throw-away DNS server.

Starts knotd on a free loopback port with the example zones of the test suite
(RFC 5737/3849 addresses, RFC 2606 names), runs ``rdnsgate check`` for a client
whose DNS is right and for one whose PTR points at someone else's name, and
stops knotd.  Nothing is asked of any other DNS server.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.data.zones import zones  # noqa: E402
from tests.harness.knot import KnotServer  # noqa: E402

CLIENTS = [
    ["192.0.2.1", "--helo", "mail.example.org", "--sender", "bob@example.org"],
    ["192.0.2.5", "--helo", "other.example.org", "--sender", "bob@nullmx.example.org"],
]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rdnsgate-demo-") as tmp, KnotServer(Path(tmp), zones()) as knot:
        print(f"# example zones served by knotd on {knot.nameserver}\n", flush=True)
        for args in CLIENTS:
            command = [sys.executable, "-m", "rdnsgate", "check", *args, "--nameserver", knot.nameserver]
            print("$ rdnsgate check " + " ".join(args) + f" --nameserver {knot.nameserver}", flush=True)
            status = subprocess.run(command, check=False).returncode
            print(f"(exit status {status})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
