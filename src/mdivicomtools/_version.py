"""The package version, kept in a module of its own.

`mdivicom --version` and `--help` read it without importlib.metadata, which would
scan every installed distribution and slow down start-up.
"""

__version__ = "0.1.0.dev0"
