"""What loading a python plugin's registration costs every `mdivicom` command.

Every listing and every run imports each plugin's registration module and calls
its `get_plugin()`. One that imports numpy, scipy or torch at module level
makes each of those commands wait for it, and one that prints writes into the
terminal of each of them; neither breaks a run, so nothing else tells the author.
The load is measured in a fresh interpreter: in the checking process the
heavy modules may be imported already, and its descriptor 1 is the report's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

#: run in the child: import what discovery has, then load the registration and call it
_PROBE = """
import importlib, json, sys, time
import mdivicomtools.discovery
value, report = sys.argv[1], sys.argv[2]
before = set(sys.modules)
started = time.perf_counter()
module_name, _, attribute = value.partition(":")
target = importlib.import_module(module_name)
for part in attribute.split(".") if attribute else ():
    target = getattr(target, part)
if attribute:
    target()
seconds = time.perf_counter() - started
sys.stdout.flush()
sys.stderr.flush()
new = sorted(
    {n.partition(".")[0] for n in set(sys.modules) - before if hasattr(sys.modules[n], "__file__")}
)
with open(report, "w", encoding="utf-8") as handle:
    json.dump({"seconds": seconds, "modules": new}, handle)
"""

#: longest stretch of what the registration printed that a check line quotes
_QUOTED = 120


class RegistrationLoad(msgspec.Struct, kw_only=True, frozen=True):
    """What loading `module:get_plugin` in a fresh interpreter did."""

    seconds: float
    #: top-level packages it imported that are neither the standard library, the
    #: plugin's own package nor what discovery has loaded already
    imported: list[str]
    #: what it wrote to stdout and stderr, as text
    printed: str


def measure_registration(value: str) -> RegistrationLoad | None:
    """Load the entry point `value` (`package.module:get_plugin`) in a child Python.

    None when the child could not load it (the caller's own load already said
    why) or did not finish within a minute.
    """
    own = value.partition(":")[0].partition(".")[0]
    # the child finds what this process finds, a test's sys.path additions included
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with tempfile.TemporaryDirectory(prefix="mdivicom-check-load-") as tmp:
        report = Path(tmp) / "report.json"
        try:
            child = subprocess.run(
                [sys.executable, "-c", _PROBE, value, str(report)],
                capture_output=True,
                env=env,
                cwd=tmp,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None
        if child.returncode != 0 or not report.is_file():
            return None
        found = json.loads(report.read_text(encoding="utf-8"))
    printed = (child.stdout + child.stderr).decode("utf-8", "backslashreplace").strip()
    imported = [
        name
        for name in found["modules"]
        if name != own and name not in sys.stdlib_module_names and not name.startswith("_")
    ]
    return RegistrationLoad(seconds=found["seconds"], imported=imported, printed=printed)


def registration_problems(value: str) -> list[str]:
    """One line for each thing an author should change about the registration's load."""
    load = measure_registration(value)
    if load is None:
        return []
    module = value.partition(":")[0]
    problems = []
    if load.imported:
        problems.append(
            f"loading {module} imported {', '.join(load.imported)} "
            f"({load.seconds:.2f} s), which every `mdivicom plugins list` and run waits "
            "for; import them in the module of entry.callable, which is loaded only "
            "when the plugin runs"
        )
    if load.printed:
        text = " ".join(load.printed.split())
        quoted = text if len(text) <= _QUOTED else text[: _QUOTED - 3] + "..."
        problems.append(
            f"loading {module} and calling get_plugin() printed {quoted!r}, which lands "
            "on the terminal of every `mdivicom` command that lists plugins; "
            "remove the print (report problems by raising, or in run())"
        )
    return problems
