"""The child process of an isolated python run (`--isolate`, `--timeout`).

Reads a JSON job from stdin, imports and calls the plugin, and writes a JSON
result file; its stdout and stderr are the run log. A crash or `os._exit` here
costs only this process: the runner sees the exit status and records it.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main() -> int:
    job = json.loads(sys.stdin.read())
    result_path = Path(job["result_path"])
    from mdivicomtools.callables import import_callable
    from mdivicomtools.contract import find_unsafe_json

    try:
        func = import_callable(job["callable"])
        value = func(
            job["dataset_dir"],
            job["out_dir"],
            job["config"],
            work_dir=job["work_dir"],
            dry_run=job["dry_run"],
        )
    except BaseException as exc:  # report everything, SystemExit included
        traceback.print_exc()
        sys.stderr.flush()
        error = {"type": type(exc).__name__, "message": str(exc)}
        result_path.write_text(json.dumps({"ok": False, "error": error}), encoding="utf-8")
        return 1
    problem = find_unsafe_json(value, "result") if value is not None else None
    payload = {"ok": True, "result": None if problem else value, "unsafe": problem}
    result_path.write_text(json.dumps(payload), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
