"""Run inside a network namespace: a real Exim asking rdnsgate's Exim socket from its RCPT ACL.

Started by tests/integration/test_exim.py through ``ip netns exec`` (whose
``/etc/netns/NAME/passwd`` gives Debian's Exim binary the user it was built
for).  Brings up knotd with the test zones, for each profile an ``rdnsgate
serve policy`` with ``policy.exim_listen``, and an Exim daemon (its own
throw-away configuration, spool and logs; contrib/exim/rdnsgate.acl
included as the docs say) asking it.  Then plays SMTP sessions with smtplib
from 127.0.10.x sources and prints every reply as one JSON object.
"""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.data.zones import zones  # noqa: E402
from tests.harness.knot import KnotServer  # noqa: E402
from tests.harness.postfix import spawn_service  # noqa: E402
from tests.harness.smtp import rdnsgate_cli, wait_port  # noqa: E402

PROFILES = {"strict": (10041, 2701), "classic": (10042, 2702), "monitor": (10043, 2703)}
EXIM_CONFIG = """\
RDNSGATE_SOCKET = inet:127.0.0.1:{socket_port}
exim_user = Debian-exim
exim_group = Debian-exim
primary_hostname = mx.example.net
spool_directory = {work}/spool
log_file_path = {work}/log/%slog
local_interfaces = 127.0.0.1
domainlist local_domains = example.net
acl_smtp_rcpt = acl_check_rcpt
host_lookup =
rfc1413_hosts =
queue_only = true
message_size_limit = 1M

begin acl
acl_check_rcpt:
  deny    domains = !+local_domains
          message = relay not permitted
.include {acl}
  accept

begin routers
begin transports
"""


def play(port: int, source: str, helo: str, sender: str) -> dict[str, object]:
    result: dict[str, object] = {}
    smtp = smtplib.SMTP(source_address=(source, 0), timeout=30)
    try:
        smtp.connect("127.0.0.1", port)
        result["ehlo"] = smtp.ehlo(helo)[0]
        code, text = smtp.mail(sender)
        result["mail"] = [code, text.decode(errors="replace")]
        code, text = smtp.rcpt("alice@example.net")
        result["rcpt"] = [code, text.decode(errors="replace")]
        if code == 250:
            code, text = smtp.data("Subject: exim lab\r\n\r\nhello\r\n")
            result["data"] = [code, text.decode(errors="replace")]
        smtp.quit()
    except smtplib.SMTPServerDisconnected:
        result["closed"] = True
    except (smtplib.SMTPException, OSError) as exc:
        result["error"] = repr(exc)
    return result


def main() -> None:
    exim, scenarios = sys.argv[1], json.loads(sys.argv[2])
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="rdnsgate-exim-lab-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        knot = KnotServer(work / "knot", zones(), address="127.0.0.1", port=5300).start()
        services: dict[str, subprocess.Popen[bytes]] = {}
        daemons: list[subprocess.Popen[bytes]] = []
        try:
            for profile, (socket_port, smtp_port) in PROFILES.items():
                services[profile] = spawn_service(
                    f"policy-{profile}",
                    f'[dns]\nnameservers = ["127.0.0.1:5300"]\n[policy]\nlisten = []\n'
                    f'exim_listen = ["127.0.0.1:{socket_port}"]\nprofile = "{profile}"\n'
                    f'authserv_id = "mx.example.net"\nwhitelist_refresh = 0.2\n'
                    f'[storage]\nurl = "sqlite:///{work / f"{profile}.db"}"\n',
                    work,
                )
                home = work / f"exim-{profile}"
                for sub in ("spool", "log"):
                    (home / sub).mkdir(parents=True)
                    os.chown(home / sub, 65534, 65534)  # Debian-exim in the namespace's passwd
                config = home / "exim.conf"
                config.write_text(
                    EXIM_CONFIG.format(socket_port=socket_port, work=home, acl=ROOT / "contrib/exim/rdnsgate.acl")
                )
                daemons.append(
                    subprocess.Popen(
                        [exim, "-C", str(config), "-bdf", "-oX", str(smtp_port), "-oP", str(home / "exim.pid")],
                        stdout=subprocess.DEVNULL,
                        stderr=open(home / "stderr", "wb"),  # noqa: SIM115 - the child's
                    )
                )
            for socket_port, smtp_port in PROFILES.values():
                wait_port("127.0.0.1", socket_port, timeout=20)
                wait_port("127.0.0.1", smtp_port, timeout=20)
            for profile, (_socket_port, smtp_port) in PROFILES.items():
                out[profile] = {
                    item["id"]: play(smtp_port, item["source"], item["helo"], item["sender"]) for item in scenarios
                }
            # an exception for the client with no PTR, added with the CLI, honoured by the next session
            strict_config = work / "policy-strict.toml"
            added = rdnsgate_cli(strict_config, "whitelist", "add", "127.0.10.2", "--reason", "exim lab", cwd=ROOT)
            out["whitelist"] = added.stdout + added.stderr
            time.sleep(1.0)
            out["after_whitelist"] = play(PROFILES["strict"][1], "127.0.10.2", "good1.example.org", "bob@example.org")
            decisions = rdnsgate_cli(strict_config, "decisions", "--ip", "127.0.10.2", "--json", cwd=ROOT)
            out["decisions"] = decisions.stdout
            # rdnsgate away: Exim defers (the fail string of the ACL), it never accepts unchecked
            services["strict"].terminate()
            services["strict"].wait(20)
            out["rdnsgate_away"] = play(PROFILES["strict"][1], "127.0.10.1", "good1.example.org", "bob@example.org")
            out["_logs"] = {
                profile: "\n".join(
                    path.read_text(errors="replace")[-2000:]
                    for path in [*sorted((work / f"exim-{profile}").glob("log/*")), work / f"exim-{profile}" / "stderr"]
                )
                for profile in PROFILES
            }
            spool = work / "exim-monitor" / "spool" / "input"  # the messages Exim took, headers as queued
            out["monitor_headers"] = "".join(path.read_text(errors="replace") for path in spool.rglob("*-H"))
        finally:
            for daemon in daemons:
                daemon.terminate()
                daemon.wait(20)
            for service in services.values():
                if service.poll() is None:
                    service.terminate()
                    service.wait(20)
            knot.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
