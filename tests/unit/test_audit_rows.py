"""The audit's output rows: the fast CSV line is what the csv module writes, JSON lines read back, and the
common pass made from a name alone is the general row."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.checks.iprev import evaluate_iprev, forward_type
from rdnsgate.checks.names import is_postfix_hostname, reverse_pointer
from rdnsgate.frontends.cli.audit import COLUMNS, Target, _row, confirmed_row, format_row, header
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
