"""How long the runner waits when it must stop something, and how often it looks.

One definition for the python backend, the container runtime and the batch
executors, so `--timeout` and Ctrl-C behave alike whatever runs the plugin.
"""

from __future__ import annotations

#: seconds a plugin process or container gets between SIGTERM and SIGKILL
STOP_GRACE_S = 5
#: seconds between checks of a deadline or a running worker
POLL_S = 0.2
