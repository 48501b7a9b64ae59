"""The working folder, kept while code that is not mdivicomtools' runs in this process.

A plugin's registration module or a site's hook module that calls `os.chdir`
(at import, or in `get_plugin()`) moved the process: `mdivicom run x
--dataset study --out results` then looked for `/study` and would have written
`/results`, since relative paths are resolved after the plugin is found.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def kept_working_folder() -> Iterator[None]:
    """Put back the working folder the block changed (nothing when it had none)."""
    try:
        before = os.getcwd()
    except OSError:  # removed already: there is nothing to keep
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.getcwd() != before:
                os.chdir(before)
