"""Built-in execution backend: python plugins, in-process or in a child process."""

from __future__ import annotations

from mdivicomtools.execution.base import ExecutionBackend
from mdivicomtools.execution.python import PythonBackend
from mdivicomtools.hooks.markers import hookimpl


@hookimpl
def mdivicom_execution_backends() -> list[ExecutionBackend]:
    return [PythonBackend()]
