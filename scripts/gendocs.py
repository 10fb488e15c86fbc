"""Regenerate the parts of docs/ that are derived from the code; `--check` fails when one is stale.

A generated part sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``
lines.  The facts live in the code (profiles.toml, the checks' reason
tables, the settings' help); the docs only show them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rdnsgate.checks.reasons import reasons_markdown
from rdnsgate.config import SECTIONS, settings_markdown
from rdnsgate.frontends.cli.exits import exits_markdown
from rdnsgate.frontends.web.schema import (
    AuthoritativeModel,
    ChainModel,
    CheckModel,
    LookupModel,
    ProfileAnswer,
    ReceiverAnswer,
    ReportModel,
    fields_markdown,
)
from rdnsgate.model import Check
from rdnsgate.policy.profiles import rules_markdown
from rdnsgate.policy.receivers import receivers_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"

BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "profiles.md": {"profiles-table": rules_markdown},
    "checks.md": {f"reasons-{check.value}": (lambda check=check: reasons_markdown(check)) for check in Check},
    "cli.md": {"exits": exits_markdown},
    "check-json.md": {
        f"json-{name}": (lambda model=model: fields_markdown(model))
        for name, model in (
            ("report", ReportModel),
            ("chain", ChainModel),
            ("check", CheckModel),
            ("lookup", LookupModel),
            ("profile", ProfileAnswer),
            ("receiver", ReceiverAnswer),
            ("authoritative", AuthoritativeModel),
        )
    },
    "receivers.md": {"receivers-table": receivers_markdown},
    "config.md": {f"settings-{name}": (lambda name=name: settings_markdown(name)) for name in SECTIONS},
}


def render(text: str, blocks: dict[str, Callable[[], str]], where: str) -> str:
    for name, produce in blocks.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin not in text or end not in text:
            raise SystemExit(f"{where}: no {name} markers")
        head, rest = text.split(begin, 1)
        _old, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{produce()}\n{end}{tail}"
    return text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for file, blocks in BLOCKS.items():
        path = DOCS / file
        old = path.read_text(encoding="utf-8")
        new = render(old, blocks, str(path))
        if new != old:
            stale.append(file)
            if not check:
                path.write_text(new, encoding="utf-8")
    if check and stale:
        print(f"stale: {', '.join(stale)}; run: python scripts/gendocs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
