"""One table of clients and what each profile answers them, replayed through every face.

Each case is a client (source IP, HELO, MAIL FROM) against the knotd
scenario zones (tests/data/zones.py); `expect[profile]` is the refusal as
(stage, code) -- the SMTP command whose reply carries it and the reply
code -- or None when the mail is accepted.  tests/integration/test_faces_agree.py
replays it through the policy session, the gateway, the Postfix policy
service and `check --json`, so the four cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

GOOD, NO_PTR, MISMATCH = "127.0.10.1", "127.0.10.2", "127.0.10.3"
PROFILES = ("classic", "postfix", "strict", "monitor")
Refusal = tuple[str, int] | None  # ("helo" | "mail" | "rcpt", code)


@dataclass(frozen=True)
class Case:
    name: str
    ip: str
    helo: str
    sender: str
    expect: dict[str, Refusal]


def _case(name: str, ip: str, helo: str, sender: str, classic: Refusal, postfix: Refusal, strict: Refusal) -> Case:
    return Case(name, ip, helo, sender, {"classic": classic, "postfix": postfix, "strict": strict, "monitor": None})


GOOD_HELO, GOOD_SENDER = "good1.example.org", "bob@example.org"
CASES = (
    _case("all pass", GOOD, GOOD_HELO, GOOD_SENDER, None, None, None),
    _case("no PTR", NO_PTR, GOOD_HELO, GOOD_SENDER, ("helo", 501), ("rcpt", 450), ("helo", 550)),
    _case("PTR does not lead back", MISMATCH, GOOD_HELO, GOOD_SENDER, ("helo", 501), ("rcpt", 450), ("helo", 550)),
    _case("HELO not an FQDN", GOOD, "localhost", GOOD_SENDER, ("helo", 501), ("rcpt", 504), ("helo", 504)),
    _case("HELO does not exist", GOOD, "nope.example.org", GOOD_SENDER, ("helo", 501), ("rcpt", 450), ("helo", 550)),
    _case("HELO with MX only", GOOD, "mxonly.example.org", GOOD_SENDER, ("helo", 501), None, None),
    _case("HELO of another host (logged only)", GOOD, "mail.example.org", GOOD_SENDER, None, None, None),
    _case("sender null MX", GOOD, GOOD_HELO, "bob@nullmx.example.org", ("mail", 550), ("rcpt", 550), ("mail", 550)),
    _case("sender unknown", GOOD, GOOD_HELO, "bob@nope.example.org", ("mail", 501), ("rcpt", 450), ("mail", 550)),
    _case("bounce", GOOD, GOOD_HELO, "", None, None, None),
)
