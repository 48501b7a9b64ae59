"""The pluggy markers of mdivicomtools, in a module of their own.

Extenders write `from mdivicomtools import hookimpl`; keeping the markers apart
from the hook manager means that import costs only pluggy.
"""

import pluggy

PROJECT_NAME = "mdivicomtools"

#: Marks a function as an implementation of one of the hooks in hookspecs.py.
#: Accepts pluggy's options, e.g. ``@hookimpl(tryfirst=True)``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
