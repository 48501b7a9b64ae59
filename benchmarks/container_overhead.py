"""Benchmark: `mdivicom run` of a trivial container plugin against the raw engine CLI.

For each engine, alternating and repeated: `mdivicom run` of a plugin whose
command is `sh -c 'echo ok > /mdivicom/out/ok'`, and the same image, mounts,
user, network setting and argv through `docker run --rm` / `podman --remote run
--rm` (the Podman CLI talking to the same API service the backend uses).
mdivicom additionally checks the image, inspects the mounts before starting,
streams and keeps the log, inventories and promotes the output, and writes the
record.

Target (issue 4): mdivicom <= 1.5x the raw CLI per engine, medians.

Usage: python benchmarks/container_overhead.py [--runs 7] [--markdown] [--engines docker,podman]
Needs the engines and the image localhost/mdivicom-test:1 (scripts/setup-engines.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import medians, print_table, timed

IMAGE = "localhost/mdivicom-test:1"
SCRIPT = "echo ok > /mdivicom/out/ok"
CLI = {
    "docker": ["docker"],
    "podman": ["podman", "--remote", "--url", "unix:///run/podman/podman.sock"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--engines", default="docker,podman")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    engines = [e for e in args.engines.split(",") if e]
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        manifests = root / "manifests"
        manifests.mkdir()
        (manifests / "touch.json").write_text(
            json.dumps(
                {
                    "meta": {
                        "api_version": "mdivicomtools.plugin.v0.1",
                        "id": "touch-ok",
                        "kind": "container",
                        "version": "1.0.0",
                        "publisher": "bench",
                        "description": "Writes one file.",
                    },
                    "container": {"image": IMAGE, "command": ["sh", "-c", SCRIPT], "pull": "never"},
                }
            )
        )
        dataset = root / "dataset"
        dataset.mkdir()
        (dataset / "a.txt").write_text("x\n")
        env = dict(os.environ, MDIVICOM_PLUGIN_PATH=str(manifests))
        counter = iter(range(100_000))

        def raw(engine: str) -> float:
            run = root / f"raw-{next(counter)}"
            for sub in ("out", "work"):
                (run / sub).mkdir(parents=True)
            (run / "config.json").write_text("{}")
            argv = [
                *CLI[engine],
                "run",
                "--rm",
                "--network",
                "none",
                "--user",
                f"{os.getuid()}:{os.getgid()}",
                "-v",
                f"{dataset}:/mdivicom/dataset:ro",
                "-v",
                f"{run / 'out'}:/mdivicom/out",
                "-v",
                f"{run / 'work'}:/mdivicom/work",
                "-v",
                f"{run / 'config.json'}:/mdivicom/config.json:ro",
                IMAGE,
                "sh",
                "-c",
                SCRIPT,
            ]
            return timed(argv, env)

        def ours(engine: str) -> float:
            out = root / f"out-{next(counter)}"
            return timed(
                [
                    mdivicom,
                    "run",
                    "touch-ok",
                    "--dataset",
                    str(dataset),
                    "--out",
                    str(out),
                    "--backend",
                    engine,
                ],
                env,
            )

        cases = {}
        for engine in engines:
            cases[f"{engine} run --rm (raw CLI)"] = lambda e=engine: raw(e)
            cases[f"mdivicom run --backend {engine}"] = lambda e=engine: ours(e)
        for case in cases.values():
            case()  # warm-up, untimed
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, case in cases.items():
                samples[name].append(case())
    med = medians(samples)
    rows = []
    for engine in engines:
        base = med[f"{engine} run --rm (raw CLI)"]
        mine = med[f"mdivicom run --backend {engine}"]
        rows.append((f"{engine} run --rm (raw CLI)", f"{base * 1000:.0f} ms", "baseline", ""))
        rows.append(
            (
                f"mdivicom run --backend {engine}",
                f"{mine * 1000:.0f} ms",
                f"{mine / base:.2f}x raw CLI",
                "<= 1.50x",
            )
        )
    print_table(
        f"# container overhead: trivial plugin; median of {args.runs} runs each, alternating",
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    main()
