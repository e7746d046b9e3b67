"""`python -m memory_service`: the `memory-service` command, under its own name."""

from .cli import main

main(prog_name="memory-service")
