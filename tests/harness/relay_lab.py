"""Run inside a network namespace: real Postfix on both sides of the gateway.

Started by tests/integration/test_postfix_relay.py through ``ip netns exec``.
knotd answers on 127.0.0.1:53 (the namespace's resolv.conf), and:

- Postfix "sender" (127.0.0.1:2701) takes mail from the test over SMTP and
  relays everything to the gateway, binding its client to 127.0.10.1
  (good1.example.org, forward-confirmed) and saying HELO good1.example.org;
- ``rdnsgate serve gateway`` (127.0.0.1:2702, profile classic) relays to
- Postfix "receiver" (127.0.0.1:2703), which defers the recipient later@
  with 450 and keeps everything it accepts in its queue (its own relay host
  does not exist), so the test can read each message and its envelope with
  postqueue and postcat.

The cases arrive as JSON in argv[1]; the script sends each to the sender
Postfix, waits until the sender's queue holds only what the receiver
deferred, and prints one JSON object: both queues (postqueue -j) and every
receiver queue file (postcat -e -h -b, without the body lines of big ones).
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.data.zones import zones  # noqa: E402
from tests.harness.knot import KnotServer  # noqa: E402
from tests.harness.postfix import PostfixInstance, spawn_service  # noqa: E402
from tests.harness.smtp import wait_port  # noqa: E402

SENDER, GATEWAY, RECEIVER = 2701, 2702, 2703
SIZE = "40000000"


def queue(instance: PostfixInstance) -> list[dict[str, Any]]:
    done = subprocess.run(["postqueue", "-c", str(instance.config), "-j"], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def postcat(instance: PostfixInstance, queue_id: str) -> str:
    done = subprocess.run(
        ["postcat", "-c", str(instance.config), "-e", "-h", "-q", queue_id], capture_output=True, text=True
    )
    return done.stdout[-20000:]


def send(case: dict[str, Any]) -> list[object]:
    body = case["body"].encode() if "body" in case else b""
    if case.get("big_mb"):
        line = b"y" * 78 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * int(case["big_mb"] * 1_000_000 / len(line))
    with smtplib.SMTP("127.0.0.1", SENDER, timeout=120) as smtp:
        smtp.ehlo("tester.example.org")
        refused = smtp.sendmail(
            case["from"],
            case["to"],
            body,
            mail_options=case.get("mail_options", []),
            rcpt_options=case.get("rcpt_options", []),
        )
    return [str(refused)]


def main() -> None:
    cases = json.loads(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rdnsgate-relay-lab-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        knot = KnotServer(work / "knot", zones(), address="127.0.0.1", port=53).start()
        access = work / "access"
        access.write_text("later@example.net 450 4.2.1 <later@example.net>: Mailbox busy, try again later\n")
        access.chmod(0o644)
        receiver = PostfixInstance(
            work / "receiver",
            RECEIVER,
            {
                "myhostname": "mx.example.net",
                "relayhost": "[127.0.0.1]:1",  # nothing listens: accepted mail stays in the queue
                "message_size_limit": SIZE,
                "smtpd_recipient_restrictions": (
                    f"check_recipient_access texthash:{access}, permit_mynetworks, reject_unauth_destination"
                ),
            },
        )
        sender = PostfixInstance(
            work / "sender",
            SENDER,
            {
                "myhostname": "good1.example.org",
                "relayhost": f"[127.0.0.1]:{GATEWAY}",
                "smtp_bind_address": "127.0.10.1",
                "smtp_helo_name": "good1.example.org",
                "message_size_limit": SIZE,
                "mynetworks": "127.0.0.0/8",
            },
        )
        gateway: subprocess.Popen[bytes] | None = None
        try:
            receiver.start()
            wait_port("127.0.0.1", RECEIVER, timeout=20)
            # Only now: the gateway learns at start what the receiver offers (DSN, SMTPUTF8, SIZE); started
            # before the receiver listens, it would offer clients the basics until its first relay.
            gateway = spawn_service(
                "gateway",
                f'[dns]\nnameservers = ["127.0.0.1:53"]\n[gateway]\nlisten = ["127.0.0.1:{GATEWAY}"]\n'
                f'profile = "classic"\nnext_hop = "smtp://127.0.0.1:{RECEIVER}"\nrelay_domains = ["example.net"]\n'
                f'hostname = "gw.example.net"\nmax_message_size = {SIZE}\n'
                f'[storage]\nurl = "sqlite:///{work / "gateway.db"}"\n',
                work,
            )
            wait_port("127.0.0.1", GATEWAY, timeout=20)
            sender.start()
            wait_port("127.0.0.1", SENDER, timeout=20)
            out["sent"] = {case["id"]: send(case) for case in cases}
            deferred_left = sum(1 for case in cases for rcpt in case["to"] if rcpt.startswith("later@"))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the sender keeps only the deferred recipients
                left = queue(sender)
                if sum(len(item["recipients"]) for item in left) <= deferred_left and all(
                    "delay_reason" in rcpt for item in left for rcpt in item["recipients"]
                ):
                    break
                subprocess.run(["postqueue", "-c", str(sender.config), "-f"], capture_output=True)
                time.sleep(0.5)
            out["sender_queue"] = queue(sender)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until the receiver's copies have settled in its deferred queue
                received = queue(receiver)
                if all(item["queue_name"] == "deferred" for item in received):
                    break
                time.sleep(0.2)
            out["receiver_queue"] = received
            out["postcat"] = {item["queue_id"]: postcat(receiver, item["queue_id"]) for item in received}
            out["logs"] = {
                "sender": sender.log()[-4000:],
                "receiver": receiver.log()[-4000:],
                "gateway": (work / "gateway.log").read_text(errors="replace")[-4000:],
            }
        finally:
            sender.stop()
            receiver.stop()
            if gateway is not None:
                gateway.terminate()
                gateway.wait(40)
            knot.stop()
            time.sleep(0.2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
