"""`python -m gateway ...` is the `shouwang` command."""

from gateway.cli import main

main()
