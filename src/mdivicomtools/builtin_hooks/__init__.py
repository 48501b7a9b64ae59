"""The core's own behaviour, written as ordinary hook implementations.

Each module here is registered under a name of the form `mdivicomtools.<job>`,
so `mdivicom hooks list` shows the core next to site extensions, and an
extender can read these as working examples of every hook.
"""
