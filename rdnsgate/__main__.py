"""``python -m rdnsgate``: the same as the ``rdnsgate`` command."""

from rdnsgate.main import main

main()
