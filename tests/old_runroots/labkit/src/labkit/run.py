import time
from pathlib import Path


def copy(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    from mdivicomtools.resultbundle import write_resultbundle

    for src in sorted(Path(dataset_dir).rglob("*.txt")):
        dst = Path(out_dir, src.relative_to(dataset_dir))
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text().upper())
    write_resultbundle(
        out_dir, resultbundle_type="lab.upper.v1", time_reference={"kind": "none", "unit": "s"}
    )
    return {"ok": True}


def failer(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    Path(out_dir, "partial.txt").write_text("partial")
    raise RuntimeError("failed on purpose")


def slow(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    Path(out_dir, "started.txt").write_text("started")
    time.sleep(float(config.get("seconds", 30)))
    return {"ok": True}
