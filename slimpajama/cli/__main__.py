"""`python -m slimpajama.cli`: the `slimpajama` command."""

from slimpajama.cli import run

run()
