"""The docs cannot drift from the code: reason codes, profile rules, CLI options, links."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from rdnsgate.checks import helo, iprev, sender
from rdnsgate.frontends.cli import app
from rdnsgate.policy.profiles import rules_markdown

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

CALL = re.compile(r'_(?:result|helo|align|sender)\(\s*(?:Result\.\w+),\s*"([a-z-]+)"', re.S)


def test_every_reason_used_is_declared_and_documented() -> None:
    text = (DOCS / "checks.md").read_text()
    for module, declared in (
        (iprev, iprev.REASONS),
        (helo, {**helo.REASONS, **helo.ALIGN_REASONS}),
        (sender, sender.REASONS),
    ):
        used = set(CALL.findall(Path(module.__file__).read_text()))
        assert used == set(declared), (module.__name__, used ^ set(declared))
        for reason in declared:
            assert f"`{reason}`" in text, reason


def test_profiles_table_matches_the_data() -> None:
    text = (DOCS / "profiles.md").read_text()
    inside = text.split("<!-- profiles-table:begin -->\n", 1)[1].split("\n<!-- profiles-table:end -->", 1)[0]
    assert inside == rules_markdown(), (
        "regenerate: python -c 'from rdnsgate.policy.profiles import rules_markdown; print(rules_markdown())'"
    )


def test_every_cli_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert f"`rdnsgate {name}" in text, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert f"`{opt}" in text or f"/ {opt}" in text, (name, opt)


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target
