"""Run inside a network namespace: real Postfix instances, with and without rdnsgate's policy service.

Started by tests/integration/test_postfix.py through ``ip netns exec``.  Brings
up knotd on 127.0.0.1:53 (the namespace's resolv.conf points there) with the
test zones, an ``smtp-sink`` as relay target, one Postfix with its own
``reject_unknown_*`` checks, for each profile an ``rdnsgate serve policy``
plus a Postfix asking it (Postfix's own checks off), and an ``rdnsgate serve
gateway`` with the ``postfix`` profile.  Then every scenario is played by a
real SMTP client from its 127.0.10.x source against every Postfix and the
gateway, and all replies are printed as one JSON object.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.data.zones import zones  # noqa: E402
from tests.harness.faultdns import Fault, FaultResponder  # noqa: E402
from tests.harness.knot import KnotServer  # noqa: E402
from tests.harness.postfix import PostfixInstance, spawn_service  # noqa: E402
from tests.harness.smtp import wait_port  # noqa: E402

PROFILES = ("postfix", "classic", "strict", "monitor")
BUILTIN_CHECKS = (
    "reject_unknown_reverse_client_hostname, reject_unknown_client_hostname, reject_invalid_helo_hostname, "
    "reject_non_fqdn_helo_hostname, reject_unknown_helo_hostname, reject_non_fqdn_sender, "
    "reject_unknown_sender_domain, reject_unauth_destination"
)
SINK = 2600
GATEWAY = 2620
HOP = 2630  # a plain Postfix behind the gateway: it offers SMTPUTF8 and DSN, as a real next hop does


def play(port: int, source: str, helo: str, sender: str, smtputf8: bool = False) -> dict[str, object]:
    """EHLO, MAIL, RCPT, DATA from `source`; every reply."""
    result: dict[str, object] = {}
    smtp = smtplib.SMTP(source_address=(source, 0), timeout=30)
    smtp.command_encoding = "utf-8"  # a UTF-8 address goes out as is, with or without SMTPUTF8
    try:
        smtp.connect("127.0.0.1", port)
        result["ehlo"] = smtp.ehlo(helo)[0]
        code, text = smtp.mail(sender, ["SMTPUTF8"] if smtputf8 else [])
        result["mail"] = [code, text.decode(errors="replace")]
        code, text = smtp.rcpt("alice@example.net")
        result["rcpt"] = [code, text.decode(errors="replace")]
        if code == 250:
            code, text = smtp.data("Subject: lab\r\n\r\nhello\r\n")
            result["data"] = [code, text.decode(errors="replace")]
        smtp.quit()
    except (smtplib.SMTPException, OSError) as exc:
        result["error"] = repr(exc)
    return result


def main() -> None:
    scenarios = json.loads(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="rdnsgate-postfix-lab-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        knot = KnotServer(work / "knot", zones(), address="127.0.0.1", port=5300).start()
        # Port 53, where resolv.conf sends Postfix's resolver and rdnsgate alike: faults in front of knotd.
        faults = FaultResponder(("127.0.0.1", 5300), port=53).start()
        for name, rtype in (
            ("4.10.0.127.in-addr.arpa", "PTR"),
            ("helo-slow.example.org", "A"),
            ("helo-slow.example.org", "AAAA"),
            ("mx-slow.example.org", "MX"),
        ):
            faults.add(name, rtype, Fault.SERVFAIL)
        sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{SINK}", "100"], stdout=subprocess.DEVNULL)
        running: list[PostfixInstance] = []
        services: list[subprocess.Popen[bytes]] = []
        try:
            wait_port("127.0.0.1", SINK)
            common = {"relayhost": f"[127.0.0.1]:{SINK}", "smtpd_helo_required": "yes"}
            ports = {"builtin": 2601}
            running.append(
                PostfixInstance(work / "pf-builtin", 2601, {**common, "smtpd_recipient_restrictions": BUILTIN_CHECKS})
            )
            hop = PostfixInstance(work / "pf-hop", HOP, common).start()
            running.append(hop)
            wait_port("127.0.0.1", HOP, timeout=20)
            for number, profile in enumerate(PROFILES):
                policy_port, smtp_port = 10040 + number, 2610 + number
                services.append(
                    spawn_service(
                        f"policy-{profile}",
                        f'[dns]\nnameservers = ["127.0.0.1:53"]\n[policy]\nlisten = ["127.0.0.1:{policy_port}"]\n'
                        f'profile = "{profile}"\nauthserv_id = "pf.example.net"\n'
                        f'[storage]\nurl = "sqlite:///{work / f"policy-{profile}.db"}"\n',
                        work,
                    )
                )
                wait_port("127.0.0.1", policy_port, timeout=20)
                restrictions = f"reject_unauth_destination, check_policy_service inet:127.0.0.1:{policy_port}"
                running.append(
                    PostfixInstance(
                        work / f"pf-{profile}", smtp_port, {**common, "smtpd_recipient_restrictions": restrictions}
                    )
                )
                ports[profile] = smtp_port
            services.append(
                spawn_service(
                    "gateway",
                    f'[dns]\nnameservers = ["127.0.0.1:53"]\n[gateway]\nlisten = ["127.0.0.1:{GATEWAY}"]\n'
                    f'profile = "postfix"\nnext_hop = "smtp://127.0.0.1:{HOP}"\nrelay_domains = ["example.net"]\n'
                    f'hostname = "gw.example.net"\n[storage]\nurl = "sqlite:///{work / "gateway.db"}"\n',
                    work,
                )
            )
            wait_port("127.0.0.1", GATEWAY, timeout=20)
            ports["gateway"] = GATEWAY
            for instance in running:
                if instance is not hop:
                    instance.start()
            for port in ports.values():
                wait_port("127.0.0.1", port, timeout=20)
            for variant, port in ports.items():
                out[variant] = {
                    item["id"]: play(port, item["source"], item["helo"], item["sender"], item.get("smtputf8", False))
                    for item in scenarios
                }
            out["_logs"] = {
                "builtin": running[0].log()[-3000:],
                "gateway": (work / "gateway.log").read_text(errors="replace")[-3000:],
            }
        finally:
            for instance in running:
                instance.stop()
            for service in services:
                service.terminate()
                service.wait(20)
            sink.terminate()
            sink.wait(10)
            faults.stop()
            knot.stop()
            time.sleep(0.2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
