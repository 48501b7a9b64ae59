"""Hostile plugins: each function is one plugin's `run`, doing one bad thing.

They are registered by `conftest.hostile_plugin` as `hostile:<function>`; the
container ones are shell scripts in `CONTAINER_SCRIPTS`. Each is as small as
the fault it reproduces.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: a file outside every output folder that a plugin must never get the runner to read
SECRET_ENV = "HOSTILE_SECRET_FILE"
#: a marker in the command line of every process a hostile plugin leaves running
MARK_ENV = "HOSTILE_MARK"


def _sleeper(seconds: int, *, ignore_term: bool = False) -> list[str]:
    """A python process that sleeps, carrying the test's marker in its argv."""
    code = "import signal,time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += f"time.sleep({seconds})\n"
    return [sys.executable, "-c", code, os.environ.get(MARK_ENV, "hostile-mark")]


def _announce_start(out_dir) -> None:
    """Write `started` (this process's pid) whole: a test polling for the file may read
    it the moment it appears, so it is written aside and renamed into place."""
    aside = Path(out_dir, ".started")
    aside.write_text(str(os.getpid()))
    aside.rename(Path(out_dir, "started"))


def fault(function):
    """Run as a well-behaved plugin when the config says `good`: that run writes the
    earlier output (`result.txt`) that the faulty run with --overwrite must not damage."""

    def run(dataset_dir, out_dir, config, **options):
        if config.get("good"):
            Path(out_dir, "result.txt").write_text("good\n")
            return None
        return function(dataset_dir, out_dir, config, **options)

    run.__doc__ = function.__doc__
    return run


@fault
def fifo_bundle(dataset_dir, out_dir, config, **_):
    os.mkfifo(Path(out_dir, "resultbundle.json"))


@fault
def symlink_host_file(dataset_dir, out_dir, config, **_):
    os.symlink(os.environ[SECRET_ENV], Path(out_dir, "resultbundle.json"))


@fault
def symlink_dev_zero(dataset_dir, out_dir, config, **_):
    os.symlink("/dev/zero", Path(out_dir, "resultbundle.json"))


@fault
def special_files(dataset_dir, out_dir, config, **_):
    """What a root container could leave: a device node, a setuid file, a way out."""
    os.mknod(Path(out_dir, "disk"), 0o600 | 0o060000, os.makedev(7, 0))
    suid = Path(out_dir, "suid")
    suid.write_text("#!/bin/sh\n")
    suid.chmod(0o4755)
    os.symlink("../../..", Path(out_dir, "up"))


@fault
def symlink_out_after_promotion(dataset_dir, out_dir, config, **_):
    """Links that resolve inside the staging folder (`_staging/<run_id>/<id>/`) and
    outside `<out>/<id>/` once promoted there."""
    staging = Path(out_dir)
    run_id, plugin_id = staging.parent.name, staging.name
    Path(out_dir, "r").write_text("real\n")
    os.symlink(f"../../{run_id}/{plugin_id}/r", Path(out_dir, "relink"))
    os.symlink(".", Path(out_dir, "here"))
    # `here/..` cancels as text, but `here` is the folder itself: `..` leaves it
    os.symlink(f"here/../{plugin_id}/here/../../{run_id}/{plugin_id}/r", Path(out_dir, "chain"))


@fault
def grandchild_ignores_term(dataset_dir, out_dir, config, **_):
    subprocess.Popen(_sleeper(300, ignore_term=True))
    time.sleep(300)


@fault
def leaves_background(dataset_dir, out_dir, config, **_):
    subprocess.Popen(_sleeper(300))  # inherits stdout: the log stream stays open
    Path(out_dir, "done.txt").write_text("done\n")


@fault
def sleeps(dataset_dir, out_dir, config, **_):
    _announce_start(out_dir)
    time.sleep(300)


@fault
def slow_to_stop(dataset_dir, out_dir, config, **_):
    """Takes a while to clean up when stopped, as a container run does (its container
    is stopped and removed): long enough for Python to report what its signal
    handling could not do."""
    _announce_start(out_dir)
    try:
        time.sleep(300)
    except KeyboardInterrupt:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:  # busy, as a backend's clean-up is
            sum(range(1000))
        raise


