"""The audit's output rows: the fast CSV line is what the csv module writes, and JSON lines read back."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.frontends.cli.audit import COLUMNS, format_row, header
from rdnsgate.frontends.cli.options import Format

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
