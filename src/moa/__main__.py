"""`python -m moa …` is the `moa` command."""

from moa.cli.app import main

main()
