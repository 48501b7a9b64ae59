"""Benchmark: `mdivicom run` of a trivial container plugin against the raw engine CLI.

For each engine, interleaved round by round: `mdivicom run` of a plugin whose
command is `sh -c 'echo ok > /mdivicom/out/ok'`, and the same image, mounts,
user, network setting, init process, dropped capabilities, no-new-privileges
and argv through `docker run --rm` / `podman --remote run --rm` (the Podman CLI
talking to the same API service the backend uses) and, for reference, the local
`podman run --rm` (no API service in between). mdivicom additionally checks
the image, inspects the mounts before starting, streams and keeps the log,
inventories and promotes the output, and writes the record.

Targets (issue 14): mdivicom <= 1.4x `docker run --rm` and <= 1.0x
`podman --remote run --rm`, medians.

Usage: python benchmarks/container_overhead.py [--runs 15] [--markdown] [--engines docker,podman]
           [--compare-code OLD/src:OLD/backends/docker/src:OLD/backends/podman/src]
       python benchmarks/container_overhead.py --profile   (where one run's time goes)
Needs the engines and the image localhost/mdivicom-test:1 (scripts/setup-engines.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    at_least,
    end_on_sigterm,
    measure,
    medians,
    podman_remote_cli,
    print_table,
    run_main,
    timed,
)

IMAGE = "localhost/mdivicom-test:1"
SCRIPT = "echo ok > /mdivicom/out/ok"
#: the raw CLIs; "podman" (`podman --remote` to the backend's own service) is added in main()
CLI = {
    "docker": ["docker"],
    "podman-local": ["podman"],
}
#: what mdivicom gives every container: an init, no capabilities, no-new-privileges
HARDENING = ["--init", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
TARGETS = {"docker": 1.4, "podman": 1.0}
#: run once in a child interpreter: imports, then every engine API request, timed
PROFILE = """
import json, sys, time
t0 = time.perf_counter()
import requests
import mdivicomtools.cli
engine = sys.argv[1]
__import__("docker" if engine == "docker" else "podman")
t_imports = time.perf_counter()
calls = []
send = requests.Session.send
def timed_send(self, request, **kwargs):
    start = time.perf_counter()
    try:
        return send(self, request, **kwargs)
    finally:
        path = request.path_url.split("?")[0]
        calls.append((request.method, path, time.perf_counter() - start))
requests.Session.send = timed_send
try:
    mdivicomtools.cli.main(sys.argv[2:])
except SystemExit:
    pass
t_end = time.perf_counter()
print(json.dumps({"imports": t_imports - t0, "run": t_end - t_imports, "calls": calls}))
"""


def engine_list(text: str) -> list[str]:
    """--engines: a comma-separated list of the engines TARGETS knows, at least one."""
    engines = [engine.strip() for engine in text.split(",") if engine.strip()]
    unknown = [engine for engine in engines if engine not in TARGETS]
    if unknown or not engines:
        raise argparse.ArgumentTypeError(f"{text!r}: name docker, podman or both (comma-separated)")
    return engines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=at_least(1), default=15)
    parser.add_argument("--engines", type=engine_list, default="docker,podman")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--profile", action="store_true", help="Profile one run per engine.")
    parser.add_argument(
        "--compare-code",
        metavar="PYTHONPATH",
        help="Also time mdivicom with this PYTHONPATH first (e.g. an older release's src "
        "folders), interleaved in the same rounds.",
    )
    args = parser.parse_args()
    end_on_sigterm()
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    engines = args.engines
    for command in sorted({"docker" if engine == "docker" else "podman" for engine in engines}):
        if not args.profile and shutil.which(command) is None:
            raise SystemExit(
                f"{command} is not on PATH: this benchmark compares against its CLI "
                "(scripts/setup-engines.sh), or leave the engine out with --engines"
            )
    if "podman" in engines and not args.profile:
        CLI["podman"] = podman_remote_cli()
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
                *HARDENING,
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

        def ours(engine: str, code: str | None = None) -> float:
            out = root / f"out-{next(counter)}"
            run_env = env if code is None else dict(env, PYTHONPATH=code)
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
                run_env,
            )

        if args.profile:
            for engine in engines:
                ours(engine)  # warm-up
                profile(engine, dataset, root / f"profile-{engine}", env)
            return

        cases: dict[str, Callable[[], float]] = {}
        for engine in engines:
            cases[f"{engine} run --rm (raw CLI)"] = partial(raw, engine)
            cases[f"mdivicom run --backend {engine}"] = partial(ours, engine)
            if args.compare_code:
                cases[f"compared code: mdivicom run --backend {engine}"] = partial(
                    ours, engine, args.compare_code
                )
            if engine == "podman":
                cases["podman run --rm (local CLI)"] = partial(raw, "podman-local")
        samples = measure(cases, args.runs)
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
                f"<= {TARGETS.get(engine, 1.4):.2f}x",
            )
        )
        if args.compare_code:
            other = med[f"compared code: mdivicom run --backend {engine}"]
            rows.append(
                (
                    f"compared code: mdivicom run --backend {engine}",
                    f"{other * 1000:.0f} ms",
                    f"{other / base:.2f}x raw CLI",
                    "",
                )
            )
        if engine == "podman":
            local = med["podman run --rm (local CLI)"]
            rows.append(
                (
                    "podman run --rm (local CLI)",
                    f"{local * 1000:.0f} ms",
                    f"mdivicom is {mine / local:.2f}x this",
                    "reference",
                )
            )
    print_table(
        f"# container overhead: trivial plugin; median of {args.runs} rounds, interleaved",
        rows,
        args.markdown,
    )


def profile(engine: str, dataset: Path, out: Path, env: dict[str, str]) -> None:
    """One `mdivicom run` in a child interpreter: start-up and imports, each engine API
    request (the log stream overlaps the wait), our own work, and interpreter start and
    exit (the wall time the child does not see)."""
    import subprocess
    import time

    argv = ["run", "touch-ok", "--dataset", str(dataset), "--out", str(out), "--backend", engine]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PROFILE, engine, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    data = json.loads(result.stdout.strip().splitlines()[-1])
    requests_s = sum(duration for _, _, duration in data["calls"])
    startup = wall - data["imports"] - data["run"]
    rows = [
        ("process wall time", wall),
        ("  interpreter start and exit", startup),
        ("  imports (mdivicomtools.cli, requests, engine client)", data["imports"]),
        ("  the run (from main() to its return)", data["run"]),
        ("    engine API requests, summed", requests_s),
        ("    everything else (our work, log thread joins)", data["run"] - requests_s),
    ]
    print(f"# profile: mdivicom run --backend {engine}, one run")
    for label, seconds in rows:
        print(f"{label:<56} {seconds * 1000:7.0f} ms")
    for method, path, duration in data["calls"]:
        short = "/".join(part[:12] for part in path.split("/"))
        print(f"      {method:<6} {short:<48} {duration * 1000:6.0f} ms")


if __name__ == "__main__":
    run_main(main)
