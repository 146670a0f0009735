"""`python -m hdrpolicy` runs the CLI."""

from hdrpolicy.cli import main

main()
