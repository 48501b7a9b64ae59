"""The plugin's work. Heavy imports would go here, not in plugin.py."""

import json
from pathlib import Path


def run(
    dataset_dir: str,
    out_dir: str,
    config: dict,
    *,
    work_dir: str | None = None,
    dry_run: bool = False,
) -> dict:
    pattern = config.get("pattern", "*")
    files = sorted(p for p in Path(dataset_dir).rglob(pattern) if p.is_file())
    summary = {
        "pattern": pattern,
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
    if not dry_run:
        Path(out_dir, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"status": "ok", **summary}
