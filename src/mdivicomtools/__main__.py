"""`python -m mdivicomtools` runs the `mdivicom` command."""

from mdivicomtools.cli import main

main()
