"""`python -m transformer_cli` is the same as `tcli`."""

from transformer_cli.cli import main

main()
