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

    def walk(command: object, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            full = f"{path} {name}"
            assert f"`{full}" in text, full
            section = text.split(f"`{full}", 1)[1].split("\n## ", 1)[0]
            for param in sub.params:
                for opt in param.opts:
                    if opt.startswith("--") and opt != "--help":
                        assert f"`{opt}" in section or f"/ {opt}" in section, (full, opt)
            walk(sub, full)

    walk(typer.main.get_command(app), "rdnsgate")


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_every_setting_is_documented() -> None:
    import dataclasses

    from rdnsgate.config import SECTIONS

    text = (DOCS / "config.md").read_text()
    for name, cls in SECTIONS.items():
        section = text.split(f"## `[{name}]`", 1)[1].split("\n## ", 1)[0]
        for item in dataclasses.fields(cls):
            assert f"| `{item.name}` |" in section, (name, item.name)
