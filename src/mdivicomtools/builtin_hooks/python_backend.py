"""Built-in execution backend: python plugins, in-process or in a child process."""

from __future__ import annotations

from mdivicomtools.execution import ExecutionBackend
from mdivicomtools.markers import hookimpl
from mdivicomtools.python_lane import PythonBackend


@hookimpl
def mdivicom_execution_backends() -> list[ExecutionBackend]:
    return [PythonBackend()]