@fault
def naps(dataset_dir, out_dir, config, **_):
    """A session that takes a few seconds: long enough to be interrupted mid-run."""
    _announce_start(out_dir)
    time.sleep(3)
    Path(out_dir, "done.txt").write_text("done\n")


@fault
def non_utf8_output(dataset_dir, out_dir, config, **_):
    with open(os.path.join(os.fsencode(out_dir), b"\xfe\xff.bin"), "wb") as handle:
        handle.write(b"x")


@fault
def non_utf8_into_dataset(dataset_dir, out_dir, config, **_):
    with open(os.path.join(os.fsencode(dataset_dir), b"bad-\xff"), "wb") as handle:
        handle.write(b"x")


@fault
def fills_disk(dataset_dir, out_dir, config, **_):
    """Writes until the file system is full (the test gives it a small one)."""
    with open(Path(out_dir, "big.bin"), "wb") as handle:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()


@fault
def rewrites_dataset_in_place(dataset_dir, out_dir, config, **_):
    """Same size, mtime restored: only ctime (and content) tell."""
    target = Path(dataset_dir, "a.txt")
    before = target.stat()
    data = target.read_bytes()
    target.write_bytes(data.upper() if data.upper() != data else data.lower())
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


@fault
def exits_hard(dataset_dir, out_dir, config, **_):
    os._exit(7)


@fault
def kills_itself(dataset_dir, out_dir, config, **_):
    os.kill(os.getpid(), signal.SIGSEGV)


@fault
def counts_sigint(dataset_dir, out_dir, config, **_):
    """Counts the SIGINTs that reach the runner's process (in-process plugins share it)."""
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    _announce_start(out_dir)
    deadline = time.monotonic() + 60
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # a second, duplicated SIGINT would arrive by now
    Path(out_dir, "sigints.txt").write_text(f"{len(received)}\n")


@fault
def segfaults(dataset_dir, out_dir, config, **_):
    """A crash in native code: reads address 0 through ctypes."""
    import ctypes

    Path(out_dir, "partial.txt").write_text("half\n")
    print("about to read address 0", flush=True)
    ctypes.string_at(0)


@fault
def deep_return(dataset_dir, out_dir, config, **_):
    value: list = []
    for _ in range(100_000):
        value = [value]
    return value


@fault
def writes_outside(dataset_dir, out_dir, config, **_):
    Path(config["target"]).write_text("escaped\n")


def _read_only(top: Path) -> None:
    """`chmod -R a-w top`, as Go does to its module cache."""
    for path in [*sorted(top.rglob("*"), reverse=True), top]:
        os.chmod(path, path.stat().st_mode & ~0o222)


@fault
def read_only_leftovers(dataset_dir, out_dir, config, *, work_dir=None, **_):
    """Succeeds (or fails with `fail`) leaving a read-only tool cache in its work folder
    and a read-only folder in its output; with `locked`, an unreadable one (chmod 000)."""
    cache = Path(work_dir, "cache", "mod", "example.org")
    cache.mkdir(parents=True)
    (cache / "go.mod").write_text("module example.org\n")
    _read_only(Path(work_dir, "cache"))
    Path(out_dir, "result.txt").write_text("new\n")
    Path(out_dir, "ro").mkdir()
    Path(out_dir, "ro", "kept.txt").write_text("kept\n")
    _read_only(Path(out_dir, "ro"))
    if config.get("locked"):
        Path(out_dir, "locked").mkdir()
        Path(out_dir, "locked", "secret.txt").write_text("x\n")
        Path(out_dir, "locked").chmod(0)
    if config.get("fail"):
        raise RuntimeError("failed on purpose")


#: container plugins: the good run (config `{"good": true}`) writes result.txt, any
#: other run does the one bad thing
_GOOD = (
    'if grep -q good "$MDIVICOM_CONFIG"; then echo good > /mdivicom/out/result.txt; exit 0; fi; '
)
CONTAINER_SCRIPTS = {
    "fifo": _GOOD + "mkfifo /mdivicom/out/resultbundle.json",
    "symlink-host": _GOOD + "ln -s {secret} /mdivicom/out/resultbundle.json",
    "special": _GOOD
    + (
        "echo x > /mdivicom/out/suid && chmod 4755 /mdivicom/out/suid && "
        "mkfifo /mdivicom/out/pipe && ln -s /etc/passwd /mdivicom/out/passwd"
    ),
}
