"""`python -m darkroom.cli`: the `darkroom` command."""

from darkroom.cli import main

main()
