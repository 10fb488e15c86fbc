"""The DNS data of the end-to-end scenarios (RFC 5737 / RFC 3849 addresses, RFC 2606 names).

Reverse zones: 192.0.2.0/24, an RFC 2317 classless child (192.0.2.0/26 as
"0-63"), and 2001:db8::/32.  Forward zones: example.org, example.net and the
IDN zone bücher.example (xn--bcher-kva.example).
"""

from __future__ import annotations

from tests.harness.knot import Zone

V4 = "192.0.2"
V6 = "2001:db8::"


def _rev6(last: int) -> str:
    """Owner of 2001:db8::<last hex> relative to 8.b.d.0.1.0.0.2.ip6.arpa."""
    digits = f"{last:x}".rjust(4, "0")[::-1]
    return ".".join(digits) + "." + ".".join("0" * 20)


def zones() -> list[Zone]:
    rev4 = Zone("2.0.192.in-addr.arpa", soa_minimum=600)
    rfc2317 = Zone("0-63.2.0.192.in-addr.arpa", soa_minimum=600)
    rev6 = Zone("8.b.d.0.1.0.0.2.ip6.arpa", soa_minimum=900)
    org = Zone("example.org", soa_minimum=300)
    net = Zone("example.net", soa_minimum=120)
    idn = Zone("xn--bcher-kva.example", soa_minimum=300)

    # -- IPv4 iprev ----------------------------------------------------------------
    rev4.add("1", "PTR", "mail.example.org.")
    org.add("mail", "A", f"{V4}.1").add("mail", "MX", "10 mail.example.org.")
    # .2: nothing at all -> NXDOMAIN
    rev4.add("3", "TXT", '"no ptr here"')  # NODATA
    rev4.add("4", "PTR", "nxname.example.org.")
    rev4.add("5", "PTR", "other.example.org.")
    org.add("other", "A", f"{V4}.99")
    rev4.add("6", "PTR", "noaddr.example.org.")
    org.add("noaddr", "TXT", '"exists, no address"')
    rev4.add("7", "PTR", "first7.example.org.").add("7", "PTR", "second7.example.org.")
    org.add("first7", "A", f"{V4}.99").add("second7", "A", f"{V4}.7")
    for name in ("a8", "b8", "c8"):
        rev4.add("8", "PTR", f"{name}.example.org.")
    org.add("a8", "A", f"{V4}.98").add("c8", "A", f"{V4}.8")  # b8 does not exist
    rev4.add("9", "PTR", "MAIL9.Example.ORG.")
    org.add("mail9", "A", f"{V4}.9")
    rev4.add("0-63", "NS", "ns.example.org.")  # RFC 2317 classless delegation
    rev4.add("10", "CNAME", "10.0-63.2.0.192.in-addr.arpa.")
    rfc2317.add("10", "PTR", "classless.example.net.")
    net.add("classless", "A", f"{V4}.10")
    rev4.add("11", "PTR", "-bad11.example.org.")  # a leading hyphen: no host name, never looked up
    rev4.add("12", "PTR", "\\060script\\062alert\\0401\\041\\060/script\\062.example.org.")  # <script>alert(1)</script>
    rev4.add("13", "PTR", "-bad13.example.org.").add("13", "PTR", "good13.example.org.")
    org.add("good13", "A", f"{V4}.13")
    rev4.add("14", "PTR", "multi.example.org.")
    org.add("multi", "A", f"{V4}.140").add("multi", "A", f"{V4}.14")
    rev4.add("15", "PTR", "alias15.example.org.")
    org.add("alias15", "CNAME", "target15.example.net.")
    net.add("target15", "A", f"{V4}.15")
    rev4.add("16", "PTR", "slow16.example.org.")
    org.add("slow16", "A", f"{V4}.16")
    for last in range(17, 24):
        rev4.add(str(last), "PTR", f"host{last}.example.org.")
        org.add(f"host{last}", "A", f"{V4}.{last}")
    for index in range(100):  # PTR sets of 100 names (RRsets have no order)
        rev4.add("24", "PTR", f"n{index}.big24.example.org.")  # every one confirms
        org.add(f"n{index}.big24", "A", f"{V4}.24")
        rev4.add("25", "PTR", f"n{index}.big25.example.org.")  # none exists
    rev4.add("26", "PTR", "host26.example.org.")
    org.add("host26", "A", f"{V4}.26")
    rev4.add("27", "PTR", "flaky27.example.org.").add("27", "PTR", "good27.example.org.")
    org.add("flaky27", "A", f"{V4}.27").add("good27", "A", f"{V4}.27")
    rev4.add("29", "PTR", "mail_29.example.org.")  # `_`: not RFC 1123, but DNS and Postfix take it
    org.add("mail_29", "A", f"{V4}.29")
    rev4.add("28", "PTR", "gone28.example.org.").add("28", "PTR", "noaddr.example.org.")
    rev4.add("30", "PTR", "Mail.Example.ORG.")  # uppercase, same name as .1's but points elsewhere

    # -- IPv6 iprev ------------------------------------------------------------------
    rev6.add(_rev6(1), "PTR", "mail6.example.org.")
    org.add("mail6", "AAAA", f"{V6}1").add("mail6", "A", f"{V4}.1")
    rev6.add(_rev6(3), "PTR", "v4only.example.org.")
    org.add("v4only", "A", f"{V4}.3")
    rev6.add(_rev6(4), "PTR", "wrong6.example.org.")
    org.add("wrong6", "AAAA", f"{V6}44")
    rev6.add(_rev6(5), "PTR", "first6.example.org.").add(_rev6(5), "PTR", "second6.example.org.")
    org.add("first6", "AAAA", f"{V6}55").add("second6", "AAAA", f"{V6}5")
    rev6.add(_rev6(6), "PTR", "host6.example.org.")
    org.add("host6", "AAAA", f"{V6}6")

    # -- HELO names -------------------------------------------------------------------
    org.add("alias1", "A", f"{V4}.1")  # resolves to the client, not the PTR name
    org.add("mxonly", "MX", "10 mail.example.org.")
    org.add("txtonly", "TXT", '"exists"')
    org.add("v6name", "AAAA", f"{V6}99")
    org.add("helo-slow", "A", f"{V4}.1")
    org.add("helo_ok", "A", f"{V4}.1")  # an existing HELO name with `_`

    # -- sender domains --------------------------------------------------------------
    org.add("@", "MX", "10 mail.example.org.")
    org.add("nullmx", "MX", "0 .")
    org.add("nullmx-a", "MX", "0 .").add("nullmx-a", "A", f"{V4}.50")
    org.add("aonly", "A", f"{V4}.51")
    org.add("v6only", "AAAA", f"{V6}52")
    org.add("nomail", "TXT", '"v=spf1 -all"')
    org.add("mxnowhere", "MX", "10 nothing-here.example.org.")
    org.add("mx-slow", "MX", "10 mail.example.org.")
    org.add("a-slow", "TXT", '"no MX: the A/AAAA fallback is asked"')
    org.add("mx-helo-slow", "TXT", '"no address: MX is asked"')
    idn.add("@", "MX", "10 mail.example.org.")
    for hop in range(10):  # a chain of 10 CNAMEs: longer than the resolver follows
        org.add(f"chain{hop}", "CNAME", f"chain{hop + 1}.example.org.")
    org.add("chain10", "A", f"{V4}.1")
    # -- the generic check: PTR names that look like an ISP's default, each forward-confirmed --
    for last, name in (
        (160, "c-192-0-2-160.hsd1.example.net"),  # the whole address, dashed
        (161, "dyn-161-2.pool.example.net"),  # a pool keyword beside the last two octets, reversed
        (162, "192-0-2-162.static.example.net"),  # the address, but static: exempt
        (163, "mx163.example.net"),  # a mail server's name
        # Haraka's fcrdns tests (is_generic_rdns) and pymilter's dynip doctests, their names and addresses
        # mapped into 192.0.2.0/24 and example.net
        (170, "mail.artfarm.example.net"),  # Haraka: mail.<domain>, not generic
        (136, "dsl-192-0-2-136.asretelecom.example.net"),  # Haraka: generic
        (159, "c-192-0-2-159.hsd1.wa.comcast.example.net"),  # Haraka: generic
        (158, "c-192-0-2-158.business.wa.comcast.example.net"),  # Haraka: business, not generic
        (112, "post3.fabulousdealz.example.net"),  # pymilter: not dynamic
        (177, "adsl-192-0-2-177.dsl.emhril.ameritech.example.net"),  # pymilter: dynamic
        (151, "c-192-0-2-151.hsd1.mn.comcast.example.net"),  # pymilter: dynamic
    ):
        rev4.add(str(last), "PTR", f"{name}.")
        net.add(name.removesuffix(".example.net"), "A", f"{V4}.{last}")
    # -- SMTP clients: loopback sources 127.0.10.x (the gateway tests connect from them) --
    loop = Zone("10.0.127.in-addr.arpa", soa_minimum=60)
    loop.add("1", "PTR", "good1.example.org.")
    org.add("good1", "A", "127.0.10.1")
    # 127.0.10.2: no PTR at all
    loop.add("3", "PTR", "mismatch3.example.org.")
    org.add("mismatch3", "A", f"{V4}.99")
    loop.add("4", "PTR", "slow4.example.org.")  # the tests make its PTR lookup time out
    org.add("slow4", "A", "127.0.10.4")
    loop.add("40", "PTR", "a40-first.example.org.").add("40", "PTR", "b40-second.example.org.")
    org.add("a40-first", "A", f"{V4}.98").add("b40-second", "A", "127.0.10.40")  # only the second confirms
    loop.add("41", "PTR", "mail_41.example.org.")  # a PTR name with `_` that forward-confirms
    loop.add("42", "PTR", "c-127-0-10-42.hsd1.example.org.")  # a generic name that forward-confirms
    org.add("c-127-0-10-42.hsd1", "A", "127.0.10.42")
    org.add("mail_41", "A", "127.0.10.41")
    for last in range(5, 40):  # more well-configured clients
        loop.add(str(last), "PTR", f"good{last}.example.org.")
        org.add(f"good{last}", "A", f"127.0.10.{last}")
    every = [rev4, rfc2317, rev6, org, net, idn, loop]
    for zone in every:  # each zone's NS name leads to the test's knotd (the monitor asks it directly)
        zone.add("ns", "A", "127.0.0.1")
    return every
