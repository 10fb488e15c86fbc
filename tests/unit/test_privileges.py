"""Which sys.path entries the dropped user must still read: the ones the loaded code came from."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.privileges import code_roots


def test_the_longest_entry_holding_a_file_is_its_root() -> None:
    path = ["/usr/lib/python3", "/srv/app/.venv/lib/python3/site-packages", "/srv/app", ""]
    files = ["/usr/lib/python3/json/__init__.py", "/srv/app/.venv/lib/python3/site-packages/uvloop/__init__.py"]
    assert code_roots(path, files) == ["/srv/app/.venv/lib/python3/site-packages", "/usr/lib/python3"]


def test_an_entry_is_a_root_only_at_a_directory_boundary() -> None:
    assert code_roots(["/srv/a"], ["/srv/ab/m.py"]) == []
    assert code_roots(["/srv/a"], ["/srv/a/m.py"]) == ["/srv/a"]
    assert code_roots(["/"], ["/m.py"]) == ["/"]


def test_relative_entries_and_files_are_taken_from_the_working_directory() -> None:
    here = os.getcwd()
    assert code_roots(["."], ["rdnsgate/__init__.py"]) == [here]


names = st.sampled_from(["a", "b", "ab", "c"])
parts = st.lists(names, min_size=1, max_size=4).map(lambda found: "/" + "/".join(found))


@given(st.lists(parts, max_size=5), st.lists(parts, max_size=8))
def test_every_file_under_an_entry_has_exactly_its_deepest_entry_as_root(path: list[str], files: list[str]) -> None:
    roots = code_roots(path, files)
    assert set(roots) <= set(path)
    expected = set()
    for file in files:
        holding = [entry for entry in path if file.startswith(entry + "/")]
        if holding:
            expected.add(max(holding, key=len))
    assert set(roots) == expected
