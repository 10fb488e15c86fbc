"""The audit's output rows: the fast CSV line is what the csv module writes, JSON lines read back, and the
common pass made from a name alone is the general row; the addresses of a range, made in a worker process
from a `Span`, are the range's."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rdnsgate.checks.iprev import evaluate_iprev, forward_type
from rdnsgate.checks.names import is_postfix_hostname, parse_ip, reverse_pointer
from rdnsgate.frontends.cli.audit import (
    BATCH,
    COLUMNS,
    CONFIRMED,
    Source,
    Span,
    Summary,
    Target,
    _row,
    confirmed_line,
    confirmed_row,
    format_row,
    header,
    span_targets,
)
from rdnsgate.frontends.cli.options import Format
from rdnsgate.model import IPAddress, Lookup, Status

text = st.text(st.sampled_from('ab ,"\r\n.-é'), max_size=12)
rows = st.fixed_dictionaries({key: st.lists(text, max_size=3) if key == "ptr_names" else text for key in COLUMNS})


@given(rows)
def test_csv_line_is_the_csv_modules(row: dict[str, object]) -> None:
    out = io.StringIO()
    values = [" ".join(row[key]) if key == "ptr_names" else row[key] for key in COLUMNS]  # type: ignore[arg-type]
    csv.writer(out, lineterminator="\r\n").writerow(values)  # RFC 4180: a field with CR or LF is quoted
    assert format_row(Format.CSV, row) == out.getvalue().removesuffix("\r\n") + "\n"
    assert next(csv.reader(io.StringIO(header(Format.CSV) + format_row(Format.CSV, row)))) == list(COLUMNS)


@given(rows)
def test_json_line_reads_back(row: dict[str, object]) -> None:
    line = format_row(Format.JSONL, row)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == row


hostname = st.from_regex(
    r"[a-z0-9_]([a-z0-9_-]{0,8}[a-z0-9_])?(\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,3}\.[a-z]{2,6}", fullmatch=True
)


@given(st.ip_addresses(), hostname, st.integers(0, 2**31 - 1))
def test_the_common_pass_row_is_the_general_one(ip: IPAddress, name: str, ttl: int) -> None:
    """`confirmed_row` (the bulk chain's `confirmed`: one PTR host name whose one forward record is the
    address) is the row of the report the general path makes of the same two answers."""
    assert is_postfix_hostname(name)
    target = Target(ip, None, str(ip))
    ptr = Lookup(reverse_pointer(ip), "PTR", Status.ANSWER, (name,), ttl=ttl)
    forward = Lookup(name, forward_type(ip), Status.ANSWER, (str(ip),), ttl=ttl)
    assert confirmed_row(target, name) == _row(target, evaluate_iprev(ip, ptr, {name: forward}))


any_hostname = st.text(st.sampled_from("aZ09-_."), min_size=1, max_size=40).filter(is_postfix_hostname)


@given(st.ip_addresses(), hostname | any_hostname, st.sampled_from(Format))
def test_the_common_pass_line_is_the_rows(ip: IPAddress, name: str, fmt: Format) -> None:
    """`confirmed_line`, which writes the CSV line of the common pass at once, is the general row's line; its
    summary key is the row's."""
    target = Target(ip, None, str(ip))
    row = confirmed_row(target, name)
    assert confirmed_line(fmt, target, name) == format_row(fmt, row)
    assert (row["iprev"], row["reason"], row["helo_result"]) == CONFIRMED


networks = st.one_of(
    st.builds(lambda n, p: ipaddress.ip_network((n, p), strict=False), st.integers(0, 2**32 - 1), st.integers(22, 32)),
    st.builds(
        lambda n, p: ipaddress.ip_network((n, p), strict=False), st.integers(0, 2**128 - 1), st.integers(120, 128)
    ),
    # IPv4-mapped IPv6 addresses, audited as IPv4
    st.builds(
        lambda n, p: ipaddress.ip_network(f"::ffff:{ipaddress.IPv4Address(n)}/{p}", strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(120, 128),
    ),
)


@settings(deadline=None, max_examples=40)
@given(st.lists(networks, min_size=1, max_size=3))
@example([ipaddress.ip_network("192.0.0.0/22"), ipaddress.ip_network("::ffff:198.51.100.0/118")])  # spans each
def test_a_ranges_spans_are_its_addresses_in_order(nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    """What one process audits (`Source.items`) and what worker processes are handed (`Source.batches`, each
    `Span` made into targets there) are every address of the networks, in order, at most `BATCH` a span."""
    expected = [parse_ip(str(ip)) for net in nets for ip in net]
    source = Source(nets, None, sum(net.num_addresses for net in nets))
    items = list(source.items)
    assert [item.ip for item in items] == expected  # type: ignore[union-attr]
    assert all(item == Target(item.ip, None, str(item.ip)) for item in items)
    spans = list(source.batches())
    assert all(isinstance(span, Span) and 0 < span.size <= BATCH for span in spans)
    assert [target for span in spans for target in span_targets(span)] == items  # type: ignore[arg-type]


def test_the_summary_counts_batches() -> None:
    summary = Summary()
    summary.count(Counter({CONFIRMED: 3, ("fail", "no-ptr", ""): 2}))
    summary.count(Counter({("pass", "confirmed", "fail"): 1}))
    assert summary.total == 6
    assert summary.iprev == Counter({"pass": 4, "fail": 2})
    assert summary.reasons == Counter({"confirmed": 4, "no-ptr": 2})
    assert summary.helo == Counter({"fail": 1})
    assert summary.exit_status() == 1
